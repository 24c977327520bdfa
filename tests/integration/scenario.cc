#include "tests/integration/scenario.h"

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "engine/clearing/outcome.h"
#include "gtest/gtest.h"

namespace yrd::testing {

int64_t OracleExceptionTotal(const nlohmann::json& oracle) {
  int64_t total = 0;
  for (const auto& [date, window] : oracle.at("windows").items()) {
    for (const auto& [reason, count] : window.at("counts").at("exceptions").items()) total += count.get<int64_t>();
  }
  return total;
}

double MetricSample(const std::string& metrics, const std::string& name) {
  std::istringstream lines(metrics);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

Scenario::Scenario() = default;

Scenario::~Scenario() {
  if (broker_) {
    broker_->Signal(SIGTERM);
    (void)broker_->Wait(std::chrono::seconds(20));
  }
}

void Scenario::StartBroker(int partitions) {
  const std::string address_file = dir_ / "broker.address";
  broker_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{YRD_BROKER_BINARY, "--port", "0", "--partitions", std::to_string(partitions),
                               "--address-file", address_file},
      dir_ / "broker.log");
  ASSERT_TRUE(WaitFor([&] { return !ReadFile(address_file).empty(); }, std::chrono::seconds(30)))
      << ReadFile(dir_ / "broker.log");
  bootstrap_servers_ = ReadFile(address_file);
  while (!bootstrap_servers_.empty() && std::isspace(static_cast<unsigned char>(bootstrap_servers_.back()))) {
    bootstrap_servers_.pop_back();
  }
}

void Scenario::Prepare(int merchants, int seed, const std::string& extra_config, const std::string& store_config,
                       const std::string& kafka_config) {
  ASSERT_EQ(RunProgram({YRD_GEN_BINARY, "registry", "--out", dir_ / "registry.toml", "--merchants",
                        std::to_string(merchants), "--seed", std::to_string(seed)},
                       std::chrono::seconds(60), nullptr, dir_ / "gen.log"),
            0)
      << ReadFile(dir_ / "gen.log");
  WriteFile(dir_ / "card.key", "00112233445566778899aabbccddeeff0123456789abcdef0123456789abcdef\n", 0600);
  WriteFile(dir_ / "admin.token", std::string(kAdminToken) + "\n", 0600);
  WriteFile(dir_ / "manifest.key", "ffeeddccbbaa99887766554433221100fedcba9876543210fedcba9876543210\n", 0600);
  WriteFile(dir_ / "clearingd.toml",
            "[kafka]\nbootstrap_servers = \"" + bootstrap_servers_ + "\"\n" + kafka_config +
                "[store]\npath = \"state\"\n" + store_config + "[registry]\npath = \"registry.toml\"\n"
                "[privacy]\ncard_token_key_file = \"card.key\"\nmanifest_key_file = \"manifest.key\"\n"
                "[output]\ndir = \"files\"\n[admin]\nport = 0\nclose_token_file = \"admin.token\"\n[log]\nprogress_interval_ms = 1000\n" + extra_config);
}

void Scenario::Generate(int64_t events, int seed, const std::vector<std::string>& extra_flags) {
  std::vector<std::string> argv = {YRD_GEN_BINARY, "day", "--registry", dir_ / "registry.toml", "--date", "20261127",
                                   "--events", std::to_string(events), "--seed", std::to_string(seed), "--brokers",
                                   bootstrap_servers_, "--oracle", dir_ / "oracle.json"};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  ASSERT_EQ(RunProgram(argv, std::chrono::minutes(5), nullptr, dir_ / "gen.log"), 0) << ReadFile(dir_ / "gen.log");
  oracle_ = nlohmann::json::parse(ReadFile(dir_ / "oracle.json"));
  messages_ = oracle_.at("messages").get<int64_t>();
  ASSERT_GT(messages_, 0);
}

int64_t Scenario::clock_ms() const {
  return oracle_.is_null() ? kDayClockMs : oracle_.at("clock_fixed_ms").get<int64_t>();
}

std::unique_ptr<ChildProcess> Scenario::StartDaemon() {
  return std::make_unique<ChildProcess>(
      std::vector<std::string>{YRD_CLEARINGD_BINARY, "--config", dir_ / "clearingd.toml", "--clock-fixed-ms",
                               std::to_string(clock_ms())},
      daemon_log());
}

void Scenario::ProduceTo(const std::string& topic, int32_t partition, const std::string& key,
                         const std::string& payload) {
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap_servers_.c_str(), error, sizeof error),
            RD_KAFKA_CONF_OK);
  rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
  ASSERT_NE(producer, nullptr) << error;
  const rd_kafka_resp_err_t produced = rd_kafka_producev(
      producer, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
      RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(const_cast<char*>(payload.data()), payload.size()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  EXPECT_EQ(produced, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(produced);
  EXPECT_EQ(rd_kafka_flush(producer, 30'000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(producer);
  ++messages_;
}

int64_t Scenario::CommittedMessages() { return CommittedMessages(dir_ / "state"); }

int64_t Scenario::CommittedMessages(const std::string& store_dir) {
  std::string output;
  if (RunProgram({YRD_REPORT_BINARY, "--store", store_dir, "--format", "json", "progress"},
                 std::chrono::seconds(60), &output) != 0) {
    return -1;
  }
  try {
    return nlohmann::json::parse(output).at("messages").get<int64_t>();
  } catch (const nlohmann::json::exception&) {
    return -1;
  }
}

nlohmann::json Scenario::Report(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {YRD_REPORT_BINARY, "--store", dir_ / "state", "--format", "json"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string output;
  if (RunProgram(argv, std::chrono::seconds(60), &output) != 0) return nullptr;
  try {
    return nlohmann::json::parse(output);
  } catch (const nlohmann::json::exception&) {
    return nullptr;
  }
}

bool Scenario::WaitCaughtUp(std::chrono::milliseconds timeout) {
  return WaitFor([&] { return CommittedMessages() == messages_; }, timeout);
}

void Scenario::CatchUpThenStop(ChildProcess& daemon) {
  ASSERT_TRUE(WaitCaughtUp(std::chrono::minutes(3))) << ReadFile(daemon_log());
  daemon.Signal(SIGTERM);
  const std::optional<int> status = daemon.Wait(std::chrono::seconds(60));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << ReadFile(daemon_log());
}

std::vector<std::string> Scenario::DiffWithOracle() {
  std::string output;
  const int code = RunProgram({YRD_REPORT_BINARY, "--store", dir_ / "state", "outcome", "--registry",
                               dir_ / "registry.toml"},
                              std::chrono::seconds(120), &output, dir_ / "report.log");
  if (code != 0) return {"clearing-report outcome failed: " + ReadFile(dir_ / "report.log")};
  auto actual = OutcomeFromJson(nlohmann::json::parse(output));
  auto expected = OutcomeFromJson(oracle_);
  if (!actual.ok()) return {"store outcome: " + actual.status().ToString()};
  if (!expected.ok()) return {"oracle: " + expected.status().ToString()};
  return DiffOutcomes(*expected, *actual);
}

bool Scenario::CloseDayAndWriteFiles(std::chrono::milliseconds timeout) {
  // 00:16 China time of the next day: past the 15-minute grace after the midnight cutoff.
  const int64_t next_day_ms = clock_ms() + 17 * 60'000;
  ChildProcess daemon({YRD_CLEARINGD_BINARY, "--config", dir_ / "clearingd.toml", "--clock-fixed-ms",
                       std::to_string(next_day_ms)},
                      daemon_log());
  const bool written = WaitFor(
      [&] { return ReadFile(daemon_log()).find("\"window_files_written\"") != std::string::npos || !daemon.running(); },
      timeout);
  daemon.Signal(SIGTERM);
  (void)daemon.Wait(std::chrono::seconds(60));
  return written && !ReadFile(files_dir() + "/MANIFEST").empty();
}

namespace {

// Splits a '|'-separated record.
std::vector<std::string> Fields(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  for (;;) {
    const size_t bar = line.find('|', start);
    fields.push_back(line.substr(start, bar == std::string::npos ? std::string::npos : bar - start));
    if (bar == std::string::npos) return fields;
    start = bar + 1;
  }
}

// The value of `name=` in a file's trailer, or nullopt.
std::optional<int64_t> TrailerValue(const std::string& text, const std::string& name) {
  const size_t trailer = text.rfind("\nT|");
  if (trailer == std::string::npos) return std::nullopt;
  const size_t at = text.find("|" + name + "=", trailer);
  if (at == std::string::npos) return std::nullopt;
  return std::stoll(text.substr(at + name.size() + 2));
}

}  // namespace

std::vector<std::string> Scenario::DiffFilesWithOracle() {
  std::vector<std::string> diff;
  const nlohmann::json& window = oracle_.at("windows").at("20261127");
  auto expected = [&](const char* scheme, const char* kind, const std::string& id) -> int64_t {
    const nlohmann::json& map = window.at(scheme).at(kind);
    return map.contains(id) ? map.at(id).get<int64_t>() : 0;
  };
  std::map<std::string, int64_t> merchant_net;
  std::vector<std::string> banks, funds;
  for (const auto& entry : std::filesystem::directory_iterator(files_dir() + "/banks")) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".txt") && !name.ends_with(".detail.txt")) banks.push_back(name.substr(0, name.size() - 4));
  }
  for (const auto& entry : std::filesystem::directory_iterator(files_dir() + "/funds")) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".txt") && !name.ends_with(".detail.txt")) funds.push_back(name.substr(0, name.size() - 4));
  }
  if (banks.empty() || funds.empty()) diff.push_back("no bank or fund files in " + files_dir());
  for (const std::string& bank : banks) {
    const std::string text = ReadFile(files_dir() + "/banks/" + bank + ".txt");
    const std::optional<int64_t> net = TrailerValue(text, "net_position_fen");
    if (!net || *net != expected("bank_scheme", "bank", bank)) {
      diff.push_back("bank " + bank + ": file net " + (net ? std::to_string(*net) : "missing") + ", oracle " +
                     std::to_string(expected("bank_scheme", "bank", bank)));
    }
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (!line.starts_with("D|MERCHANT_CREDIT|")) continue;
      const std::vector<std::string> f = Fields(line);
      merchant_net[f[2]] += std::stoll(f.back());
    }
  }
  for (const auto& [id, fen] : window.at("bank_scheme").at("merchant").items()) merchant_net.try_emplace(id, 0);
  for (const auto& [merchant, net] : merchant_net) {
    if (net != expected("bank_scheme", "merchant", merchant)) {
      diff.push_back("merchant " + merchant + ": files net " + std::to_string(net) + ", oracle " +
                     std::to_string(expected("bank_scheme", "merchant", merchant)));
    }
  }
  for (const std::string& fund : funds) {
    const std::optional<int64_t> net = TrailerValue(ReadFile(files_dir() + "/funds/" + fund + ".txt"), "net_position_fen");
    if (!net || *net != expected("fund_scheme", "fund", fund)) {
      diff.push_back("fund " + fund + ": file net " + (net ? std::to_string(*net) : "missing") + ", oracle " +
                     std::to_string(expected("fund_scheme", "fund", fund)));
    }
  }
  if (const std::string verdict = VerifyFiles(); !verdict.empty()) diff.push_back(verdict);
  return diff;
}

