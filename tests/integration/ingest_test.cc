// A generated day through the real programs: clearing-broker, clearing-gen, clearingd and
// clearing-report, each in its own process on loopback. Every position and count must equal
// the generator's oracle exactly.
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "adapters/kafka/kafka_source.h"
#include "gtest/gtest.h"
#include "tests/integration/scenario.h"

namespace yrd::testing {
namespace {

// librdkafka's group settings for a member whose leaving the coordinator notices within seconds.
constexpr const char* kShortSession =
    "[kafka.settings]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n";

// Stops `daemon` with SIGTERM: it drains what it consumed and exits 0.
void StopWithSigterm(Scenario& scenario, ChildProcess& daemon) {
  daemon.Signal(SIGTERM);
  const std::optional<int> status = daemon.Wait(std::chrono::seconds(60));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << ReadFile(scenario.daemon_log());
}

// Lets `daemon` consume the rest of the day, stops it, and compares everything with the oracle.
void ExpectOracleAfterCatchUp(Scenario& scenario, ChildProcess& daemon) {
  ASSERT_NO_FATAL_FAILURE(scenario.CatchUpThenStop(daemon));
  const std::vector<std::string> diff = scenario.DiffWithOracle();
  for (const std::string& line : diff) ADD_FAILURE() << line;
  EXPECT_TRUE(diff.empty());
}

// Writes the configuration of another member of the scenario's group, `name`: its own store,
// files and static membership, the rest as the scenario's daemon. Returns the path.
std::string WriteMemberConfig(Scenario& scenario, const std::string& name) {
  std::string config = ReadFile(scenario.dir() / "clearingd.toml");
  for (const auto& [from, to] : {std::pair<std::string, std::string>{"path = \"state\"", "path = \"" + name + "-state\""},
                                 {"dir = \"files\"", "dir = \"" + name + "-files\""},
                                 {"\"clearing-1\"", "\"" + name + "\""}}) {
    const size_t at = config.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) config.replace(at, from.size(), to);
  }
  const std::string path = scenario.dir() / (name + ".toml");
  WriteFile(path, config);
  return path;
}

std::unique_ptr<ChildProcess> StartMember(Scenario& scenario, const std::string& name) {
  return std::make_unique<ChildProcess>(
      std::vector<std::string>{YRD_CLEARINGD_BINARY, "--config", scenario.dir() / (name + ".toml"), "--clock-fixed-ms",
                               std::to_string(scenario.clock_ms())},
      scenario.dir() / (name + ".log"));
}

// True when a progress line of `log` after byte `from` reports messages consumed.
bool ConsumedSince(const std::string& log, size_t from) {
  for (size_t at = log.find("\"consumed\":", from); at != std::string::npos; at = log.find("\"consumed\":", at + 1)) {
    if (log.compare(at, 13, "\"consumed\":0,") != 0) return true;
  }
  return false;
}

// Closes the generated day on the scenario's daemon (which must hold every partition), waits for
// its files, stops the daemon and compares its store and files with the oracle.
void CloseTheDayAndExpectTheOraclesFiles(Scenario& scenario, ChildProcess& daemon) {
  EXPECT_EQ(scenario.Http("POST", "/v1/windows/20261127/close", kAdminToken).first, 202);
  ASSERT_TRUE(WaitFor(
      [&] { return scenario.Http("GET", "/v1/windows/20261127").second.find("files_written") != std::string::npos; },
      std::chrono::minutes(2)))
      << ReadFile(scenario.daemon_log());
  ExpectOracleAfterCatchUp(scenario, daemon);
  const std::vector<std::string> files_diff = scenario.DiffFilesWithOracle();
  for (const std::string& line : files_diff) ADD_FAILURE() << line;
}

// How many of the 16 partitions the scenario's daemon holds, by its metrics; -1 when unknown.
int OwnedPartitions(Scenario& scenario) {
  const std::string metrics = scenario.Http("GET", "/metrics").second;
  int held = 0;
  for (const std::string topic : {"yrd.taps", "yrd.medical"}) {
    const std::string name = "yrd_owned_partitions{topic=\"" + topic + "\"} ";
    const size_t at = metrics.find(name);
    if (at == std::string::npos) return -1;
    held += std::stoi(metrics.substr(at + name.size()));
  }
  return held;
}

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
                   std::string("assignment = \"group\"\ngroup_instance_id = \"clearing-1\"\n") + kShortSession);
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
    ASSERT_NO_FATAL_FAILURE(StopWithSigterm(scenario, *daemon));
  }
  auto daemon = scenario.StartDaemon();
  ExpectOracleAfterCatchUp(scenario, *daemon);
}

