// Producer and EmbeddedBroker against each other: what is produced comes back exactly once, with
// its key and headers, on the partition Kafka's Java client would choose for its key.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "adapters/kafka/embedded_broker.h"
#include "adapters/kafka/producer.h"
#include "fmt/format.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace yrd::kafka {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Bounds, not waits: each loop below ends as soon as its condition holds.
constexpr milliseconds kFlushTimeout{30'000};
constexpr milliseconds kConsumeDeadline{30'000};
constexpr milliseconds kConsumerPollMax{100};
constexpr int kPartitionCount = 16;
constexpr char kTopic[] = "yrd.taps";

std::string ToString(const absl::Status& status) { return status.ToString(); }

// Kafka's murmur2 (the Java client's Utils.murmur2), to check that librdkafka's murmur2_random
// partitioner places keys exactly where every other Kafka client would.
int32_t Murmur2(std::string_view key) {
  constexpr uint32_t kSeed = 0x9747b28c;
  constexpr uint32_t kMultiplier = 0x5bd1e995;
  constexpr int kShift = 24;
  const auto* data = reinterpret_cast<const uint8_t*>(key.data());
  const size_t length = key.size();
  uint32_t hash = kSeed ^ static_cast<uint32_t>(length);
  for (size_t offset = 0; offset + 4 <= length; offset += 4) {
    uint32_t word = uint32_t{data[offset]} | uint32_t{data[offset + 1]} << 8 |
                    uint32_t{data[offset + 2]} << 16 | uint32_t{data[offset + 3]} << 24;
    word *= kMultiplier;
    word ^= word >> kShift;
    word *= kMultiplier;
    hash *= kMultiplier;
    hash ^= word;
  }
  const size_t tail = length & ~size_t{3};
  switch (length % 4) {
    case 3:
      hash ^= uint32_t{data[tail + 2]} << 16;
      [[fallthrough]];
    case 2:
      hash ^= uint32_t{data[tail + 1]} << 8;
      [[fallthrough]];
    case 1:
      hash ^= uint32_t{data[tail]};
      hash *= kMultiplier;
  }
  hash ^= hash >> 13;
  hash *= kMultiplier;
  hash ^= hash >> 15;
  return static_cast<int32_t>(hash);
}

int32_t JavaPartition(std::string_view key, int partition_count) {
  return (Murmur2(key) & 0x7fffffff) % partition_count;
}

struct Received {
  int32_t partition = -1;
  std::string key;
  std::string payload;
  std::map<std::string, std::string> headers;
};

// Reads every message of `topic` from the beginning of each partition until every partition
// has reported its end, or the deadline passes. A plain librdkafka consumer with explicitly
// assigned partitions: no group membership, no commits.
std::vector<Received> ConsumeAll(const std::string& bootstrap_servers, const std::string& topic,
                                 int partition_count) {
  char error_text[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  const std::pair<const char*, const char*> settings[] = {
      {"bootstrap.servers", bootstrap_servers.c_str()},
      {"group.id", "kafka-test"},
      {"enable.auto.commit", "false"},
      {"enable.partition.eof", "true"},
      {"fetch.wait.max.ms", "10"},
      {"auto.offset.reset", "earliest"},
  };
  for (const auto& [name, value] : settings) {
    EXPECT_EQ(rd_kafka_conf_set(conf, name, value, error_text, sizeof(error_text)), RD_KAFKA_CONF_OK)
        << name << ": " << error_text;
  }
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error_text, sizeof(error_text));
  if (consumer == nullptr) {
    rd_kafka_conf_destroy(conf);
    ADD_FAILURE() << "consumer: " << error_text;
    return {};
  }
  rd_kafka_poll_set_consumer(consumer);
  // Learning the partition leaders before assigning lets the consumer fetch at once instead of
  // retrying its offset lookup on a timer.
  rd_kafka_topic_t* topic_handle = rd_kafka_topic_new(consumer, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* metadata = nullptr;
  EXPECT_EQ(rd_kafka_metadata(consumer, 0, topic_handle, &metadata, static_cast<int>(kConsumeDeadline.count())),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  if (metadata != nullptr) rd_kafka_metadata_destroy(metadata);
  rd_kafka_topic_destroy(topic_handle);
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(partition_count);
  for (int partition = 0; partition < partition_count; ++partition) {
    rd_kafka_topic_partition_list_add(assignment, topic.c_str(), partition)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  EXPECT_EQ(rd_kafka_assign(consumer, assignment), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(assignment);

  std::vector<Received> received;
  std::set<int32_t> finished_partitions;
  const auto deadline = steady_clock::now() + kConsumeDeadline;
  while (finished_partitions.size() < static_cast<size_t>(partition_count) &&
         steady_clock::now() < deadline) {
    rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer, static_cast<int>(kConsumerPollMax.count()));
    if (message == nullptr) continue;
    if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      finished_partitions.insert(message->partition);
    } else if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      ADD_FAILURE() << "consume error: " << rd_kafka_message_errstr(message);
    } else {
      Received& entry = received.emplace_back();
      entry.partition = message->partition;
      entry.key.assign(static_cast<const char*>(message->key), message->key_len);
      entry.payload.assign(static_cast<const char*>(message->payload), message->len);
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name;
        const void* value;
        size_t value_bytes;
        for (size_t index = 0;
             rd_kafka_header_get_all(headers, index, &name, &value, &value_bytes) == RD_KAFKA_RESP_ERR_NO_ERROR;
             ++index) {
          entry.headers[name].assign(static_cast<const char*>(value), value_bytes);
        }
      }
    }
    rd_kafka_message_destroy(message);
  }
  EXPECT_EQ(finished_partitions.size(), static_cast<size_t>(partition_count))
      << "not every partition reached its end within " << kConsumeDeadline.count() << " ms";
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  return received;
}

std::unique_ptr<EmbeddedBroker> StartBroker(const EmbeddedBrokerOptions& options = {}) {
  auto broker = EmbeddedBroker::Start(options);
  EXPECT_TRUE(broker.ok()) << ToString(broker.status());
  return broker.ok() ? *std::move(broker) : nullptr;
}

std::unique_ptr<Producer> CreateProducer(const std::string& bootstrap_servers, const Settings& settings = {}) {
  auto producer = Producer::Create(bootstrap_servers, settings);
  EXPECT_TRUE(producer.ok()) << ToString(producer.status());
  return producer.ok() ? *std::move(producer) : nullptr;
}

// Produces `message_count` messages whose keys repeat (every kKeyCount-th message shares a key),
// then checks each arrived once with its key, payload and headers, and that every key stayed on
// the one partition the Java client would pick.
void ExpectRoundTrip(int broker_count) {
  constexpr int kMessageCount = 5000;
  constexpr int kKeyCount = 101;
  EmbeddedBrokerOptions options;
  options.broker_count = broker_count;
  options.partition_count = kPartitionCount;
  std::unique_ptr<EmbeddedBroker> broker = StartBroker(options);
  ASSERT_NE(broker, nullptr);
  std::unique_ptr<Producer> producer = CreateProducer(broker->bootstrap_servers());
  ASSERT_NE(producer, nullptr);

  for (int sequence = 0; sequence < kMessageCount; ++sequence) {
    const std::string key = fmt::format("card-{}", sequence % kKeyCount);
    const std::string payload = fmt::format("payload-{}", sequence);
    const std::string sequence_text = std::to_string(sequence);
    const Header headers[] = {{"seq", sequence_text}, {"kind", sequence % 2 == 0 ? "tap" : "medical"}};
    ASSERT_TRUE(producer->Produce(kTopic, key, payload, headers).ok());
  }
  const absl::Status flushed = producer->Flush(kFlushTimeout);
  ASSERT_TRUE(flushed.ok()) << ToString(flushed);
  EXPECT_EQ(producer->delivered_count(), uint64_t{kMessageCount});
  EXPECT_EQ(producer->failed_count(), 0u);

  const std::vector<Received> received = ConsumeAll(broker->bootstrap_servers(), kTopic, kPartitionCount);
  ASSERT_EQ(received.size(), size_t{kMessageCount});
  std::vector<int> seen_count(kMessageCount, 0);
  std::map<std::string, std::set<int32_t>> partitions_by_key;
  for (const Received& message : received) {
    ASSERT_EQ(message.headers.count("seq"), 1u);
    const int sequence = std::stoi(message.headers.at("seq"));
    ASSERT_GE(sequence, 0);
    ASSERT_LT(sequence, kMessageCount);
    ++seen_count[sequence];
    EXPECT_EQ(message.key, fmt::format("card-{}", sequence % kKeyCount));
    EXPECT_EQ(message.payload, fmt::format("payload-{}", sequence));
    EXPECT_EQ(message.headers.at("kind"), sequence % 2 == 0 ? "tap" : "medical");
    EXPECT_EQ(message.headers.size(), 2u);
    partitions_by_key[message.key].insert(message.partition);
  }
  for (int sequence = 0; sequence < kMessageCount; ++sequence) {
    EXPECT_EQ(seen_count[sequence], 1) << "message " << sequence;
  }
  ASSERT_EQ(partitions_by_key.size(), size_t{kKeyCount});
  std::set<int32_t> used_partitions;
  for (const auto& [key, partitions] : partitions_by_key) {
    ASSERT_EQ(partitions.size(), 1u) << key << " was spread over partitions";
    EXPECT_EQ(*partitions.begin(), JavaPartition(key, kPartitionCount)) << key;
    used_partitions.insert(*partitions.begin());
  }
  // 101 keys over 16 partitions: a partitioner that sent everything to one partition fails here.
  EXPECT_GT(used_partitions.size(), 1u);
}

TEST(KafkaRoundTrip, EveryMessageArrivesOnceWithKeyAndHeadersOnOneBroker) { ExpectRoundTrip(1); }

TEST(KafkaRoundTrip, EveryMessageArrivesOnceWithKeyAndHeadersOnThreeBrokers) { ExpectRoundTrip(3); }

TEST(KafkaRoundTrip, MessageWithoutHeadersArrivesWithoutHeaders) {
  std::unique_ptr<EmbeddedBroker> broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  std::unique_ptr<Producer> producer = CreateProducer(broker->bootstrap_servers());
  ASSERT_NE(producer, nullptr);
  ASSERT_TRUE(producer->Produce(kTopic, "key", "value").ok());
  ASSERT_TRUE(producer->Flush(kFlushTimeout).ok());
  const std::vector<Received> received = ConsumeAll(broker->bootstrap_servers(), kTopic, kPartitionCount);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].key, "key");
  EXPECT_EQ(received[0].payload, "value");
  EXPECT_TRUE(received[0].headers.empty());
}

