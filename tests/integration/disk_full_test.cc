// The disk under the state store fills up while clearingd ingests: consumption stops, /readyz
// says why, nothing past the last commit is acknowledged; when space returns the daemon
// resumes by itself and the outcome equals the oracle exactly. The store lives on a small tmpfs
// that the test mounts, then grows (remount) to give the space back.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <filesystem>

#include "gtest/gtest.h"
#include "tests/integration/scenario.h"

namespace yrd::testing {
namespace {

// Small enough that a generated day's write-ahead log cannot fit.
constexpr const char* kFullSize = "size=24m";
constexpr const char* kRoomySize = "size=2g";

class MountedTmpfs {
 public:
  explicit MountedTmpfs(const std::string& path) : path_(path) {
    std::filesystem::create_directories(path_);
    mounted_ = ::mount("tmpfs", path_.c_str(), "tmpfs", 0, kFullSize) == 0;
  }
  ~MountedTmpfs() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  [[nodiscard]] bool mounted() const { return mounted_; }
  bool Grow() { return ::mount("tmpfs", path_.c_str(), "tmpfs", MS_REMOUNT, kRoomySize) == 0; }

 private:
  std::string path_;
  bool mounted_ = false;
};

// Fills the store's disk while clearingd ingests 200k messages, checks that consumption
// pauses with nothing acknowledged past the last commit, gives the space back and checks that
// the daemon resumes by itself and the outcome equals the oracle exactly.
void FillThenGrow(const std::string& store_config, const std::string& paused_because, bool rocksdb_saw_the_error) {
  Scenario scenario;
  MountedTmpfs disk(scenario.dir() / "state");
  if (!disk.mounted()) GTEST_SKIP() << "mounting a tmpfs needs root (CAP_SYS_ADMIN)";
  scenario.StartBroker(16);
  scenario.Prepare(/*merchants=*/300, /*seed=*/51, /*extra_config=*/"", store_config);
  scenario.Generate(200'000, /*seed=*/53);
  auto daemon = scenario.StartDaemon();

  // The disk fills: consumption pauses (the log says why and what to do), the daemon stays up
  // and is not ready.
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string log = ReadFile(scenario.daemon_log());
        return log.find("\"consumption_paused\"") != std::string::npos && log.find(paused_because) != std::string::npos;
      },
      std::chrono::minutes(2)))
      << ReadFile(scenario.daemon_log());
  ASSERT_TRUE(daemon->running()) << ReadFile(scenario.daemon_log());
  EXPECT_LT(scenario.CommittedMessages(), scenario.messages());
  EXPECT_TRUE(WaitFor([&] { return scenario.Http("GET", "/readyz").first == 503; }, std::chrono::seconds(30)));
  const std::string metrics = scenario.Http("GET", "/metrics").second;
  EXPECT_GE(MetricSample(metrics, "yrd_consumption_pauses_total"), 1) << metrics;
  if (rocksdb_saw_the_error) {
    EXPECT_GE(MetricSample(metrics, "yrd_store_background_errors_total"), 1) << metrics;
  } else {
    EXPECT_EQ(MetricSample(metrics, "yrd_store_background_errors_total"), 0) << metrics;
  }

  // Space returns: the daemon retries by itself and catches up.
  ASSERT_TRUE(disk.Grow());
  ASSERT_TRUE(scenario.WaitCaughtUp(std::chrono::minutes(3))) << ReadFile(scenario.daemon_log());
  EXPECT_TRUE(WaitFor([&] { return scenario.Http("GET", "/readyz").first == 200; }, std::chrono::seconds(30)));
  daemon->Signal(SIGTERM);
  const std::optional<int> exit_code = daemon->Wait(std::chrono::seconds(60));
  ASSERT_TRUE(exit_code.has_value());
  EXPECT_EQ(*exit_code, 0) << ReadFile(scenario.daemon_log());
  const std::vector<std::string> diff = scenario.DiffWithOracle();
  for (const std::string& line : diff) ADD_FAILURE() << line;
  EXPECT_TRUE(diff.empty());
}

// The reserve check off: the write-ahead log itself meets ENOSPC. RocksDB returns the error
// (its diagnostic log is ours and survives the full disk), and clearingd reopens from the last
// commit once space returns.
TEST(DiskFull, WriteAheadLogMeetsEnospcThenResumesLosingNothing) {
  FillThenGrow("min_free_mib = 0\n", "No space left on device", /*rocksdb_saw_the_error=*/true);
}

// The reserve check on: commits stop while a few MiB are still free, before RocksDB sees any
// error, and resume when the reserve is back.
TEST(DiskFull, ReserveBelowMinimumPausesThenResumesLosingNothing) {
  FillThenGrow("min_free_mib = 8\n", "store.min_free_mib", /*rocksdb_saw_the_error=*/false);
}

}  // namespace
}  // namespace yrd::testing