// A member that holds only part of the partitions writes no file set: until state is handed over
// between instances, its files would miss the other partitions' money. Once it holds every
// partition again, it writes them, exactly the oracle's.
TEST(Ingest, AWindowsFilesWaitUntilTheOwnerOfEveryPartitionHasClosedIt) {
  Scenario scenario;
  scenario.StartBroker(8);
  scenario.Prepare(/*merchants=*/200, /*seed=*/3, "", "", std::string("assignment = \"group\"\n") + kShortSession);
  scenario.Generate(20'000, /*seed=*/5);
  auto daemon = scenario.StartDaemon();
  ASSERT_TRUE(WaitFor([&] { return scenario.CommittedMessages() == 20'000; }, std::chrono::minutes(2)))
      << ReadFile(scenario.daemon_log());

  // Another member joins the group and is given half of the partitions; having no state of them
  // (the daemon consumed them), it refuses to consume them but stays in the group while it lives.
  kafka::KafkaSourceOptions options;
  options.bootstrap_servers = scenario.bootstrap_servers();
  options.assignment = kafka::KafkaSourceOptions::Assignment::kGroup;
  options.dead_letter = false;
  options.settings = {{"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "500"}};
  options.committed_offset = [](SourceTopic, int32_t) { return std::optional<int64_t>(); };
  auto other = kafka::KafkaSource::Create(options, PartitionOffsets{});
  ASSERT_TRUE(other.ok()) << other.status();
  Batch batch(BatchLimits{.messages_max = 64, .arena_bytes_max = 1 << 16});
  const auto joined_by = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while ((*other)->Assignment().empty() && std::chrono::steady_clock::now() < joined_by) {
    const absl::Status refused = (*other)->Fill(batch, std::chrono::milliseconds(100));
    batch.Clear();
    if (!refused.ok()) {
      EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
    }
  }
  ASSERT_FALSE((*other)->Assignment().empty());
  auto daemon_holds_part = [&] {
    const std::string metrics = scenario.Http("GET", "/metrics").second;
    return metrics.find("yrd_owned_partitions{topic=\"yrd.taps\"} 8") == std::string::npos ||
           metrics.find("yrd_owned_partitions{topic=\"yrd.medical\"} 8") == std::string::npos;
  };
  ASSERT_TRUE(WaitFor(daemon_holds_part, std::chrono::minutes(1)));

  // A report from its store says which partitions its answers lack.
  const std::string report_log = scenario.dir() / "report.log";
  auto report_warns = [&] {
    std::string out;
    (void)RunProgram({YRD_REPORT_BINARY, "--store", scenario.state_dir(), "--format", "json", "exceptions"},
                     std::chrono::seconds(60), &out, report_log);
    return ReadFile(report_log).find("answers lack yrd.") != std::string::npos;
  };
  EXPECT_TRUE(WaitFor(report_warns, std::chrono::minutes(1))) << ReadFile(report_log);

  // The window closes on the daemon, whose partitions report it; the other member never closes
  // its own: the file set waits.
  EXPECT_EQ(scenario.Http("POST", "/v1/windows/20261127/close", kAdminToken).first, 202);
  ASSERT_TRUE(WaitFor([&] { return ReadFile(scenario.daemon_log()).find("clearing_files_held") != std::string::npos; },
                      std::chrono::minutes(1)))
      << ReadFile(scenario.daemon_log());
  EXPECT_TRUE(ReadFile(scenario.files_dir() + "/MANIFEST").empty());

  // The other member leaves: the daemon takes its partitions back, reports the close in their
  // changelogs, and writes the files (as the owner of yrd.taps partition 0).
  other->reset();
  ASSERT_TRUE(WaitFor(
      [&] { return scenario.Http("GET", "/v1/windows/20261127").second.find("files_written") != std::string::npos; },
      std::chrono::minutes(2)))
      << ReadFile(scenario.daemon_log());
  ExpectOracleAfterCatchUp(scenario, *daemon);
}

TEST(Ingest, AMemberThatLeavesHandsItsPartitionsStateToTheOtherThroughTheChangelog) {
  Scenario scenario;
  scenario.StartBroker(8);
  scenario.Prepare(/*merchants=*/200, /*seed=*/3, "", "",
                   std::string("assignment = \"group\"\ngroup_instance_id = \"clearing-1\"\n") + kShortSession);
  WriteMemberConfig(scenario, "clearing-2");
  const std::string second_log = scenario.dir() / "clearing-2.log";
  auto first = scenario.StartDaemon();
  ASSERT_TRUE(WaitFor([&] { return OwnedPartitions(scenario) == 16; }, std::chrono::minutes(1)))
      << ReadFile(scenario.daemon_log());
  auto second = StartMember(scenario, "clearing-2");
  // The second member has its half (restored: empty) and the first the other half.
  ASSERT_TRUE(WaitFor(
      [&] {
        return OwnedPartitions(scenario) == 8 &&
               ReadFile(second_log).find("\"event\":\"partition_restored\"") != std::string::npos;
      },
      std::chrono::minutes(1)))
      << ReadFile(scenario.daemon_log()) << ReadFile(second_log);

  // Both consume their half of the day; the second one stops for good once it has consumed some
  // (it commits what it consumed as it stops).
  scenario.Generate(20'000, /*seed=*/5);
  ASSERT_TRUE(WaitFor([&] { return ConsumedSince(ReadFile(second_log), 0); }, std::chrono::minutes(2)))
      << ReadFile(second_log);
  second->Signal(SIGTERM);
  const std::optional<int> second_status = second->Wait(std::chrono::seconds(60));
  ASSERT_TRUE(second_status.has_value());
  EXPECT_TRUE(WIFEXITED(*second_status) && WEXITSTATUS(*second_status) == 0) << ReadFile(second_log);

  // When its session ends the first member takes every partition, restores the second's state
  // from the changelog (it never consumed those partitions), and its store holds the whole day.
  ASSERT_TRUE(WaitFor([&] { return OwnedPartitions(scenario) == 16 && scenario.CommittedMessages() == scenario.messages(); },
                      std::chrono::minutes(2)))
      << ReadFile(scenario.daemon_log());
  const std::string metrics = scenario.Http("GET", "/metrics").second;
  EXPECT_GT(MetricSample(metrics, "yrd_changelog_restored_commits_total"), 0) << metrics;
  EXPECT_NE(ReadFile(scenario.daemon_log()).find("\"event\":\"partition_restored\""), std::string::npos);
  CloseTheDayAndExpectTheOraclesFiles(scenario, *first);
}

// Every file under `dir` by its path relative to it, with its bytes.
std::map<std::string, std::string> FilesUnder(const std::filesystem::path& dir) {
  std::map<std::string, std::string> files;
  if (!std::filesystem::exists(dir)) return files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) files[std::filesystem::relative(entry.path(), dir).string()] = ReadFile(entry.path());
  }
  return files;
}

// One instance of its own (kafka.assignment = "partitions", a new store) consumes the scenario's
// messages, closes the day at the same instant (the clock is fixed; with `close_clock_ms`, it is
// started again at that instant and its clock closes the day) and writes its files: they must be
// `files`, byte for byte.
void ExpectTheFilesOfOneInstance(Scenario& scenario, const std::map<std::string, std::string>& files,
                                 int64_t close_clock_ms = 0) {
  std::string config = ReadFile(scenario.dir() / "clearingd.toml");
  for (const auto& [from, to] : {std::pair<std::string, std::string>{"path = \"state\"", "path = \"single-state\""},
                                 {"dir = \"files\"", "dir = \"single-files\""},
                                 {"assignment = \"group\"", "assignment = \"partitions\""},
                                 {"group_instance_id = \"clearing-1\"\n", ""}}) {
    const size_t at = config.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    config.replace(at, from.size(), to);
  }
  // One instance of one shard.
  if (const size_t at = config.find("shards = "); at != std::string::npos) config.erase(at, config.find('\n', at) + 1 - at);
  WriteFile(scenario.dir() / "single.toml", config);
  const std::string single_log = scenario.dir() / "single.log";
  auto single = std::make_unique<ChildProcess>(
      std::vector<std::string>{YRD_CLEARINGD_BINARY, "--config", scenario.dir() / "single.toml", "--clock-fixed-ms",
                               std::to_string(scenario.clock_ms())},
      single_log);
  ASSERT_TRUE(WaitFor([&] { return scenario.CommittedMessages(scenario.dir() / "single-state") == scenario.messages(); },
                      std::chrono::minutes(3)))
      << ReadFile(single_log);
  if (close_clock_ms == 0) {
    ASSERT_EQ(scenario.Http("POST", "/v1/windows/20261127/close", kAdminToken, single_log).first, 202);
  } else {
    ASSERT_NO_FATAL_FAILURE(StopWithSigterm(scenario, *single));
    single = std::make_unique<ChildProcess>(
        std::vector<std::string>{YRD_CLEARINGD_BINARY, "--config", scenario.dir() / "single.toml", "--clock-fixed-ms",
                                 std::to_string(close_clock_ms)},
        single_log);
  }
  ASSERT_TRUE(WaitFor(
      [&] { return scenario.Http("GET", "/v1/windows/20261127", "", single_log).second.find("files_written") != std::string::npos; },
      std::chrono::minutes(2)))
      << ReadFile(single_log);
  const std::map<std::string, std::string> one = FilesUnder(std::filesystem::path(scenario.dir() / "single-files") / "20261127");
  ASSERT_TRUE(one.contains("summary.txt") && one.contains("MANIFEST"));
  EXPECT_EQ(files.size(), one.size());
  for (const auto& [path, bytes] : one) {
    const auto it = files.find(path);
    if (it == files.end()) {
      ADD_FAILURE() << path << " is not in the group's file set";
    } else if (it->second != bytes) {
      ADD_FAILURE() << path << " differs between the group's file set and one instance's";
    }
  }
  ASSERT_NO_FATAL_FAILURE(StopWithSigterm(scenario, *single));
}

// A broker and the configuration of the first member of a group (clearing-1, static membership,
// a short session).
void PrepareGroup(Scenario& scenario, int partitions_per_topic = 8, int merchants = 200) {
  scenario.StartBroker(partitions_per_topic);
  scenario.Prepare(merchants, /*seed=*/3, "", "",
                   std::string("assignment = \"group\"\ngroup_instance_id = \"clearing-1\"\n") + kShortSession);
}

// Three members of one group on the scenario's broker: clearing-1 is the scenario's daemon, the
// others have stores, files and logs of their own.
class ThreeMembers {
 public:
  // `partitions`: of both topics together (twice the broker's partitions per topic).
  explicit ThreeMembers(Scenario& scenario, int partitions = 16) : scenario_(scenario), partitions_(partitions) {
    WriteMemberConfig(scenario, "clearing-2");
    WriteMemberConfig(scenario, "clearing-3");
  }
  const std::vector<std::string> names = {"clearing-1", "clearing-2", "clearing-3"};

  std::string LogOf(const std::string& name) const {
    return name == "clearing-1" ? scenario_.daemon_log() : std::string(scenario_.dir() / (name + ".log"));
  }
  std::string StoreOf(const std::string& name) const {
    return name == "clearing-1" ? scenario_.state_dir() : std::string(scenario_.dir() / (name + "-state"));
  }
  std::filesystem::path FilesOf(const std::string& name) const {
    return std::filesystem::path(scenario_.dir() / (name == "clearing-1" ? std::string("files") : name + "-files")) /
           "20261127";
  }
  ChildProcess& member(const std::string& name) { return *members_.at(name); }

  // Starts the first, then the next `count - 1` once it holds every partition; returns once each
  // has restored partitions of its own.
  void Start(size_t count = 3) {
    members_["clearing-1"] = scenario_.StartDaemon();
    ASSERT_TRUE(WaitFor([&] { return OwnedPartitions(scenario_) == partitions_; }, std::chrono::minutes(1)))
        << ReadFile(scenario_.daemon_log());
    for (size_t i = 1; i < count; ++i) StartOne(names[i]);
    ASSERT_TRUE(WaitFor(
        [&] {
          for (size_t i = 0; i < count; ++i) {
            if (ReadFile(LogOf(names[i])).find("\"event\":\"partition_restored\"") == std::string::npos) return false;
          }
          return OwnedPartitions(scenario_) < partitions_;
        },
        std::chrono::minutes(2)))
        << ReadFile(LogOf("clearing-2")) << ReadFile(LogOf("clearing-3"));
  }
  void StartOne(const std::string& name) { members_[name] = StartMember(scenario_, name); }
  // Starts every member at once with its clock at `clock_ms` (on its store as it was left).
  void StartAllAt(int64_t clock_ms) {
    for (const std::string& name : names) {
      const std::string config = name == "clearing-1" ? std::string(scenario_.dir() / "clearingd.toml")
                                                      : std::string(scenario_.dir() / (name + ".toml"));
      members_[name] = std::make_unique<ChildProcess>(
          std::vector<std::string>{YRD_CLEARINGD_BINARY, "--config", config, "--clock-fixed-ms", std::to_string(clock_ms)},
          LogOf(name));
    }
  }
  // Waits until every member shows the day files_written; returns the one file set.
  std::map<std::string, std::string> AwaitTheFileSet() {
    const bool written = WaitFor(
        [&] {
          for (const std::string& member : names) {
            if (scenario_.Http("GET", "/v1/windows/20261127", "", LogOf(member)).second.find("files_written") ==
                std::string::npos) {
              return false;
            }
          }
          return true;
        },
        std::chrono::minutes(2));
    EXPECT_TRUE(written) << ReadFile(LogOf("clearing-1")) << ReadFile(LogOf("clearing-2")) << ReadFile(LogOf("clearing-3"));
    std::vector<std::string> writers;
    for (const std::string& member : names) {
      if (!FilesUnder(FilesOf(member)).empty()) writers.push_back(member);
    }
    EXPECT_EQ(writers.size(), 1u) << "one file set, on one member";
    if (writers.empty()) return {};
    EXPECT_NE(ReadFile(LogOf(writers[0])).find("\"event\":\"window_merged\""), std::string::npos);
    return FilesUnder(FilesOf(writers[0]));
  }

  // Partitions a member owns and the sum of its consumer lag, by its metrics (-1 when unknown).
  int Owned(const std::string& name) const {
    const std::string metrics = scenario_.Http("GET", "/metrics", "", LogOf(name)).second;
    int held = 0;
    for (const std::string topic : {"yrd.taps", "yrd.medical"}) {
      const std::string sample = "yrd_owned_partitions{topic=\"" + topic + "\"} ";
      const size_t at = metrics.find(sample);
      if (at == std::string::npos) return -1;
      held += std::stoi(metrics.substr(at + sample.size()));
    }
    return held;
  }
  int64_t Lag(const std::string& name) const {
    const std::string metrics = scenario_.Http("GET", "/metrics", "", LogOf(name)).second;
    if (metrics.find("# TYPE yrd_consumer_lag_messages") == std::string::npos) return -1;
    int64_t lag = 0;
    std::istringstream lines(metrics);
    for (std::string line; std::getline(lines, line);) {
      if (!line.starts_with("yrd_consumer_lag_messages{")) continue;
      const int64_t value = std::stoll(line.substr(line.rfind(' ') + 1));
      if (value < 0) return -1;
      lag += value;
    }
    return lag;
  }
  // True when `running` hold every partition between them and have consumed all they hold.
  bool CaughtUp(const std::vector<std::string>& running) const {
    int owned = 0;
    for (const std::string& name : running) {
      const int held = Owned(name);
      if (held < 0 || Lag(name) != 0) return false;
      owned += held;
    }
    return owned == partitions_;
  }

  // The operator's close, sent to `name` only: every member closes its partitions, and the owner
  // of the coordinating partition writes the one file set, which this returns.
  std::map<std::string, std::string> CloseThrough(const std::string& name) {
    const auto [code, body] = scenario_.Http("POST", "/v1/windows/20261127/close", kAdminToken, LogOf(name));
    EXPECT_EQ(code, 202) << body;
    return AwaitTheFileSet();
  }

  // SIGTERM to every member; each exits 0.
  void StopAll() {
    for (const std::string& name : names) {
      members_.at(name)->Signal(SIGTERM);
      const std::optional<int> status = members_.at(name)->Wait(std::chrono::seconds(60));
      ASSERT_TRUE(status.has_value());
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << name << "\n" << ReadFile(LogOf(name));
    }
  }

 private:
  Scenario& scenario_;
  const int partitions_;
  std::map<std::string, std::unique_ptr<ChildProcess>> members_;
};

TEST(Ingest, AMemberWithAStandbyTakesAKilledMembersPartitionsFromItAndReadsOnlyTheirChangelogsTail) {
  Scenario scenario;
  scenario.StartBroker(8);
  scenario.Prepare(/*merchants=*/200, /*seed=*/3, "", "",
                   std::string("assignment = \"group\"\ngroup_instance_id = \"clearing-1\"\nstandby = true\n") +
                       kShortSession);
  WriteMemberConfig(scenario, "clearing-2");
  const std::string second_log = scenario.dir() / "clearing-2.log";
  auto first = scenario.StartDaemon();
  ASSERT_TRUE(WaitFor([&] { return OwnedPartitions(scenario) == 16; }, std::chrono::minutes(1)))
      << ReadFile(scenario.daemon_log());
  auto second = StartMember(scenario, "clearing-2");
  ASSERT_TRUE(WaitFor([&] { return OwnedPartitions(scenario) == 8; }, std::chrono::minutes(1)))
      << ReadFile(scenario.daemon_log()) << ReadFile(second_log);

  // Both consume their half of the day; the first member's standby follows the second's half.
  scenario.Generate(20'000, /*seed=*/5);
  ThreeMembers view(scenario);  // for the second member's metrics
  auto standby_caught_up = [&] {
    if (!view.CaughtUp({"clearing-1", "clearing-2"})) return false;
    const std::string metrics = scenario.Http("GET", "/metrics").second;
    return MetricSample(metrics, "yrd_standby_partitions") == 8 &&
           MetricSample(metrics, "yrd_standby_applied_commits_total") > 0 &&
           MetricSample(metrics, "yrd_standby_lag_records") == 0;
  };
  ASSERT_TRUE(WaitFor(standby_caught_up, std::chrono::minutes(2)))
      << ReadFile(scenario.daemon_log()) << ReadFile(second_log) << scenario.Http("GET", "/metrics").second;
  // The first member answers for the whole day: its own half from its store, the other from its
  // standby's.
  for (const std::string& line : scenario.DiffWithOracle()) ADD_FAILURE() << line;
  const std::string report_log = ReadFile(scenario.dir() / "report.log");
  EXPECT_NE(report_log.find("partitions answered from the standby store"), std::string::npos) << report_log;
  EXPECT_EQ(report_log.find("answers lack"), std::string::npos) << report_log;

  // The second member dies; the first takes its partitions from the standby.
  const size_t log_before = ReadFile(scenario.daemon_log()).size();
  second->Signal(SIGKILL);
  ASSERT_TRUE(second->Wait(std::chrono::seconds(30)).has_value());
  ASSERT_TRUE(WaitFor([&] { return OwnedPartitions(scenario) == 16; }, std::chrono::minutes(2)))
      << ReadFile(scenario.daemon_log());
  const std::string log = ReadFile(scenario.daemon_log()).substr(log_before);
  EXPECT_NE(log.find("\"from_standby\":true"), std::string::npos) << log;
  EXPECT_GE(MetricSample(scenario.Http("GET", "/metrics").second, "yrd_standby_copies_total"), 1);
  // Its next pass follows nothing: it owns every partition.
  EXPECT_TRUE(WaitFor([&] { return MetricSample(scenario.Http("GET", "/metrics").second, "yrd_standby_partitions") == 0; },
                      std::chrono::seconds(30)));
  CloseTheDayAndExpectTheOraclesFiles(scenario, *first);
}

TEST(Ingest, ThreeMembersSurviveKillsAndAScaleDownToOneWithTheOraclesFiles) {
  Scenario scenario;
  scenario.StartBroker(8);
  // Snapshots every 64 KiB of a partition's changelog: the restores after each kill read
  // changelogs with snapshots between the commits.
  scenario.Prepare(/*merchants=*/200, /*seed=*/3, "", "",
                   std::string("assignment = \"group\"\ngroup_instance_id = \"clearing-1\"\n"
                               "changelog_snapshot_bytes = 65536\n") +
                       kShortSession);
  WriteMemberConfig(scenario, "clearing-2");
  WriteMemberConfig(scenario, "clearing-3");
  auto first = scenario.StartDaemon();
  ASSERT_TRUE(WaitFor([&] { return OwnedPartitions(scenario) == 16; }, std::chrono::minutes(1)))
      << ReadFile(scenario.daemon_log());
  std::map<std::string, std::unique_ptr<ChildProcess>> members;
  for (const std::string name : {"clearing-2", "clearing-3"}) members[name] = StartMember(scenario, name);
  auto member_log = [&](const std::string& name) { return ReadFile(scenario.dir() / (name + ".log")); };
  // Whether a member's log since byte `from` says it restored its partitions.
  auto restored_since = [&](const std::string& name, size_t from) {
    return member_log(name).find("\"event\":\"partition_restored\"", from) != std::string::npos;
  };
  // Scaled from one to three: each holds a share.
  ASSERT_TRUE(WaitFor([&] { return restored_since("clearing-2", 0) && restored_since("clearing-3", 0) &&
                                   OwnedPartitions(scenario) < 16; },
                      std::chrono::minutes(2)))
      << ReadFile(scenario.daemon_log()) << member_log("clearing-2") << member_log("clearing-3");

  // The day arrives; the second member is killed (SIGKILL) once it has consumed, then four more
  // times, each once its new life has its partitions back (restored from their changelogs) and
  // has consumed, and started again on its store. After each kill the two others take its
  // partitions and consume them to lag 0 before it comes back: the time that takes is printed.
  scenario.Generate(60'000, /*seed=*/5);
  const std::string killed = "clearing-2";
  ThreeMembers view(scenario);  // for the others' metrics
  ASSERT_TRUE(WaitFor([&] { return ConsumedSince(member_log(killed), 0); }, std::chrono::minutes(1)))
      << member_log(killed);
  for (int kill = 0; kill < 5; ++kill) {
    if (kill > 0) {
      const size_t life_start = member_log(killed).size();
      members[killed] = StartMember(scenario, killed);
      ASSERT_TRUE(WaitFor([&] { return restored_since(killed, life_start); }, std::chrono::minutes(1)))
          << member_log(killed);
    }
    members[killed]->Signal(SIGKILL);
    ASSERT_TRUE(members[killed]->Wait(std::chrono::seconds(30)).has_value());
    const auto killed_at = std::chrono::steady_clock::now();
    ASSERT_TRUE(WaitFor([&] { return view.CaughtUp({"clearing-1", "clearing-3"}); }, std::chrono::minutes(2)))
        << "kill " << kill << "\n" << ReadFile(scenario.daemon_log()) << member_log("clearing-3");
    const auto to_lag_zero = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at);
    std::cout << "kill " << kill + 1 << ": the others held every partition at lag 0 after " << to_lag_zero.count()
              << " ms\n";
    ::testing::Test::RecordProperty("kill_" + std::to_string(kill + 1) + "_to_lag_zero_ms", static_cast<int>(to_lag_zero.count()));
  }
  const size_t last_life_start = member_log(killed).size();
  members[killed] = StartMember(scenario, killed);

  // Back to one: the other two stop; the first takes every partition with their state.
  ASSERT_TRUE(WaitFor([&] { return restored_since(killed, last_life_start); }, std::chrono::minutes(1)))
      << member_log(killed);
  for (const std::string name : {"clearing-2", "clearing-3"}) {
    members[name]->Signal(SIGTERM);
    const std::optional<int> status = members[name]->Wait(std::chrono::seconds(60));
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << name << " ended with status " << *status << "\n" << member_log(name);
  }
  ASSERT_TRUE(WaitFor([&] { return OwnedPartitions(scenario) == 16 && scenario.CommittedMessages() == scenario.messages(); },
                      std::chrono::minutes(2)))
      << ReadFile(scenario.daemon_log());
  const std::string metrics = scenario.Http("GET", "/metrics").second;
  EXPECT_GT(MetricSample(metrics, "yrd_changelog_restored_commits_total"), 0);
  EXPECT_GT(MetricSample(metrics, "yrd_changelog_snapshots_total"), 0) << metrics;
  CloseTheDayAndExpectTheOraclesFiles(scenario, *first);
  ExpectTheFilesOfOneInstance(scenario, FilesUnder(scenario.files_dir()));
}

TEST(Ingest, ThreeMembersCloseTheDayFromAnyOneAndWriteTheBytesOfOneInstance) {
  Scenario scenario;
  PrepareGroup(scenario, /*partitions_per_topic=*/16, /*merchants=*/400);
  ThreeMembers group(scenario, 32);
  ASSERT_NO_FATAL_FAILURE(group.Start());
  // The day arrives (500k messages with the generator's duplicates, conflicts, refunds,
  // cancellations, late and malformed ones) and every member consumes its share of it.
  scenario.Generate(500'000, /*seed=*/5);
  auto committed_everywhere = [&] {
    int64_t total = 0;
    for (const std::string& name : group.names) {
      total += std::max<int64_t>(scenario.CommittedMessages(group.StoreOf(name)), 0);
    }
    return total;
  };
  ASSERT_TRUE(WaitFor([&] { return committed_everywhere() == scenario.messages(); }, std::chrono::minutes(3)))
      << committed_everywhere() << " of " << scenario.messages();
  const std::map<std::string, std::string> merged = group.CloseThrough("clearing-3");
  ASSERT_NO_FATAL_FAILURE(group.StopAll());
  ExpectTheFilesOfOneInstance(scenario, merged);
}

// One process of two ledger shards (pipeline.shards = 2: two members of the group, a store and
// pipeline each) splits the partitions; the reports over its shard stores equal the oracle, the
// merged file set is the oracle's and byte for byte one instance's, and a restart resumes each
// shard from its own store.
TEST(Ingest, OneProcessOfTwoShardsSplitsThePartitionsAndWritesTheBytesOfOneInstance) {
  Scenario scenario;
  scenario.StartBroker(16);  // a partition's changelog well inside the mock broker's 5 MiB
  scenario.Prepare(/*merchants=*/200, /*seed=*/3, "[pipeline]\nshards = 2\n", "",
                   std::string("assignment = \"group\"\ngroup_instance_id = \"clearing-1\"\n") + kShortSession);
  scenario.Generate(200'000, /*seed=*/5);
  const std::string shard_0 = std::filesystem::path(scenario.state_dir()) / "shard-0";
  const std::string shard_1 = std::filesystem::path(scenario.state_dir()) / "shard-1";
  {
    auto daemon = scenario.StartDaemon();
    ASSERT_TRUE(WaitFor([&] { return scenario.CommittedMessages(shard_0) > 0 && scenario.CommittedMessages(shard_1) > 0; },
                        std::chrono::minutes(2)))
        << ReadFile(scenario.daemon_log());
    EXPECT_TRUE(WaitFor([&] { return OwnedPartitions(scenario) == 32; }, std::chrono::minutes(1)))
        << scenario.Http("GET", "/metrics").second;
    ASSERT_NO_FATAL_FAILURE(StopWithSigterm(scenario, *daemon));
  }
  const int64_t before_restart = scenario.CommittedMessages();
  EXPECT_GT(before_restart, 0);
  auto daemon = scenario.StartDaemon();
  ASSERT_TRUE(scenario.WaitCaughtUp(std::chrono::minutes(3))) << scenario.CommittedMessages() << " of "
                                                               << scenario.messages();
  // Each shard holds part of the day, and together all of it.
  const int64_t in_shard_0 = scenario.CommittedMessages(shard_0);
  const int64_t in_shard_1 = scenario.CommittedMessages(shard_1);
  EXPECT_GT(in_shard_0, 0);
  EXPECT_GT(in_shard_1, 0);
  EXPECT_LT(in_shard_0, scenario.messages());
  CloseTheDayAndExpectTheOraclesFiles(scenario, *daemon);
  EXPECT_NE(ReadFile(scenario.daemon_log()).find("\"event\":\"window_merged\""), std::string::npos);
  ExpectTheFilesOfOneInstance(scenario, FilesUnder(scenario.files_dir()));
}

TEST(Ingest, AMemberPausedPastItsSessionWakesAsAZombieAndChangesNothing) {
  Scenario scenario;
  // 16 partitions a topic: a partition's changelog stays well inside the mock broker's 5 MiB (with
  // 8, 200k messages came to about 5 MiB a taps partition once commits were fast, the broker
  // dropped the oldest records, and the merge was refused as changelog_truncated).
  PrepareGroup(scenario, /*partitions_per_topic=*/16);
  ThreeMembers group(scenario, 32);
  ASSERT_NO_FATAL_FAILURE(group.Start());
  scenario.Generate(200'000, /*seed=*/5);
  const std::string paused = "clearing-2";
  ASSERT_TRUE(WaitFor([&] { return ConsumedSince(ReadFile(group.LogOf(paused)), 0); }, std::chrono::minutes(1)));
  // Paused while it consumes, past its session timeout (6 s): the others take its partitions
  // (fencing it in their changelogs) and consume the rest of the day.
  group.member(paused).Signal(SIGSTOP);
  ASSERT_TRUE(WaitFor([&] { return group.CaughtUp({"clearing-1", "clearing-3"}); }, std::chrono::minutes(3)))
      << ReadFile(group.LogOf("clearing-1")) << ReadFile(group.LogOf("clearing-3"));
  // It wakes as a zombie: whatever it commits now counts nowhere, it finds it lost its partitions,
  // rejoins, and gets a share back (rebuilt from the changelogs if its store diverged).
  const size_t woke_at = ReadFile(group.LogOf(paused)).size();
  group.member(paused).Signal(SIGCONT);
  ASSERT_TRUE(WaitFor(
      [&] {
        return ReadFile(group.LogOf(paused)).find("\"event\":\"partition_restored\"", woke_at) != std::string::npos &&
               group.Owned(paused) > 0 && group.CaughtUp(group.names);
      },
      std::chrono::minutes(3)))
      << ReadFile(group.LogOf(paused));
  const std::string zombie_log = ReadFile(group.LogOf(paused));
  EXPECT_EQ(zombie_log.find("partition_restore_failed"), std::string::npos) << zombie_log;
  ::testing::Test::RecordProperty("zombie_rebuilt_a_partition",
                                  zombie_log.find("\"event\":\"partition_rebuilt\"") != std::string::npos ? "yes" : "no");
  const std::map<std::string, std::string> merged = group.CloseThrough("clearing-1");
  ASSERT_NO_FATAL_FAILURE(group.StopAll());
  ExpectTheFilesOfOneInstance(scenario, merged);
}

TEST(Ingest, TheClockClosesTheWindowOnEveryMemberAndOneFileSetIsWritten) {
  Scenario scenario;
  PrepareGroup(scenario);
  ThreeMembers group(scenario);
  ASSERT_NO_FATAL_FAILURE(group.Start());
  scenario.Generate(100'000, /*seed=*/5);
  ASSERT_TRUE(WaitFor([&] { return group.CaughtUp(group.names); }, std::chrono::minutes(3)));
  ASSERT_NO_FATAL_FAILURE(group.StopAll());
  // The next day: every member starts with its clock past the cutoff plus grace and closes the
  // window at that instant by itself; no operator is involved.
  const int64_t next_day_ms = scenario.clock_ms() + 17 * 60'000;  // 00:16 China time
  group.StartAllAt(next_day_ms);
  const std::map<std::string, std::string> merged = group.AwaitTheFileSet();
  ASSERT_NO_FATAL_FAILURE(group.StopAll());
  ExpectTheFilesOfOneInstance(scenario, merged, next_day_ms);
}

TEST(Ingest, AMemberJoiningWhileTheWindowClosesChangesNoByteOfTheFiles) {
  Scenario scenario;
  PrepareGroup(scenario);
  ThreeMembers group(scenario);
  ASSERT_NO_FATAL_FAILURE(group.Start(2));
  scenario.Generate(100'000, /*seed=*/5);
  ASSERT_TRUE(WaitFor([&] { return group.CaughtUp({"clearing-1", "clearing-2"}); }, std::chrono::minutes(3)));
  // The close goes out through the second member while the third joins: partitions move between
  // members that have closed the window and one that learns the close from the control topic or
  // from the changelogs it restores.
  group.StartOne("clearing-3");
  const std::map<std::string, std::string> merged = group.CloseThrough("clearing-2");
  ASSERT_TRUE(WaitFor([&] { return group.Owned("clearing-3") > 0; }, std::chrono::minutes(2)))
      << ReadFile(group.LogOf("clearing-3"));
  ASSERT_NO_FATAL_FAILURE(group.StopAll());
  ExpectTheFilesOfOneInstance(scenario, merged);
}

TEST(Ingest, AGroupMemberStoppedWhileItJoinsExitsCleanly) {
  // librdkafka 2.0.2 aborts when a cooperative-sticky member is closed before its first
  // assignment (its issue 4312); the source takes that assignment before it closes. Stopped
  // right after it started and after each of its first progress lines (one a second), the daemon
  // exits 0 every time.
  Scenario scenario;
  scenario.StartBroker(8);
  scenario.Prepare(/*merchants=*/200, /*seed=*/3, "", "",
                   std::string("assignment = \"group\"\ngroup_instance_id = \"clearing-1\"\n") + kShortSession);
  for (int progress_lines = 0; progress_lines <= 4; ++progress_lines) {
    const size_t life_start = ReadFile(scenario.daemon_log()).size();
    auto daemon = scenario.StartDaemon();
    auto lines_since = [&](const std::string& event) {
      const std::string log = ReadFile(scenario.daemon_log());
      int count = 0;
      for (size_t at = log.find(event, life_start); at != std::string::npos; at = log.find(event, at + 1)) ++count;
      return count;
    };
    ASSERT_TRUE(WaitFor([&] { return lines_since("\"event\":\"started\"") > 0 &&
                                     lines_since("\"event\":\"progress\"") >= progress_lines; },
                        std::chrono::minutes(1)))
        << ReadFile(scenario.daemon_log());
    ASSERT_NO_FATAL_FAILURE(StopWithSigterm(scenario, *daemon)) << "stopped after " << progress_lines << " progress lines";
  }
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
    ASSERT_NO_FATAL_FAILURE(StopWithSigterm(scenario, *daemon));
  }
  auto daemon = scenario.StartDaemon();
  ExpectOracleAfterCatchUp(scenario, *daemon);
}

}  // namespace
}  // namespace yrd::testing