TEST(KafkaRoundTrip, MessageNearTheTwoMebibyteLimitArrivesWhole) {
  // Below message.max.bytes (2 MiB) once record and batch overhead are added.
  constexpr size_t kPayloadBytes = 2 * 1024 * 1024 - 4096;
  std::unique_ptr<EmbeddedBroker> broker = StartBroker();
  ASSERT_NE(broker, nullptr);
  std::unique_ptr<Producer> producer = CreateProducer(broker->bootstrap_servers());
  ASSERT_NE(producer, nullptr);
  const std::string payload(kPayloadBytes, 'x');
  ASSERT_TRUE(producer->Produce(kTopic, "big", payload).ok());
  const absl::Status flushed = producer->Flush(kFlushTimeout);
  ASSERT_TRUE(flushed.ok()) << ToString(flushed);
  const std::vector<Received> received = ConsumeAll(broker->bootstrap_servers(), kTopic, kPartitionCount);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].payload.size(), kPayloadBytes);
  EXPECT_EQ(received[0].payload, payload);
}

TEST(KafkaProducer, MessageAboveTheTwoMebibyteLimitIsRefusedAsInvalid) {
  std::unique_ptr<Producer> producer = CreateProducer("127.0.0.1:1");
  ASSERT_NE(producer, nullptr);
  const std::string payload(2 * 1024 * 1024 + 1, 'x');
  const absl::Status status = producer->Produce(kTopic, "big", payload);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << ToString(status);
}

