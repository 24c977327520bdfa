// Scenario: the real programs on loopback for integration and crash tests: clearing-broker in
// its own process, a generated registry and day (clearing-gen, with its oracle), clearingd
// started and stopped as a process, and clearing-report to read what it committed.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/support/process.h"

namespace yrd::testing {

// 2026-11-27 23:59 China time: the generator's default clock for the day the scenarios use.
inline constexpr int64_t kDayClockMs = 1'795'795'140'000;
// The admin close token the scenario's daemon is configured with.
inline constexpr const char* kAdminToken = "scenario-admin-token-0123456789";

// Rejected messages of every window of an oracle.
int64_t OracleExceptionTotal(const nlohmann::json& oracle);

// The value of an unlabelled sample in a Prometheus text page, or -1 when it is missing.
double MetricSample(const std::string& metrics, const std::string& name);

class Scenario {
 public:
  Scenario();
  ~Scenario();

  // Starts clearing-broker and waits (bounded) for its address.
  void StartBroker(int partitions);
  // Generates a registry, a key and the daemon's configuration.
  // `extra_config` is appended to clearingd's TOML configuration; `store_config` goes into its
  // [store] section.
  // `kafka_config` goes into its [kafka] section.
  void Prepare(int merchants, int seed, const std::string& extra_config = "", const std::string& store_config = "",
               const std::string& kafka_config = "");
  // Produces a generated day to the broker; reads its oracle.
  void Generate(int64_t events, int seed, const std::vector<std::string>& extra_flags = {});
  // Produces one message to a chosen partition and waits for its delivery (fails the test if
  // it is not delivered); counts it in messages().
  void ProduceTo(const std::string& topic, int32_t partition, const std::string& key, const std::string& payload);
  [[nodiscard]] std::unique_ptr<ChildProcess> StartDaemon();
  // Messages the store has committed an outcome for (applied, duplicates, exceptions); -1 when
  // the store cannot be read yet.
  [[nodiscard]] int64_t CommittedMessages();
  // The same for the store at `store_dir` (another member's).
  [[nodiscard]] int64_t CommittedMessages(const std::string& store_dir);
  // clearing-report's JSON output for `args` (a subcommand and its options); null on failure.
  [[nodiscard]] nlohmann::json Report(const std::vector<std::string>& args);
  // Waits until every generated message is committed.
  [[nodiscard]] bool WaitCaughtUp(std::chrono::milliseconds timeout);
  // Waits (bounded) until `daemon` has committed every generated message, stops it with SIGTERM
  // and checks that it exits 0. Fails the test otherwise (wrap in ASSERT_NO_FATAL_FAILURE).
  void CatchUpThenStop(ChildProcess& daemon);
  // The differences between the store's outcome and the oracle; empty when equal.
  [[nodiscard]] std::vector<std::string> DiffWithOracle();
  // Restarts the daemon with its clock past the generated day's close, waits until the day's
  // clearing files are written and stops it; false if they did not appear in time.
  [[nodiscard]] bool CloseDayAndWriteFiles(std::chrono::milliseconds timeout);
  // `clearing-report verify` of the day's files against the store: empty when they verify, else
  // what it said.
  [[nodiscard]] std::string VerifyFiles();
  // The daemon's fixed clock: the oracle's, or kDayClockMs for a scenario without a generated day.
  [[nodiscard]] int64_t clock_ms() const;
  // The differences between the day's clearing files (bank, merchant and fund net positions)
  // and the oracle, plus the verdict of `clearing-report verify`; empty when all agree.
  [[nodiscard]] std::vector<std::string> DiffFilesWithOracle();
  [[nodiscard]] std::string files_dir() const { return dir_ / "files/20261127"; }

  // The copies on yrd.dlq: payload and headers (by name, the last of each).
  struct DeadLetter {
    std::string payload;
    std::map<std::string, std::string> headers;
  };
  // nullopt when the topic could not be read to its end in time.
  [[nodiscard]] std::optional<std::vector<DeadLetter>> DeadLetters(std::chrono::milliseconds timeout);

  // How many messages the daemon copied to yrd.dlq.
  // With `distinct_origins`, also how many different source messages (topic, partition,
  // offset headers) the copies are of.
  [[nodiscard]] int64_t DeadLetterCount(std::chrono::milliseconds timeout, int64_t* distinct_origins = nullptr);

  // The admin endpoint's port of the daemon whose log is `log` (daemon_log() when empty); 0 until
  // it logged it.
  [[nodiscard]] int AdminPort(const std::string& log = "") const;
  // One HTTP/1.1 request to the admin endpoint on 127.0.0.1 of the daemon whose log is `log`
  // (daemon_log() when empty): the status code and body.
  [[nodiscard]] std::pair<int, std::string> Http(const std::string& method, const std::string& target,
                                                 const std::string& bearer_token = "",
                                                 const std::string& log = "") const;

  [[nodiscard]] const TempDir& dir() const { return dir_; }
  [[nodiscard]] int64_t messages() const { return messages_; }
  [[nodiscard]] const nlohmann::json& oracle() const { return oracle_; }
  [[nodiscard]] std::string daemon_log() const { return dir_ / "clearingd.log"; }
  [[nodiscard]] std::string state_dir() const { return dir_ / "state"; }
  [[nodiscard]] const std::string& bootstrap_servers() const { return bootstrap_servers_; }

 private:
  TempDir dir_;
  std::unique_ptr<ChildProcess> broker_;
  std::string bootstrap_servers_;
  nlohmann::json oracle_;
  int64_t messages_ = 0;
};

}  // namespace yrd::testing