std::string Scenario::VerifyFiles() {
  std::string output;
  if (RunProgram({YRD_REPORT_BINARY, "--store", dir_ / "state", "verify", files_dir(), "--registry",
                  dir_ / "registry.toml", "--key-file", dir_ / "manifest.key"},
                 std::chrono::minutes(2), &output, dir_ / "report.log") != 0) {
    return "clearing-report verify failed: " + output + ReadFile(dir_ / "report.log");
  }
  return {};
}

int Scenario::AdminPort(const std::string& log_path) const {
  // The last "admin_endpoint" line of the log names the port of the latest daemon.
  const std::string log = ReadFile(log_path.empty() ? daemon_log() : log_path);
  const size_t line = log.rfind("\"event\":\"admin_endpoint\"");
  if (line == std::string::npos) return 0;
  const size_t start = log.rfind('\n', line);
  const size_t port = log.find("\"port\":", start == std::string::npos ? 0 : start);
  if (port == std::string::npos) return 0;
  return std::stoi(log.substr(port + 7));
}

std::pair<int, std::string> Scenario::Http(const std::string& method, const std::string& target,
                                           const std::string& bearer_token, const std::string& log) const {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(AdminPort(log)));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return {0, "connect failed"};
  }
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!bearer_token.empty()) request += "Authorization: Bearer " + bearer_token + "\r\n";
  request += "Content-Length: 0\r\n\r\n";
  (void)::write(fd, request.data(), request.size());
  std::string response;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  if (response.size() < 12) return {0, response};
  const size_t body = response.find("\r\n\r\n");
  return {std::stoi(response.substr(9, 3)), body == std::string::npos ? "" : response.substr(body + 4)};
}