TEST(KafkaProducer, FlushReportsFailedDeliveryWhenTheBrokerIsGone) {
  std::string bootstrap_servers;
  {
    std::unique_ptr<EmbeddedBroker> broker = StartBroker();
    ASSERT_NE(broker, nullptr);
    bootstrap_servers = broker->bootstrap_servers();
  }
  // A short message timeout makes librdkafka give up on each message well inside the flush bound.
  std::unique_ptr<Producer> producer = CreateProducer(bootstrap_servers, {{"message.timeout.ms", "300"}});
  ASSERT_NE(producer, nullptr);
  for (int index = 0; index < 3; ++index) {
    ASSERT_TRUE(producer->Produce(kTopic, "key", "value").ok());
  }
  const absl::Status flushed = producer->Flush(kFlushTimeout);
  // Never sent, so never stored: safe to produce again.
  EXPECT_EQ(flushed.code(), absl::StatusCode::kUnavailable) << ToString(flushed);
  EXPECT_EQ(producer->failed_count(), 3u);
  EXPECT_EQ(producer->delivered_count(), 0u);
  // The error was reported once; the next Flush starts clean.
  EXPECT_TRUE(producer->Flush(milliseconds{0}).ok());
}

// librdkafka's own lines ("%3|...|FAIL|...") come out as JSON log lines, never raw.
TEST(KafkaProducer, LibrdkafkaLogLinesAreWrittenAsJson) {
  char path[] = "/tmp/yrd_kafka_log_XXXXXX";
  const int capture = ::mkstemp(path);
  ASSERT_GE(capture, 0);
  const int saved_stderr = ::dup(STDERR_FILENO);
  ASSERT_GE(::dup2(capture, STDERR_FILENO), 0);
  auto read_capture = [&] {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  {
    // Nothing listens on port 1: librdkafka logs the refused connection.
    std::unique_ptr<Producer> producer = CreateProducer("127.0.0.1:1");
    ASSERT_NE(producer, nullptr);
    ASSERT_TRUE(producer->Produce(kTopic, "key", "value").ok());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (read_capture().find("\"kafka_log\"") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      (void)producer->Flush(milliseconds{100});
    }
  }
  ::dup2(saved_stderr, STDERR_FILENO);
  ::close(saved_stderr);
  ::close(capture);
  const std::string captured = read_capture();
  ::unlink(path);
  ASSERT_NE(captured.find("\"kafka_log\""), std::string::npos) << captured;
  std::istringstream lines(captured);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_FALSE(line.starts_with("%")) << line;
    const nlohmann::json parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(parsed.is_discarded()) << line;
    if (parsed.value("event", "") == "kafka_log") {
      EXPECT_TRUE(parsed.contains("facility")) << line;
      EXPECT_TRUE(parsed.contains("level")) << line;
    }
  }
}

