// KafkaSource: the pipeline's MessageSource over a librdkafka consumer. By default it assigns
// every partition of yrd.taps and yrd.medical explicitly, starting each at the next offset the
// state store committed (so Kafka's group offsets are only a monitoring hint, committed after the
// store). As a member of a consumer group (Assignment::kGroup) it subscribes with the
// cooperative-sticky assignor and optional static membership: a partition the group assigns starts
// at the store's offset for it, and a partition the group revokes is let go only after every batch
// consumed from it is committed and acknowledged (the pipeline's drain), with its messages not yet
// handed on dropped from the batch being filled. A partition that another member consumed further
// than this store holds is refused (FailedPrecondition): its state is elsewhere, and handing it
// over (the changelog, docs/scale-out.md) is not built yet. It consumes with the batch API. It checks that each partition's offsets follow on
// without a gap: a gap or an offset the broker no longer holds stops consumption with DataLoss
// instead of skipping money. After a batch is committed it copies the rejected messages to
// yrd.dlq with their origin and reason as headers, and reports (DeadLettersDeliveredThrough)
// up to which commit the copies are known delivered, so the ledger can drop its stored copies.
// Called from the pipeline's ingest thread only; Lag() may be read from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters/kafka/producer.h"
#include "engine/ledger/ledger.h"
#include "engine/pipeline/pipeline.h"

namespace yrd::kafka {

struct KafkaSourceOptions {
  std::string bootstrap_servers;             // config kafka.bootstrap_servers
  std::string group_id = "yrd-clearingd";    // config kafka.group_id
  // Config kafka.assignment: every partition to this instance, or the ones the group gives it.
  enum class Assignment { kPartitions, kGroup };
  Assignment assignment = Assignment::kPartitions;
  // Config kafka.group_instance_id: static membership in the group (kGroup only; empty: dynamic).
  std::string group_instance_id;
  // kGroup: the next offset the state store committed for a partition, nullopt when it has none;
  // asked when the group assigns the partition. Thread-safe.
  std::function<std::optional<int64_t>(SourceTopic, int32_t)> committed_offset;
  // kGroup: called when the group assigns partitions, after the pipeline's drain (no batch in
  // flight) and before their offsets are asked: brings their state in the store up to their last
  // commit anywhere (restores it from the changelog, engine/changelog). An error refuses them.
  std::function<absl::Status(std::span<const SourcePartition>)> claim;
  // kGroup: called when the group revokes partitions, after the drain: this instance owns them no
  // more.
  std::function<void(std::span<const SourcePartition>)> release;
  // kGroup: how long to wait for the group's committed offsets of newly assigned partitions.
  std::chrono::milliseconds committed_timeout{10'000};
  Settings settings;                         // config [kafka.settings], librdkafka properties
  std::chrono::milliseconds metadata_timeout{15'000};
  size_t message_bytes_max = 65'536;         // larger payloads are rejected as oversized
  bool dead_letter = true;                   // copy rejected messages to yrd.dlq
  // What a copy carries of the message (config kafka.dead_letter_payload).
  DeadLetterPayload dead_letter_payload = DeadLetterPayload::kOriginal;
  // Called with a human-readable line for transient consumer errors (the consumer retries).
  std::function<void(const std::string&)> on_warning;
};

class KafkaSource final : public MessageSource {
 public:
  // Connects, looks up the partitions of both topics (NotFound if a topic is missing) and
  // assigns them at `committed` offsets (partitions without one start at the beginning).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<KafkaSource>> Create(KafkaSourceOptions options,
                                                                           const PartitionOffsets& committed);
  ~KafkaSource() override;
  // Checks what Create would refuse of `options` without connecting: every librdkafka setting
  // (an unknown property, a bad value) is applied to a configuration as Create applies it.
  [[nodiscard]] static absl::Status CheckOptions(const KafkaSourceOptions& options);

  [[nodiscard]] absl::Status Fill(Batch& batch, std::chrono::milliseconds wait) override;
  [[nodiscard]] absl::Status OnCommitted(const Batch& batch) override;

  struct PartitionLag {
    SourceTopic topic = SourceTopic::kTaps;
    int32_t partition = 0;
    int64_t lag_messages = 0;  // high watermark minus the next offset to consume; -1 unknown
  };
  // The lag of every assigned partition, as of the last refresh (every kLagRefreshInterval
  // while consuming, from librdkafka's cached watermarks). Thread-safe.
  [[nodiscard]] std::shared_ptr<const std::vector<PartitionLag>> Lag() const;
  static constexpr std::chrono::milliseconds kLagRefreshInterval{1000};

  [[nodiscard]] uint64_t DeadLettersDeliveredThrough() const override;
  void SetDrain(std::function<absl::Status()> drain) override;
  [[nodiscard]] std::optional<Ownership> TakeOwnershipChange() override;

  // The partitions this source consumes now (every partition, or the group's assignment).
  // Thread-safe.
  [[nodiscard]] std::vector<std::pair<SourceTopic, int32_t>> Assignment() const;
  // Rebalances this member took part in (assignments and revocations). Thread-safe.
  [[nodiscard]] uint64_t rebalances() const;
  // The partitions of both topics together, as the metadata at Create gave them. Thread-safe.
  [[nodiscard]] size_t partition_count() const;
  // Every partition of both topics, as the metadata at Create gave them, in order.
  [[nodiscard]] std::vector<SourcePartition> AllPartitions() const;

  // Waits for the dead-letter copies to be delivered, at most `timeout`: OK when every copy
  // produced so far is delivered (DeadLettersDeliveredThrough then covers them).
  [[nodiscard]] absl::Status FlushDeadLetters(std::chrono::milliseconds timeout);

  // Produces a copy the store kept from an earlier run (before consumption starts), its payload
  // already opened (unsealed) by the caller. On an error the copy and every later one stay in
  // the store for the next start.
  [[nodiscard]] absl::Status ProduceStoredDeadLetter(const DeadLetterCopy& copy);

  // Most messages taken from librdkafka's queue per call.
  static constexpr size_t kConsumeChunkMax = 4096;

 private:
  struct Impl;
  explicit KafkaSource(std::unique_ptr<Impl> impl);
  [[nodiscard]] absl::Status FillFromQueue(Batch& batch, std::chrono::milliseconds wait);
  std::unique_ptr<Impl> impl_;
};

}  // namespace yrd::kafka
