// Kills clearingd with SIGKILL at random moments during ingest, at least kKillCount times,
// restarting it each time; then lets it finish and requires exact agreement with the oracle:
// nothing lost, nothing counted twice, no offset skipped.
#include <signal.h>

#include <filesystem>
#include <random>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/scenario.h"

namespace yrd::testing {
namespace {

constexpr int kKillCount = 20;
// A kill lands this long after the daemon starts, drawn uniformly: some during start-up and
// recovery, most in the middle of ingest, between and inside commits.
constexpr int kKillDelayMinMs = 50;
constexpr int kKillDelayMaxMs = 400;
// Small batches make many commits, so kills hit every phase of one.
constexpr const char* kCrashConfig = "[pipeline]\nbatch_messages_max = 1024\n";
// Few recent transaction records and frequent line checkpoints, so sorts into the dedup table
// and checkpoints come every 20 batches or so: kills also hit a sort, the window between a sort
// and the deletion of what it stored, a checkpoint, and restarts that replay applied records.
constexpr const char* kCrashStoreConfig = "recent_txn_records_max = 20000\nlines_checkpoint_applied_max = 20000\n";

TEST(Crash, SigkillDuringIngestLosesAndDoublesNothing) {
  Scenario scenario;
  scenario.StartBroker(64);
  scenario.Prepare(/*merchants=*/300, /*seed=*/21, kCrashConfig, kCrashStoreConfig);
  scenario.Generate(1'000'000, /*seed=*/23);

  std::mt19937 random(20261127);
  std::uniform_int_distribution<int> delay_ms(kKillDelayMinMs, kKillDelayMaxMs);
  int kills = 0;
  int64_t committed = 0;
  for (int attempt = 0; attempt < kKillCount * 3 && kills < kKillCount; ++attempt) {
    auto daemon = scenario.StartDaemon();
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(random)));  // the kill moment, not a wait
    if (!daemon->running()) {
      const int status = daemon->Wait(std::chrono::seconds(1)).value_or(-1);
      FAIL() << "clearingd exited by itself with wait status " << status << ":\n" << ReadFile(scenario.daemon_log());
    }
    daemon->Signal(SIGKILL);
    ASSERT_TRUE(daemon->Wait(std::chrono::seconds(30)).has_value());
    const int64_t now_committed = scenario.CommittedMessages();
    ASSERT_GE(now_committed, committed) << "committed work went backwards after a kill";
    committed = now_committed;
    if (committed == scenario.messages()) break;
    ++kills;  // killed with work left: a kill during ingest
  }
  EXPECT_GE(kills, kKillCount) << "ingest finished before enough kills; raise the event count";
  RecordProperty("committed_after_kills", std::to_string(committed) + " of " + std::to_string(scenario.messages()));

  auto daemon = scenario.StartDaemon();
  ASSERT_NO_FATAL_FAILURE(scenario.CatchUpThenStop(*daemon));
  const std::vector<std::string> diff = scenario.DiffWithOracle();
  for (const std::string& line : diff) ADD_FAILURE() << line;
  EXPECT_TRUE(diff.empty());
  // Every rejected message reached the dead-letter topic at least once, though kills fell
  // between commits and deliveries (a copy may come twice; its headers name its origin).
  ASSERT_GT(OracleExceptionTotal(scenario.oracle()), 0);
  int64_t origins = 0;
  const int64_t copies = scenario.DeadLetterCount(std::chrono::seconds(60), &origins);
  ASSERT_GE(copies, 0) << "yrd.dlq could not be read to its end";
  EXPECT_EQ(origins, OracleExceptionTotal(scenario.oracle()));
}

}  // namespace
}  // namespace yrd::testing

namespace yrd::testing {
namespace {

// SIGKILL while a closed window's files are being written, then a restart: the files are
// either absent or complete, and after the restart they verify against the store byte for byte.
TEST(Crash, SigkillDuringFileWritingLeavesNoPartialFile) {
  Scenario scenario;
  scenario.StartBroker(16);
  scenario.Prepare(/*merchants=*/2000, /*seed=*/41);
  scenario.Generate(300'000, /*seed=*/43);
  {
    auto daemon = scenario.StartDaemon();
    ASSERT_NO_FATAL_FAILURE(scenario.CatchUpThenStop(*daemon));
  }
  const int64_t next_day_ms = scenario.oracle().at("clock_fixed_ms").get<int64_t>() + 17 * 60'000;
  std::mt19937 random(41);
  // The window closes on the first tick (about a second after the start), then its files are
  // rendered: kills land before, during and after.
  std::uniform_int_distribution<int> delay_ms(200, 1800);
  for (int kill = 0; kill < 5; ++kill) {
    ChildProcess daemon({YRD_CLEARINGD_BINARY, "--config", scenario.dir() / "clearingd.toml", "--clock-fixed-ms",
                         std::to_string(next_day_ms)},
                        scenario.daemon_log());
    const size_t closes_before = kill;
    ASSERT_TRUE(WaitFor(
        [&] {
          const std::string log = ReadFile(scenario.daemon_log());
          size_t count = 0;
          for (size_t at = log.find("\"started\""); at != std::string::npos; at = log.find("\"started\"", at + 1)) ++count;
          return count > closes_before + 1 || !daemon.running();
        },
        std::chrono::minutes(1)));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(random)));  // the kill moment, not a wait
    daemon.Signal(SIGKILL);
    ASSERT_TRUE(daemon.Wait(std::chrono::seconds(30)).has_value());
    // Whatever is there is whole: every file listed in a MANIFEST, or no MANIFEST and only
    // complete files (temporary files are hidden and removed on the next run).
    if (!std::filesystem::exists(scenario.dir() / "files")) continue;  // killed before the first file
    for (const auto& entry : std::filesystem::recursive_directory_iterator(scenario.dir() / "files")) {
      if (!entry.is_regular_file()) continue;
      const std::string name = entry.path().filename().string();
      if (name.front() == '.') continue;  // a temporary file, never under its final name
      const std::string text = ReadFile(entry.path().string());
      if (name == "MANIFEST") continue;
      EXPECT_TRUE(text.empty() || text.ends_with("\n")) << entry.path() << " is cut short";
      EXPECT_NE(text.rfind("\nT|"), std::string::npos) << entry.path() << " has no trailer";
    }
  }
  ASSERT_TRUE(scenario.CloseDayAndWriteFiles(std::chrono::minutes(3))) << ReadFile(scenario.daemon_log());
  const std::vector<std::string> diff = scenario.DiffFilesWithOracle();  // includes verify against the store
  for (const std::string& line : diff) ADD_FAILURE() << line;
  EXPECT_TRUE(diff.empty());
}

}  // namespace
}  // namespace yrd::testing