TEST(KafkaProducer, FlushReturnsDeadlineExceededWhileMessagesAreStillQueued) {
  std::unique_ptr<Producer> producer = CreateProducer("127.0.0.1:1");
  ASSERT_NE(producer, nullptr);
  ASSERT_TRUE(producer->Produce(kTopic, "key", "value").ok());
  const absl::Status flushed = producer->Flush(milliseconds{200});
  EXPECT_EQ(flushed.code(), absl::StatusCode::kDeadlineExceeded) << ToString(flushed);
  EXPECT_EQ(producer->failed_count(), 0u);
}

TEST(KafkaProducer, CreateNamesTheRefusedProperty) {
  auto producer = Producer::Create("127.0.0.1:1", {{"no.such.property", "1"}});
  ASSERT_FALSE(producer.ok());
  EXPECT_EQ(producer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ToString(producer.status()).find("no.such.property"), std::string::npos);
}

// A loopback socket bound to a kernel-chosen port; optionally listening.
class LoopbackSocket {
 public:
  explicit LoopbackSocket(bool listening) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
    socklen_t address_bytes = sizeof(address);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &address_bytes), 0);
    port_ = ntohs(address.sin_port);
    if (listening) {
      EXPECT_EQ(listen(fd_, 1), 0);
    }
  }
  ~LoopbackSocket() { close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_;
  uint16_t port_ = 0;
};

// The local address of the socket listening on `port`, from /proc/net/tcp ("0100007F" is
// 127.0.0.1, "00000000" any address), or nullopt when nothing listens there.
std::optional<std::string> ListeningAddress(uint16_t port) {
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // column titles
  const std::string wanted_port = fmt::format("{:04X}", port);
  while (std::getline(table, line)) {
    char local[64];
    char remote[64];
    char state[8];
    if (std::sscanf(line.c_str(), " %*d: %63s %63s %7s", local, remote, state) != 3) continue;
    const std::string local_text = local;
    const size_t colon = local_text.find(':');
    if (colon == std::string::npos || local_text.substr(colon + 1) != wanted_port) continue;
    if (std::string(state) != "0A") continue;  // LISTEN
    return local_text.substr(0, colon);
  }
  return std::nullopt;
}

