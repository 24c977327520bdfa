// Producer: a thin owner of a librdkafka producer, used by the generator (events), the daemon
// (yrd.dlq) and tests. Messages are keyed; the partitioner is murmur2_random (Kafka's Java
// default), so every tool sends one key to the same partition as any other Kafka client.
// Thread-compatible: one thread calls Produce/Flush at a time; delivery reports are served
// from those calls.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace yrd::kafka {

struct Header {
  std::string_view name;
  std::string_view value;
};

using Settings = std::vector<std::pair<std::string, std::string>>;

class Producer {
 public:
  // Creates a producer for `bootstrap_servers` ("127.0.0.1:9092,..."). `settings` are extra
  // librdkafka properties that override the defaults (idempotence on, linger 5 ms, acks all).
  // Fails with InvalidArgument naming the property when one is refused.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Producer>> Create(const std::string& bootstrap_servers,
                                                                        const Settings& settings = {});
  ~Producer();
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // Queues one message (copied). While the local queue is full it serves delivery reports and
  // retries, for at most queue_full_wait_ms_max; then returns Unavailable (safe to retry).
  [[nodiscard]] absl::Status Produce(std::string_view topic, std::string_view key, std::string_view payload,
                                     std::span<const Header> headers = {});

  // The same to one chosen partition (the key is carried, not used to place the message).
  [[nodiscard]] absl::Status ProduceToPartition(std::string_view topic, int32_t partition, std::string_view key,
                                                std::string_view payload);

  // Waits until every queued message is delivered or failed, at most `timeout`. Returns the
  // first delivery error seen since the last Flush (DeadlineExceeded if messages remain).
  [[nodiscard]] absl::Status Flush(std::chrono::milliseconds timeout);

  [[nodiscard]] uint64_t delivered_count() const;
  [[nodiscard]] uint64_t failed_count() const;

  // How long Produce waits for room in a full local queue.
  static constexpr std::chrono::milliseconds kQueueFullWaitMax{30'000};

 private:
  struct Impl;
  explicit Producer(std::unique_ptr<Impl> impl);
  [[nodiscard]] absl::Status ProduceTo(std::string_view topic, int32_t partition, std::string_view key,
                                       std::string_view payload, std::span<const Header> headers);
  std::unique_ptr<Impl> impl_;
};

}  // namespace yrd::kafka
