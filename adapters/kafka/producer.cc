#include "adapters/kafka/producer.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <string>

#include "adapters/kafka/log_route.h"
#include "engine/base/strings.h"
#include "fmt/format.h"

namespace yrd::kafka {
namespace {

// Defaults applied before the caller's settings. Each is a librdkafka property; the caller may
// override any of them through `settings`.
//   enable.idempotence      true: retries never duplicate or reorder a message within a partition.
//   acks                    all: a message counts as delivered only once every in-sync replica has it.
//   linger.ms               5 ms: how long a batch may wait to fill before it is sent.
//   batch.num.messages      10000 messages per batch at most.
//   partitioner             murmur2_random: Kafka's Java default, so a key lands on the same
//                           partition whichever client produced it.
//   queue.buffering.max.messages
//                           1000000 messages queued locally at most, so a fast generator keeps
//                           batches full instead of meeting a full queue.
//   message.max.bytes       2 MiB, the largest request librdkafka builds.
constexpr std::pair<const char*, const char*> kDefaultSettings[] = {
    {"enable.idempotence", "true"},
    {"acks", "all"},
    {"linger.ms", "5"},
    {"batch.num.messages", "10000"},
    {"partitioner", "murmur2_random"},
    {"queue.buffering.max.messages", "1000000"},
    {"message.max.bytes", "2097152"},
    // A request waits for no more bytes: with Nagle's algorithm on, a small produce request behind
    // an unacknowledged one waits for the peer's delayed ACK (about 40 ms on Linux), and a commit
    // waits for its changelog records.
    {"socket.nagle.disable", "true"},
};

// While the local queue is full, Produce serves delivery reports for at most this long per wait
// before it checks its deadline again. rd_kafka_poll returns as soon as a report arrives, so this
// bounds the wait, it does not add to it.
constexpr std::chrono::milliseconds kQueueFullPollMax{100};

std::string ErrorText(rd_kafka_resp_err_t error) {
  return fmt::format("{} ({})", rd_kafka_err2name(error), rd_kafka_err2str(error));
}

// Maps a failed delivery to a status whose code tells the caller whether producing the message
// again is safe: Unavailable when the broker certainly did not store it, Unknown when it may have
// (a retry may then duplicate it, which downstream deduplication absorbs), and a non-retryable
// code when sending it again cannot help.
absl::Status DeliveryStatus(rd_kafka_t* handle, rd_kafka_resp_err_t error,
                            rd_kafka_msg_status_t persisted) {
  if (error == RD_KAFKA_RESP_ERR__FATAL) {
    char reason[512];
    const rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(handle, reason, sizeof(reason));
    return absl::InternalError(fmt::format(
        "kafka producer hit a fatal error and can send nothing more: {}: {}; recreate the producer",
        rd_kafka_err2name(fatal), reason));
  }
  const std::string text = ErrorText(error);
  switch (error) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return absl::InvalidArgumentError(fmt::format("kafka refused the message: {}", text));
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
      return absl::NotFoundError(fmt::format("kafka topic or partition does not exist: {}", text));
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
      return absl::PermissionDeniedError(fmt::format("kafka denied the write: {}", text));
    default:
      break;
  }
  if (persisted == RD_KAFKA_MSG_STATUS_NOT_PERSISTED) {
    return absl::UnavailableError(
        fmt::format("kafka did not store the message (safe to produce again): {}", text));
  }
  return absl::UnknownError(fmt::format(
      "kafka may or may not have stored the message (producing again may duplicate it): {}", text));
}

}  // namespace

struct Producer::Impl {
  rd_kafka_t* handle = nullptr;
  // Topic handles by name, so Produce neither copies the topic name nor looks it up in
  // librdkafka per message.
  StringMap<rd_kafka_topic_t*> topics;

  // Written only by the thread that calls Produce/Flush (delivery reports are served from those
  // calls); atomic so that a metrics thread may read them.
  std::atomic<uint64_t> delivered_count{0};
  std::atomic<uint64_t> failed_count{0};
  // The first delivery error since the last Flush; OK when there was none.
  absl::Status first_error;