std::optional<std::vector<Scenario::DeadLetter>> Scenario::DeadLetters(std::chrono::milliseconds timeout) {
  std::vector<DeadLetter> copies;
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap_servers_.c_str(), error, sizeof error);
  rd_kafka_conf_set(conf, "group.id", "dlq-count", error, sizeof error);
  rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", error, sizeof error);
  rd_kafka_conf_set(conf, "enable.partition.eof", "true", error, sizeof error);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", error, sizeof error);
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
  if (consumer == nullptr) return std::nullopt;
  rd_kafka_poll_set_consumer(consumer);
  const rd_kafka_metadata_t* metadata = nullptr;
  int partitions = 0;
  if (rd_kafka_metadata(consumer, 1, nullptr, &metadata, 10'000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int t = 0; t < metadata->topic_cnt; ++t) {
      if (std::string_view(metadata->topics[t].topic) == "yrd.dlq") partitions = metadata->topics[t].partition_cnt;
    }
    rd_kafka_metadata_destroy(metadata);
  }
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list, "yrd.dlq", p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(consumer, list);
  rd_kafka_topic_partition_list_destroy(list);
  int at_end = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (at_end < partitions && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer, 100);
    if (message == nullptr) continue;
    if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      ++at_end;
    } else if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      DeadLetter& copy = copies.emplace_back();
      copy.payload.assign(static_cast<const char*>(message->payload), message->len);
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name = nullptr;
        const void* value = nullptr;
        size_t size = 0;
        for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             ++i) {
          copy.headers[name].assign(static_cast<const char*>(value), size);
        }
      }
    }
    rd_kafka_message_destroy(message);
  }
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  if (at_end != partitions) return std::nullopt;
  return copies;
}

int64_t Scenario::DeadLetterCount(std::chrono::milliseconds timeout, int64_t* distinct_origins) {
  const std::optional<std::vector<DeadLetter>> copies = DeadLetters(timeout);
  if (!copies) return -1;
  std::set<std::string> origins;
  for (const DeadLetter& copy : *copies) {
    std::string origin;
    for (const char* name : {"source_topic", "source_partition", "source_offset"}) {
      const auto it = copy.headers.find(name);
      if (it != copy.headers.end()) origin += it->second;
      origin.push_back('/');
    }
    origins.insert(origin);
  }
  if (distinct_origins != nullptr) *distinct_origins = static_cast<int64_t>(origins.size());
  return static_cast<int64_t>(copies->size());
}

}  // namespace yrd::testing
