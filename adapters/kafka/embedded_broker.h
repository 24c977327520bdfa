// EmbeddedBroker: an in-process Kafka cluster (librdkafka's mock cluster) listening on
// 127.0.0.1 only, for the demo, the clearing-broker program and tests. It owns the mock cluster
// and the librdkafka handle that hosts it; everything it stores lives in memory and is gone when
// the object is destroyed. Start() returns a running cluster with the configured topics; the
// mock serves clients on its own thread, so any thread may call the const methods, and the
// destructor (from one thread, after clients are done) stops it.
//
// The mock is not a real broker. Each partition keeps at most kPartitionBytesMax bytes or
// kPartitionMessageSetsMax message sets (produce batches) and silently drops the oldest beyond
// that, so a consumer that falls further behind loses messages (it sees OFFSET_OUT_OF_RANGE).
// read_committed isolation is not emulated, and there is no SSL or SASL.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace yrd::kafka {

struct EmbeddedBrokerOptions {
  // TCP port of broker 1 on 127.0.0.1; broker i listens on port + i - 1. 0 lets the kernel pick
  // a free port for each broker. Range 0..65535, and port + broker_count - 1 <= 65535.
  uint16_t port = 0;
  // Number of brokers in the cluster. Range 1..EmbeddedBroker::kBrokerCountMax.
  int broker_count = 1;
  // Partitions of each topic below. Range 1..EmbeddedBroker::kPartitionCountMax.
  int partition_count = 16;
  // Topics created at start, with partition_count partitions and replication factor
  // min(broker_count, 3). Names follow Kafka's rules: 1..249 of [a-zA-Z0-9._-]. The changelog
  // topics carry the state of a consumer group's members (adapters/kafka/kafka_changelog.h).
  std::vector<std::string> topics = {"yrd.taps", "yrd.medical", "yrd.dlq", "yrd.taps.changelog",
                                     "yrd.medical.changelog", "yrd.control"};
};

class EmbeddedBroker {
 public:
  // Starts the cluster and creates the topics. Fails with InvalidArgument when an option is
  // out of range, with Unavailable when a fixed port is in use (safe to retry on another port),
  // and with Internal when librdkafka cannot create the cluster. Nothing is left running on
  // failure.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EmbeddedBroker>> Start(
      const EmbeddedBrokerOptions& options = {});

  // Closes every connection and frees every message the cluster holds.
  ~EmbeddedBroker();
  EmbeddedBroker(const EmbeddedBroker&) = delete;
  EmbeddedBroker& operator=(const EmbeddedBroker&) = delete;

  // The address list clients use, "127.0.0.1:PORT[,127.0.0.1:PORT...]", one entry per broker,
  // with the ports the brokers really listen on (and advertise in metadata).
  [[nodiscard]] const std::string& bootstrap_servers() const;
  // The port of each broker, broker 1 first.
  [[nodiscard]] const std::vector<uint16_t>& ports() const;

  static constexpr int kBrokerCountMax = 16;
  static constexpr int kPartitionCountMax = 1024;
  static constexpr int kTopicNameBytesMax = 249;
  // Retention of librdkafka 2.0.2's mock per partition, fixed inside librdkafka.
  static constexpr int64_t kPartitionBytesMax = 5 * 1024 * 1024;
  static constexpr int64_t kPartitionMessageSetsMax = 100'000;

 private:
  struct Impl;
  explicit EmbeddedBroker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace yrd::kafka