  ~Impl() {
    for (auto& [name, topic] : topics) rd_kafka_topic_destroy(topic);
    if (handle != nullptr) {
      // Messages not confirmed by Flush are abandoned; the owner was told so by the header.
      rd_kafka_purge(handle, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                                 RD_KAFKA_PURGE_F_NON_BLOCKING);
      rd_kafka_destroy(handle);
    }
  }

  static void OnDelivery(rd_kafka_t* handle, const rd_kafka_message_t* message, void* opaque) {
    auto* impl = static_cast<Impl*>(opaque);
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      impl->delivered_count.store(impl->delivered_count.load(std::memory_order_relaxed) + 1,
                                  std::memory_order_relaxed);
      return;
    }
    impl->failed_count.store(impl->failed_count.load(std::memory_order_relaxed) + 1,
                             std::memory_order_relaxed);
    if (impl->first_error.ok()) {
      impl->first_error =
          DeliveryStatus(handle, message->err, rd_kafka_message_status(message));
    }
  }

  // Returns the topic handle for `name`, creating it on first use.
  absl::StatusOr<rd_kafka_topic_t*> Topic(std::string_view name) {
    if (auto it = topics.find(name); it != topics.end()) return it->second;
    std::string owned(name);
    rd_kafka_topic_t* topic = rd_kafka_topic_new(handle, owned.c_str(), nullptr);
    if (topic == nullptr) {
      return absl::InvalidArgumentError(fmt::format("kafka refused topic \"{}\": {}", owned,
                                                    ErrorText(rd_kafka_last_error())));
    }
    topics.emplace(std::move(owned), topic);
    return topic;
  }
};

Producer::Producer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Producer::~Producer() = default;

absl::StatusOr<std::unique_ptr<Producer>> Producer::Create(const std::string& bootstrap_servers,
                                                           const Settings& settings) {
  auto impl = std::make_unique<Impl>();
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  RouteKafkaLogs(conf);
  char error_text[512];
  auto set = [&](const std::string& name, const std::string& value) -> absl::Status {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error_text, sizeof(error_text)) !=
        RD_KAFKA_CONF_OK) {
      return absl::InvalidArgumentError(
          fmt::format("kafka producer property \"{}\"=\"{}\" refused: {}", name, value, error_text));
    }
    return absl::OkStatus();
  };
  absl::Status status = set("bootstrap.servers", bootstrap_servers);
  for (const auto& [name, value] : kDefaultSettings) {
    if (status.ok()) status = set(name, value);
  }
  for (const auto& [name, value] : settings) {
    if (status.ok()) status = set(name, value);
  }
  if (!status.ok()) {
    rd_kafka_conf_destroy(conf);
    return status;
  }
  rd_kafka_conf_set_dr_msg_cb(conf, &Impl::OnDelivery);
  rd_kafka_conf_set_opaque(conf, impl.get());

  // On success rd_kafka_new takes ownership of conf; on failure it stays ours.
  impl->handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error_text, sizeof(error_text));
  if (impl->handle == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InvalidArgumentError(
        fmt::format("kafka producer could not be created: {}", error_text));
  }
  return std::unique_ptr<Producer>(new Producer(std::move(impl)));
}

absl::Status Producer::Produce(std::string_view topic_name, std::string_view key,
                               std::string_view payload, std::span<const Header> headers) {
  return ProduceTo(topic_name, RD_KAFKA_PARTITION_UA, key, payload, headers);
}

absl::Status Producer::ProduceToPartition(std::string_view topic_name, int32_t partition, std::string_view key,
                                          std::string_view payload) {
  if (partition < 0) return absl::InvalidArgumentError(fmt::format("kafka partition {} is negative", partition));
  return ProduceTo(topic_name, partition, key, payload, {});
}

