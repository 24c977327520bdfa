// Kills clearingd with SIGKILL at random moments during ingest, at least kKillCount times,
// restarting it each time; then lets it finish and requires exact agreement with the oracle:
// nothing lost, nothing counted twice, no offset skipped.
#include <signal.h>

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
constexpr int kKillDelayMaxMs = 900;
// Small batches make many commits, so kills hit every phase of one.
constexpr const char* kCrashConfig = "[pipeline]\nbatch_messages_max = 1024\n";

TEST(Crash, SigkillDuringIngestLosesAndDoublesNothing) {
  Scenario scenario;
  scenario.StartBroker(64);
  scenario.Prepare(/*merchants=*/300, /*seed=*/21, kCrashConfig);
  scenario.Generate(800'000, /*seed=*/23);

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

  auto daemon = scenario.StartDaemon();
  ASSERT_TRUE(scenario.WaitCaughtUp(std::chrono::minutes(3))) << ReadFile(scenario.daemon_log());
  daemon->Signal(SIGTERM);
  ASSERT_TRUE(daemon->Wait(std::chrono::seconds(60)).has_value());
  const std::vector<std::string> diff = scenario.DiffWithOracle();
  for (const std::string& line : diff) ADD_FAILURE() << line;
  EXPECT_TRUE(diff.empty());
}

}  // namespace
}  // namespace yrd::testing
