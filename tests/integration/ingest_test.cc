// A generated day through the real programs: clearing-broker, clearing-gen, clearingd and
// clearing-report, each in its own process on loopback. Every position and count must equal
// the generator's oracle exactly.
#include <signal.h>
#include <sys/wait.h>

#include "gtest/gtest.h"
#include "tests/integration/scenario.h"

namespace yrd::testing {
namespace {


TEST(Ingest, GeneratedDayMatchesOracleExactly) {
  Scenario scenario;
  scenario.StartBroker(16);
  scenario.Prepare(/*merchants=*/400, /*seed=*/7);
  // 5% exact duplicates, 0.1% conflicts, refunds, cancellations, 0.1% malformed (the defaults).
  scenario.Generate(200'000, /*seed=*/11);
  auto daemon = scenario.StartDaemon();
  ASSERT_NO_FATAL_FAILURE(scenario.CatchUpThenStop(*daemon));

  const std::vector<std::string> diff = scenario.DiffWithOracle();
  for (const std::string& line : diff) ADD_FAILURE() << line;
  EXPECT_TRUE(diff.empty());
  // Every rejected message was also copied to the dead-letter topic, once.
  EXPECT_EQ(scenario.DeadLetterCount(std::chrono::seconds(60)), OracleExceptionTotal(scenario.oracle()));
  // The exception store lists each of them, and a reason filter finds exactly that reason's.
  const nlohmann::json listed = scenario.Report({"exceptions", "--limit", "0"});
  ASSERT_TRUE(listed.is_array()) << listed;
  EXPECT_EQ(static_cast<int64_t>(listed.size()), OracleExceptionTotal(scenario.oracle()));
  int64_t conflicts_expected = 0;
  for (const auto& [date, window] : scenario.oracle().at("windows").items()) {
    conflicts_expected += window.at("counts").at("exceptions").value("duplicate_conflict", int64_t{0});
  }
  ASSERT_GT(conflicts_expected, 0);
  const nlohmann::json conflicts = scenario.Report({"exceptions", "--reason", "duplicate_conflict", "--limit", "0"});
  ASSERT_TRUE(conflicts.is_array()) << conflicts;
  EXPECT_EQ(static_cast<int64_t>(conflicts.size()), conflicts_expected);
  for (const nlohmann::json& row : conflicts) {
    EXPECT_EQ(row.at("reason"), "duplicate_conflict");
    EXPECT_NE(row.at("first_digest"), row.at("digest"));
    EXPECT_EQ(row.at("first_digest").get<std::string>().size(), 32u);
  }
  EXPECT_EQ(scenario.Report({"exceptions", "--limit", "3"}).size(), 3u);

  // The next day the window closes and its files agree with the oracle and verify.
  ASSERT_TRUE(scenario.CloseDayAndWriteFiles(std::chrono::minutes(3))) << ReadFile(scenario.daemon_log());
  const std::vector<std::string> file_diff = scenario.DiffFilesWithOracle();
  for (const std::string& line : file_diff) ADD_FAILURE() << line;
  EXPECT_TRUE(file_diff.empty());
}

// As the one member of a consumer group (kafka.assignment = "group", static membership), the
// daemon is given every partition, each from the store's offset: a restart during the day resumes
// without loss or double count, and the metrics say what it owns.
TEST(Ingest, TheOneMemberOfAGroupConsumesEveryPartitionAndResumesFromTheStore) {
  Scenario scenario;
  scenario.StartBroker(8);
  // A short session: a static member's leaving is noticed when its session ends.
  scenario.Prepare(/*merchants=*/200, /*seed=*/3, "", "",
                   "assignment = \"group\"\ngroup_instance_id = \"clearing-1\"\n"
                   "[kafka.settings]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n");
  scenario.Generate(60'000, /*seed=*/5);
  {
    auto daemon = scenario.StartDaemon();
    ASSERT_TRUE(WaitFor([&] { return scenario.CommittedMessages() > 0; }, std::chrono::minutes(2)))
        << ReadFile(scenario.daemon_log());
    auto owned = [&] {
      const std::string metrics = scenario.Http("GET", "/metrics").second;
      return metrics.find("yrd_owned_partitions{topic=\"yrd.taps\"} 8") != std::string::npos &&
             metrics.find("yrd_owned_partitions{topic=\"yrd.medical\"} 8") != std::string::npos;
    };
    EXPECT_TRUE(WaitFor(owned, std::chrono::minutes(1))) << scenario.Http("GET", "/metrics").second;
    daemon->Signal(SIGTERM);
    const std::optional<int> status = daemon->Wait(std::chrono::seconds(60));
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << ReadFile(scenario.daemon_log());
  }
  auto daemon = scenario.StartDaemon();
  ASSERT_NO_FATAL_FAILURE(scenario.CatchUpThenStop(*daemon));
  const std::vector<std::string> diff = scenario.DiffWithOracle();
  for (const std::string& line : diff) ADD_FAILURE() << line;
  EXPECT_TRUE(diff.empty());
}

TEST(Ingest, RestartAfterSigtermResumesWithoutLossOrDoubleCount) {
  Scenario scenario;
  scenario.StartBroker(8);
  scenario.Prepare(/*merchants=*/200, /*seed=*/3);
  scenario.Generate(60'000, /*seed=*/5);
  {
    auto daemon = scenario.StartDaemon();
    ASSERT_TRUE(WaitFor([&] { return scenario.CommittedMessages() > 0; }, std::chrono::minutes(2)))
        << ReadFile(scenario.daemon_log());
    daemon->Signal(SIGTERM);
    const std::optional<int> status = daemon->Wait(std::chrono::seconds(60));
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << ReadFile(scenario.daemon_log());
  }
  auto daemon = scenario.StartDaemon();
  ASSERT_NO_FATAL_FAILURE(scenario.CatchUpThenStop(*daemon));
  const std::vector<std::string> diff = scenario.DiffWithOracle();
  for (const std::string& line : diff) ADD_FAILURE() << line;
  EXPECT_TRUE(diff.empty());
}

}  // namespace
}  // namespace yrd::testing