absl::Status Producer::ProduceTo(std::string_view topic_name, int32_t partition, std::string_view key,
                                 std::string_view payload, std::span<const Header> headers) {
  absl::StatusOr<rd_kafka_topic_t*> topic = impl_->Topic(topic_name);
  if (!topic.ok()) return topic.status();

  // librdkafka copies the headers into a list it owns once producev succeeds; until then the
  // list is ours, and it is reused across queue-full retries.
  rd_kafka_headers_t* header_list = nullptr;
  if (!headers.empty()) {
    header_list = rd_kafka_headers_new(headers.size());
    for (const Header& header : headers) {
      const rd_kafka_resp_err_t error =
          rd_kafka_header_add(header_list, header.name.data(), static_cast<ssize_t>(header.name.size()),
                              header.value.data(), static_cast<ssize_t>(header.value.size()));
      if (error != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(header_list);
        return absl::InvalidArgumentError(
            fmt::format("kafka refused header \"{}\": {}", header.name, ErrorText(error)));
      }
    }
  }

  const auto deadline = std::chrono::steady_clock::now() + kQueueFullWaitMax;
  while (true) {
    rd_kafka_resp_err_t error;
    if (header_list != nullptr) {
      error = rd_kafka_producev(impl_->handle, RD_KAFKA_V_RKT(*topic), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_KEY(key.data(), key.size()),
                                RD_KAFKA_V_VALUE(const_cast<char*>(payload.data()), payload.size()),
                                RD_KAFKA_V_HEADERS(header_list), RD_KAFKA_V_END);
    } else {
      error = rd_kafka_producev(impl_->handle, RD_KAFKA_V_RKT(*topic), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_KEY(key.data(), key.size()),
                                RD_KAFKA_V_VALUE(const_cast<char*>(payload.data()), payload.size()),
                                RD_KAFKA_V_END);
    }
    if (error == RD_KAFKA_RESP_ERR_NO_ERROR) {
      // Serve delivery reports that are ready, without waiting, so the counters and the first
      // error stay current and the report queue does not grow without bound.
      rd_kafka_poll(impl_->handle, 0);
      return absl::OkStatus();
    }
    if (error != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      if (header_list != nullptr) rd_kafka_headers_destroy(header_list);
      return DeliveryStatus(impl_->handle, error, RD_KAFKA_MSG_STATUS_NOT_PERSISTED);
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      if (header_list != nullptr) rd_kafka_headers_destroy(header_list);
      return absl::UnavailableError(fmt::format(
          "kafka producer queue stayed full for {} ms (broker slow or unreachable); the message "
          "was not queued and is safe to produce again",
          kQueueFullWaitMax.count()));
    }
    const auto wait =
        std::min(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now), kQueueFullPollMax);
    rd_kafka_poll(impl_->handle, static_cast<int>(std::max<int64_t>(1, wait.count())));
  }
}

absl::Status Producer::Flush(std::chrono::milliseconds timeout) {
  const rd_kafka_resp_err_t flush_error =
      rd_kafka_flush(impl_->handle, static_cast<int>(std::max<int64_t>(0, timeout.count())));
  // rd_kafka_flush serves the delivery reports itself, so first_error is complete here.
  absl::Status result = std::exchange(impl_->first_error, absl::OkStatus());
  if (flush_error == RD_KAFKA_RESP_ERR_NO_ERROR) return result;
  const int remaining_count = rd_kafka_outq_len(impl_->handle);
  if (result.ok()) {
    return absl::DeadlineExceededError(fmt::format(
        "kafka producer flush timed out after {} ms with {} messages or requests still "
        "outstanding (broker slow or unreachable)",
        timeout.count(), remaining_count));
  }
  const std::string_view message(result.message().data(), result.message().size());
  return absl::Status(result.code(), fmt::format("{}; {} messages or requests still outstanding",
                                                 message, remaining_count));
}

uint64_t Producer::delivered_count() const {
  return impl_->delivered_count.load(std::memory_order_relaxed);
}

uint64_t Producer::failed_count() const { return impl_->failed_count.load(std::memory_order_relaxed); }

}  // namespace yrd::kafka
