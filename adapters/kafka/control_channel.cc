#include "adapters/kafka/control_channel.h"

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <utility>

#include "adapters/kafka/log_route.h"
#include "adapters/kafka/producer.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace yrd::kafka {
namespace {

// How long one poll of the reader waits, which bounds how long a stop waits for it.
constexpr int kControlPollMs = 100;
// The partition every command goes to and is read from.
constexpr int32_t kControlPartition = 0;
// A command is a line of JSON of at most this many bytes; a longer record is not one.
constexpr size_t kControlRecordBytesMax = 4096;
// The instance name a command carries, at most this long.
constexpr size_t kControlFromBytesMax = 200;

std::string_view KindName(ControlCommand::Kind kind) {
  return kind == ControlCommand::Kind::kClose ? "close" : "files_written";
}

}  // namespace

std::string EncodeControlCommand(const ControlCommand& command) {
  return nlohmann::json{{"command", KindName(command.kind)},
                        {"window", FormatWindowDay(command.day)},
                        {"at_ms", command.at_ms},
                        {"from", command.from}}
      .dump();
}

std::optional<ControlCommand> DecodeControlCommand(std::string_view bytes, std::string& error) {
  if (bytes.size() > kControlRecordBytesMax) {
    error = fmt::format("a record of {} bytes (a command has at most {})", bytes.size(), kControlRecordBytesMax);
    return std::nullopt;
  }
  const nlohmann::json json = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) {
    error = "not a JSON object";
    return std::nullopt;
  }
  ControlCommand command;
  const auto kind = json.find("command");
  if (kind == json.end() || !kind->is_string()) {
    error = "no \"command\"";
    return std::nullopt;
  }
  if (*kind == "close") {
    command.kind = ControlCommand::Kind::kClose;
  } else if (*kind == "files_written") {
    command.kind = ControlCommand::Kind::kFilesWritten;
  } else {
    error = fmt::format("an unknown command {}", kind->dump());
    return std::nullopt;
  }
  const auto window = json.find("window");
  const std::optional<WindowDay> day =
      window != json.end() && window->is_string() ? ParseWindowDate(window->get<std::string>()) : std::nullopt;
  if (!day) {
    error = "no \"window\" as YYYYMMDD";
    return std::nullopt;
  }
  command.day = *day;
  const auto at = json.find("at_ms");
  if (at == json.end() || !at->is_number_integer() || at->get<int64_t>() <= 0) {
    error = "no \"at_ms\" as a positive integer";
    return std::nullopt;
  }
  command.at_ms = at->get<int64_t>();
  const auto from = json.find("from");
  if (from != json.end()) {
    if (!from->is_string() || from->get<std::string>().size() > kControlFromBytesMax) {
      error = fmt::format("\"from\" is not a string of at most {} bytes", kControlFromBytesMax);
      return std::nullopt;
    }
    command.from = from->get<std::string>();
  }
  return command;
}

struct ControlChannel::Impl {
  ControlChannelOptions options;
  std::unique_ptr<Producer> producer;
  std::mutex publish_mutex;  // one Publish at a time on the producer
  rd_kafka_t* consumer = nullptr;
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> commands_read{0};
  std::atomic<uint64_t> records_skipped{0};
  std::thread reader;

  void Read() {
    while (!stopping.load(std::memory_order_acquire)) {
      rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer, kControlPollMs);
      if (message == nullptr) continue;
      if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        std::string error;
        const std::optional<ControlCommand> command =
            DecodeControlCommand(std::string_view(static_cast<const char*>(message->payload), message->len), error);
        if (command) {
          commands_read.fetch_add(1, std::memory_order_relaxed);
          options.on_command(*command);
        } else {
          records_skipped.fetch_add(1, std::memory_order_relaxed);
          if (options.on_warning) {
            options.on_warning(fmt::format("{} offset {} is not a command and is skipped: {}", options.topic,
                                           message->offset, error));
          }
        }
      } else if (message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && options.on_warning) {
        options.on_warning(fmt::format("{}: {}", options.topic, rd_kafka_message_errstr(message)));
      }
      rd_kafka_message_destroy(message);
    }
  }
};

ControlChannel::ControlChannel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ControlChannel::~ControlChannel() {
  impl_->stopping.store(true, std::memory_order_release);
  impl_->reader.join();
  (void)rd_kafka_assign(impl_->consumer, nullptr);
  rd_kafka_consumer_close(impl_->consumer);
  rd_kafka_destroy(impl_->consumer);
}

absl::StatusOr<std::unique_ptr<ControlChannel>> ControlChannel::Start(ControlChannelOptions options) {
  auto impl = std::make_unique<Impl>();
  absl::StatusOr<std::unique_ptr<Producer>> producer = Producer::Create(options.bootstrap_servers, {{"linger.ms", "0"}});
  if (!producer.ok()) return producer.status();
  impl->producer = *std::move(producer);

  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  RouteKafkaLogs(conf);
  char error_text[512];
  // Outside any group, committing nothing: every instance reads the whole partition. A reader
  // whose offset the broker no longer holds starts from the oldest it has.
  const std::pair<const char*, const char*> settings[] = {
      {"bootstrap.servers", options.bootstrap_servers.c_str()},
      {"group.id", "yrd-control-reader"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},
      {"fetch.wait.max.ms", "100"},
  };
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name, value, error_text, sizeof(error_text)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(fmt::format("control reader property {}={} refused: {}", name, value, error_text));
    }
  }
  impl->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error_text, sizeof(error_text));
  if (impl->consumer == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InternalError(fmt::format("control reader could not be created: {}", error_text));
  }
  rd_kafka_poll_set_consumer(impl->consumer);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, options.topic.c_str(), kControlPartition)->offset = RD_KAFKA_OFFSET_BEGINNING;
  const rd_kafka_resp_err_t assign_error = rd_kafka_assign(impl->consumer, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (assign_error != RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_destroy(impl->consumer);
    return absl::UnavailableError(
        fmt::format("control topic {} could not be read: {}", options.topic, rd_kafka_err2str(assign_error)));
  }
  impl->options = std::move(options);
  Impl* raw = impl.get();
  impl->reader = std::thread([raw] { raw->Read(); });
  return std::unique_ptr<ControlChannel>(new ControlChannel(std::move(impl)));
}

absl::Status ControlChannel::Publish(const ControlCommand& command) {
  std::lock_guard<std::mutex> lock(impl_->publish_mutex);
  absl::Status s = impl_->producer->ProduceToPartition(impl_->options.topic, kControlPartition,
                                                        FormatWindowDay(command.day), EncodeControlCommand(command));
  if (s.ok()) s = impl_->producer->Flush(impl_->options.publish_timeout);
  return s;
}

uint64_t ControlChannel::commands_read() const { return impl_->commands_read.load(std::memory_order_relaxed); }
uint64_t ControlChannel::records_skipped() const { return impl_->records_skipped.load(std::memory_order_relaxed); }

}  // namespace yrd::kafka