TEST(EmbeddedBroker, EphemeralBrokersListenOnLoopbackOnly) {
  EmbeddedBrokerOptions options;
  options.broker_count = 3;
  std::unique_ptr<EmbeddedBroker> broker = StartBroker(options);
  ASSERT_NE(broker, nullptr);
  ASSERT_EQ(broker->ports().size(), 3u);
  std::string expected_bootstrap;
  for (uint16_t port : broker->ports()) {
    EXPECT_NE(port, 0);
    EXPECT_EQ(ListeningAddress(port), std::optional<std::string>("0100007F")) << "port " << port;
    expected_bootstrap += fmt::format("{}127.0.0.1:{}", expected_bootstrap.empty() ? "" : ",", port);
  }
  EXPECT_EQ(broker->bootstrap_servers(), expected_bootstrap);
}

TEST(EmbeddedBroker, FixedPortIsListenedOnAndAdvertised) {
  uint16_t port = 0;
  {
    // A port the kernel just handed out and took back: free unless another process grabs it in
    // the next instant.
    LoopbackSocket probe(/*listening=*/false);
    port = probe.port();
  }
  EmbeddedBrokerOptions options;
  options.port = port;
  std::unique_ptr<EmbeddedBroker> broker = StartBroker(options);
  ASSERT_NE(broker, nullptr);
  EXPECT_EQ(broker->bootstrap_servers(), fmt::format("127.0.0.1:{}", port));
  EXPECT_EQ(ListeningAddress(port), std::optional<std::string>("0100007F"));
  // A client only works if the metadata also advertises the fixed port.
  std::unique_ptr<Producer> producer = CreateProducer(broker->bootstrap_servers());
  ASSERT_NE(producer, nullptr);
  ASSERT_TRUE(producer->Produce(kTopic, "key", "value").ok());
  const absl::Status flushed = producer->Flush(kFlushTimeout);
  ASSERT_TRUE(flushed.ok()) << ToString(flushed);
  EXPECT_EQ(ConsumeAll(broker->bootstrap_servers(), kTopic, kPartitionCount).size(), 1u);
}

TEST(EmbeddedBroker, FixedPortInUseIsUnavailable) {
  LoopbackSocket occupant(/*listening=*/true);
  EmbeddedBrokerOptions options;
  options.port = occupant.port();
  auto broker = EmbeddedBroker::Start(options);
  ASSERT_FALSE(broker.ok());
  EXPECT_EQ(broker.status().code(), absl::StatusCode::kUnavailable) << ToString(broker.status());
  EXPECT_NE(ToString(broker.status()).find(std::to_string(occupant.port())), std::string::npos);
}

TEST(EmbeddedBroker, RejectsOptionsOutOfRange) {
  const auto expect_invalid = [](EmbeddedBrokerOptions options) {
    auto broker = EmbeddedBroker::Start(options);
    ASSERT_FALSE(broker.ok());
    EXPECT_EQ(broker.status().code(), absl::StatusCode::kInvalidArgument) << ToString(broker.status());
  };
  EmbeddedBrokerOptions options;
  options.broker_count = 0;
  expect_invalid(options);
  options = {};
  options.broker_count = EmbeddedBroker::kBrokerCountMax + 1;
  expect_invalid(options);
  options = {};
  options.partition_count = 0;
  expect_invalid(options);
  options = {};
  options.partition_count = EmbeddedBroker::kPartitionCountMax + 1;
  expect_invalid(options);
  options = {};
  options.port = 65535;
  options.broker_count = 2;
  expect_invalid(options);
  options = {};
  options.topics = {"yrd taps"};
  expect_invalid(options);
  options = {};
  options.topics = {std::string(EmbeddedBroker::kTopicNameBytesMax + 1, 'a')};
  expect_invalid(options);
  options = {};
  options.topics = {"yrd.taps", "yrd.taps"};
  expect_invalid(options);
}

TEST(EmbeddedBroker, AcceptsTheLargestOptions) {
  EmbeddedBrokerOptions options;
  options.topics = {std::string(EmbeddedBroker::kTopicNameBytesMax, 'a')};
  options.partition_count = EmbeddedBroker::kPartitionCountMax;
  options.broker_count = EmbeddedBroker::kBrokerCountMax;
  std::unique_ptr<EmbeddedBroker> broker = StartBroker(options);
  ASSERT_NE(broker, nullptr);
  EXPECT_EQ(broker->ports().size(), size_t{EmbeddedBroker::kBrokerCountMax});
}

}  // namespace
}  // namespace yrd::kafka
