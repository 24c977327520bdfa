#include "adapters/kafka/kafka_changelog.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <set>
#include <utility>

#include "adapters/kafka/log_route.h"
#include "engine/base/strings.h"
#include "fmt/format.h"

namespace yrd::kafka {
namespace {

using Clock = std::chrono::steady_clock;

// How long one poll of the restore consumer waits for a message.
constexpr int kRestorePollMs = 100;
// How long a watermark query waits for the broker.
constexpr int kWatermarkTimeoutMs = 10'000;

std::string ErrorText(rd_kafka_resp_err_t error) {
  return fmt::format("{} ({})", rd_kafka_err2name(error), rd_kafka_err2str(error));
}

}  // namespace

// A consumer that reads one changelog partition from a chosen offset, outside any group.
class PartitionReader {
 public:
  static absl::StatusOr<std::unique_ptr<PartitionReader>> Create(const std::string& bootstrap_servers) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    RouteKafkaLogs(conf);
    char error_text[512];
    // Not in a group and commits nothing: it reads a partition it was told to. An offset the
    // broker no longer holds is an error, never a silent jump (auto.offset.reset=error); an empty
    // fetch returns at once instead of waiting.
    const std::pair<const char*, const char*> settings[] = {
        {"bootstrap.servers", bootstrap_servers.c_str()},
        {"group.id", "yrd-changelog-restore"},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "error"},
        {"fetch.wait.max.ms", "10"},
        {"queued.min.messages", "1000000"},
        {"queued.max.messages.kbytes", "1048576"},
        {"fetch.message.max.bytes", "67108864"},
        {"receive.message.max.bytes", "134217728"},
        {"socket.nagle.disable", "true"},  // no request waits for the peer's delayed ACK
    };
    for (const auto& [name, value] : settings) {
      if (rd_kafka_conf_set(conf, name, value, error_text, sizeof(error_text)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return absl::InvalidArgumentError(fmt::format("changelog reader property {}={} refused: {}", name, value, error_text));
      }
    }
    rd_kafka_t* handle = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error_text, sizeof(error_text));
    if (handle == nullptr) {
      rd_kafka_conf_destroy(conf);
      return absl::InternalError(fmt::format("changelog reader could not be created: {}", error_text));
    }
    rd_kafka_poll_set_consumer(handle);
    return std::unique_ptr<PartitionReader>(new PartitionReader(handle));
  }
  ~PartitionReader() {
    (void)rd_kafka_assign(handle_, nullptr);
    rd_kafka_consumer_close(handle_);
    rd_kafka_destroy(handle_);
  }
  PartitionReader(const PartitionReader&) = delete;
  PartitionReader& operator=(const PartitionReader&) = delete;

  // The oldest offset the broker holds and the next one it will give.
  absl::StatusOr<std::pair<int64_t, int64_t>> Watermarks(const std::string& topic, int32_t partition) {
    int64_t low = 0, high = 0;
    const rd_kafka_resp_err_t error =
        rd_kafka_query_watermark_offsets(handle_, topic.c_str(), partition, &low, &high, kWatermarkTimeoutMs);
    if (error != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(
          fmt::format("the offsets of changelog {}/{} could not be read: {}", topic, partition, ErrorText(error)));
    }
    return std::pair{low, high};
  }

  // Hands `visit` every record of [from, to) in order, by `deadline`; `visit` returns an error, or
  // OK, or Cancelled to stop the read there (OK).
  template <typename Visit>
  absl::Status Read(const std::string& topic, int32_t partition, int64_t from, int64_t to, Clock::time_point deadline,
                    Visit&& visit) {
    if (from >= to) return absl::OkStatus();
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = from;
    const rd_kafka_resp_err_t assign_error = rd_kafka_assign(handle_, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (assign_error != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(fmt::format("changelog {}/{} could not be read: {}", topic, partition, ErrorText(assign_error)));
    }
    int64_t next = from;
    absl::Status status;
    while (status.ok() && next < to) {
      if (Clock::now() >= deadline) {
        status = absl::DeadlineExceededError(fmt::format(
            "changelog {}/{} was not read to offset {} in time (at {}); the partition is not restored", topic,
            partition, to, next));
        break;
      }
      rd_kafka_message_t* message = rd_kafka_consumer_poll(handle_, kRestorePollMs);
      if (message == nullptr) continue;
      if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        rd_kafka_message_destroy(message);
        continue;
      }
      if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const rd_kafka_resp_err_t error = message->err;
        rd_kafka_message_destroy(message);
        if (error == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE || error == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
          status = absl::DataLossError(fmt::format(
              "changelog_truncated: changelog {}/{} no longer holds offset {} (the broker dropped its oldest "
              "records while it was read); the partition is not restored",
              topic, partition, next));
        } else if (rd_kafka_fatal_error(handle_, nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
          status = absl::InternalError(fmt::format("changelog {}/{} reader failed: {}", topic, partition, ErrorText(error)));
        }
        continue;  // a transient error: librdkafka retries
      }
      if (message->offset != next) {
        status = absl::DataLossError(fmt::format("changelog_gap: changelog {}/{} gave offset {} where {} was next",
                                                 topic, partition, message->offset, next));
      } else {
        status = visit(std::string_view(static_cast<const char*>(message->payload), message->len));
        next = message->offset + 1;
      }
      rd_kafka_message_destroy(message);
      if (status.code() == absl::StatusCode::kCancelled) {
        status = absl::OkStatus();
        break;
      }
    }
    (void)rd_kafka_assign(handle_, nullptr);
    return status;
  }

 private:
  explicit PartitionReader(rd_kafka_t* handle) : handle_(handle) {}
  rd_kafka_t* handle_;
};

struct KafkaChangelog::Impl {
  KafkaChangelogOptions options;
  std::unique_ptr<Producer> producer;
  std::mutex append_mutex;  // one Append or fence at a time on the producer
  mutable std::mutex epochs_mutex;
  std::map<SourcePartition, uint64_t> epochs;  // claimed partitions
  // Of each claimed partition, an offset at or before this instance's fence in its changelog.
  std::map<SourcePartition, int64_t> fence_offsets;
  std::map<SourcePartition, SnapshotPolicy> snapshot_policies;  // claimed partitions
  std::atomic<uint64_t> records_appended{0};
  std::atomic<uint64_t> bytes_appended{0};
  std::atomic<uint64_t> snapshots_appended{0};
  std::atomic<uint64_t> snapshot_bytes_appended{0};
};

KafkaChangelog::KafkaChangelog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KafkaChangelog::~KafkaChangelog() = default;

absl::StatusOr<std::unique_ptr<KafkaChangelog>> KafkaChangelog::Create(KafkaChangelogOptions options) {
  auto impl = std::make_unique<Impl>();
  // Idempotent, acks=all (the producer's defaults); a commit waits for its records, so they are
  // sent at once; compressed, since the records repeat line keys and masks.
  absl::StatusOr<std::unique_ptr<Producer>> producer =
      Producer::Create(options.bootstrap_servers, {{"linger.ms", "0"},
                                                   {"compression.codec", "lz4"},
                                                   {"message.max.bytes", std::to_string(kRecordBytesMax)}});
  if (!producer.ok()) return producer.status();
  impl->producer = *std::move(producer);
  impl->options = std::move(options);
  return std::unique_ptr<KafkaChangelog>(new KafkaChangelog(std::move(impl)));
}

std::string KafkaChangelog::TopicOf(SourceTopic topic) const {
  return impl_->options.source_topics.at(static_cast<size_t>(topic)) + impl_->options.topic_suffix;
}

uint64_t KafkaChangelog::EpochOf(SourcePartition owner) const {
  std::lock_guard<std::mutex> lock(impl_->epochs_mutex);
  const auto it = impl_->epochs.find(owner);
  return it == impl_->epochs.end() ? 0 : it->second;
}

absl::StatusOr<bool> KafkaChangelog::StillOwns(SourcePartition owner) {
  uint64_t epoch = 0;
  int64_t from = 0;
  {
    std::lock_guard<std::mutex> lock(impl_->epochs_mutex);
    const auto it = impl_->epochs.find(owner);
    if (it == impl_->epochs.end()) return false;
    epoch = it->second;
    from = impl_->fence_offsets.at(owner);
  }
  absl::StatusOr<std::unique_ptr<PartitionReader>> reader = PartitionReader::Create(impl_->options.bootstrap_servers);
  if (!reader.ok()) return reader.status();
  const std::string topic = TopicOf(owner.topic);
  absl::StatusOr<std::pair<int64_t, int64_t>> marks = (*reader)->Watermarks(topic, owner.partition);
  if (!marks.ok()) return marks.status();
  bool fenced = false;
  absl::Status s = (*reader)->Read(topic, owner.partition, std::max(from, marks->first), marks->second,
                                   Clock::now() + impl_->options.restore_timeout, [&](std::string_view record) {
                                     ChangelogHeader header;
                                     // A fence of a later epoch, or any record of one (its fence
                                     // may be gone with the changelog's oldest records).
                                     if (DecodeChangelogHeader(record, header) && header.epoch > epoch) {
                                       fenced = true;
                                       return absl::CancelledError();
                                     }
                                     return absl::OkStatus();
                                   });
  if (!s.ok()) return s;
  return !fenced;
}

std::vector<SourcePartition> KafkaChangelog::Owned() const {
  std::lock_guard<std::mutex> lock(impl_->epochs_mutex);
  std::vector<SourcePartition> owned;
  owned.reserve(impl_->epochs.size());
  for (const auto& [owner, epoch] : impl_->epochs) owned.push_back(owner);
  return owned;
}

void KafkaChangelog::Release(SourcePartition owner) {
  std::lock_guard<std::mutex> lock(impl_->epochs_mutex);
  impl_->epochs.erase(owner);
  impl_->fence_offsets.erase(owner);
  impl_->snapshot_policies.erase(owner);
}

uint64_t KafkaChangelog::records_appended() const { return impl_->records_appended.load(std::memory_order_relaxed); }
uint64_t KafkaChangelog::bytes_appended() const { return impl_->bytes_appended.load(std::memory_order_relaxed); }
uint64_t KafkaChangelog::snapshots_appended() const {
  return impl_->snapshots_appended.load(std::memory_order_relaxed);
}
uint64_t KafkaChangelog::snapshot_bytes_appended() const {
  return impl_->snapshot_bytes_appended.load(std::memory_order_relaxed);
}

absl::Status KafkaChangelog::Append(std::span<const ChangelogRecord> records) {
  std::lock_guard<std::mutex> lock(impl_->append_mutex);
  uint64_t bytes = 0;
  for (const ChangelogRecord& record : records) {
    if (EpochOf(record.owner) == 0) {
      return absl::FailedPreconditionError(
          fmt::format("a commit of {} reached the changelog, which this instance has not claimed", FormatOwner(record.owner)));
    }
    absl::Status s = impl_->producer->ProduceToPartition(TopicOf(record.owner.topic), record.owner.partition,
                                                         FormatOwner(record.owner), record.bytes);
    if (!s.ok()) return s;
    bytes += record.bytes.size();
  }
  if (absl::Status s = impl_->producer->Flush(impl_->options.append_timeout); !s.ok()) {
    return absl::Status(s.code(), fmt::format("the changelog did not take a commit: {}", std::string_view(s.message().data(), s.message().size())));
  }
  impl_->records_appended.fetch_add(records.size(), std::memory_order_relaxed);
  impl_->bytes_appended.fetch_add(bytes, std::memory_order_relaxed);
  std::lock_guard<std::mutex> policies_lock(impl_->epochs_mutex);
  for (const ChangelogRecord& record : records) impl_->snapshot_policies[record.owner].tail_bytes += record.bytes.size();
  return absl::OkStatus();
}

bool KafkaChangelog::SnapshotDue(SourcePartition owner) const {
  if (impl_->options.snapshot_bytes == 0) return false;
  std::lock_guard<std::mutex> lock(impl_->epochs_mutex);
  const auto it = impl_->snapshot_policies.find(owner);
  return it != impl_->snapshot_policies.end() &&
         it->second.tail_bytes >= std::max(impl_->options.snapshot_bytes, it->second.last_snapshot_bytes);
}

absl::Status KafkaChangelog::AppendSnapshot(SourcePartition owner, std::span<const std::string> chunks) {
  std::lock_guard<std::mutex> lock(impl_->append_mutex);
  if (EpochOf(owner) == 0) {
    return absl::FailedPreconditionError(
        fmt::format("a snapshot of {} reached the changelog, which this instance has not claimed", FormatOwner(owner)));
  }
  uint64_t bytes = 0;
  for (const std::string& chunk : chunks) {
    absl::Status s = impl_->producer->ProduceToPartition(TopicOf(owner.topic), owner.partition, FormatOwner(owner), chunk);
    if (!s.ok()) return s;
    bytes += chunk.size();
  }
  if (absl::Status s = impl_->producer->Flush(impl_->options.append_timeout); !s.ok()) {
    return absl::Status(s.code(), fmt::format("the changelog did not take a snapshot of {}: {}", FormatOwner(owner),
                                              std::string_view(s.message().data(), s.message().size())));
  }
  impl_->records_appended.fetch_add(chunks.size(), std::memory_order_relaxed);
  impl_->bytes_appended.fetch_add(bytes, std::memory_order_relaxed);
  impl_->snapshots_appended.fetch_add(1, std::memory_order_relaxed);
  impl_->snapshot_bytes_appended.fetch_add(bytes, std::memory_order_relaxed);
  std::lock_guard<std::mutex> policies_lock(impl_->epochs_mutex);
  impl_->snapshot_policies[owner] = {.tail_bytes = 0, .last_snapshot_bytes = bytes};
  return absl::OkStatus();
}

absl::StatusOr<ClaimResult> KafkaChangelog::Claim(StateStore& store, SourcePartition owner) {
  absl::StatusOr<std::vector<ClaimResult>> claimed = Claim(store, std::span<const SourcePartition>(&owner, 1));
  if (!claimed.ok()) return claimed.status();
  return claimed->front();
}

absl::StatusOr<std::vector<ClaimResult>> KafkaChangelog::Claim(StateStore& store,
                                                               std::span<const SourcePartition> owners,
                                                               std::map<SourcePartition, int64_t> read_from) {
  // A partition whose state in the store diverged from its changelog (this instance committed
  // as a zombie) is dropped from the store and claimed again from its changelog's start; each
  // at most once.
  std::set<SourcePartition> rebuilt;
  for (;;) {
    std::optional<SourcePartition> diverged;
    absl::StatusOr<std::vector<ClaimResult>> claimed = ClaimAll(store, owners, read_from, diverged);
    if (claimed.ok()) return claimed;
    if (!diverged || !rebuilt.insert(*diverged).second) return claimed;
    if (impl_->options.on_rebuild) impl_->options.on_rebuild(*diverged, claimed.status());
    if (absl::Status s = DropOwnerState(store, *diverged); !s.ok()) return s;
    read_from.erase(*diverged);  // restored from the changelog's start
  }
}

absl::StatusOr<std::vector<ClaimResult>> KafkaChangelog::ClaimAll(StateStore& store,
                                                                  std::span<const SourcePartition> owners,
                                                                  const std::map<SourcePartition, int64_t>& read_from,
                                                                  std::optional<SourcePartition>& diverged) {
  // One restore and one reader for all of them: the store's line numbers are read once, and their
  // changes written with one synced write at the end.
  absl::StatusOr<std::unique_ptr<ChangelogRestore>> restore = ChangelogRestore::Open(store);
  if (!restore.ok()) return restore.status();
  absl::StatusOr<std::unique_ptr<PartitionReader>> reader = PartitionReader::Create(impl_->options.bootstrap_servers);
  if (!reader.ok()) return reader.status();
  std::vector<ClaimResult> results;
  std::vector<SnapshotPolicy> policies(owners.size());
  for (size_t i = 0; i < owners.size(); ++i) {
    const SourcePartition owner = owners[i];
    const uint64_t applied_before = (*restore)->commits_applied();
    const uint64_t snapshots_before = (*restore)->snapshots_applied();
    const auto from = read_from.find(owner);
    absl::StatusOr<ClaimResult> result =
        ClaimOne(**restore, **reader, owner, from == read_from.end() ? 0 : from->second, policies[i]);
    if (!result.ok()) {
      diverged = (*restore)->diverged();
      return result.status();
    }
    result->commits_restored = (*restore)->commits_applied() - applied_before;
    result->snapshots_restored = (*restore)->snapshots_applied() - snapshots_before;
    for (const auto& [day, closed_at_ms] : (*restore)->windows_closed()) {
      if ((*restore)->Closed(owner, day)) result->windows_closed.emplace(day, closed_at_ms);
    }
    results.push_back(*result);
  }
  if (absl::Status s = (*restore)->Finish(); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(impl_->epochs_mutex);
  for (size_t i = 0; i < owners.size(); ++i) {
    impl_->epochs[owners[i]] = results[i].epoch;
    impl_->fence_offsets[owners[i]] = results[i].fence_offset;
    impl_->snapshot_policies[owners[i]] = policies[i];
  }
  return results;
}

absl::StatusOr<WindowRestoreResult> KafkaChangelog::RestoreWindow(StateStore& store, WindowDay day,
                                                                  std::span<const SourcePartition> owners) {
  absl::StatusOr<std::unique_ptr<WindowRestore>> restore = StartWindowRestore(store, day, owners);
  if (!restore.ok()) return restore.status();
  if (absl::Status s = ContinueWindowRestore(**restore); !s.ok()) return s;
  return (*restore)->result();
}

absl::StatusOr<std::unique_ptr<WindowRestore>> KafkaChangelog::StartWindowRestore(
    StateStore& store, WindowDay day, std::span<const SourcePartition> owners) {
  absl::StatusOr<std::unique_ptr<ChangelogRestore>> changes = ChangelogRestore::Open(store);
  if (!changes.ok()) return changes.status();
  std::unique_ptr<WindowRestore> restore(new WindowRestore());
  restore->day_ = day;
  restore->owners_.assign(owners.begin(), owners.end());
  restore->restore_ = *std::move(changes);
  return restore;
}

absl::Status KafkaChangelog::ContinueWindowRestore(WindowRestore& window) {
  absl::StatusOr<std::unique_ptr<PartitionReader>> reader = PartitionReader::Create(impl_->options.bootstrap_servers);
  if (!reader.ok()) return reader.status();
  const Clock::time_point deadline = Clock::now() + impl_->options.restore_timeout;
  ChangelogRestore& restore = *window.restore_;
  WindowRestoreResult& result = window.result_;
  result.not_closed.clear();
  for (const SourcePartition owner : window.owners_) {
    if (restore.Closed(owner, window.day_)) continue;  // complete in an earlier pass
    const std::string topic = TopicOf(owner.topic);
    absl::StatusOr<std::pair<int64_t, int64_t>> marks = (*reader)->Watermarks(topic, owner.partition);
    if (!marks.ok()) return marks.status();
    // The first pass reads from the oldest record; a later one where the last stopped (the
    // reader delivers consecutive offsets, or fails).
    int64_t& next = window.next_offsets_.try_emplace(owner, marks->first).first->second;
    auto apply = [&](std::string_view record) -> absl::Status {
      ++next;
      ChangelogHeader header;
      if (!DecodeChangelogHeader(record, header) || header.owner != owner) {
        return absl::DataLossError(
            fmt::format("changelog {}/{} holds a record that is not one of {}", topic, owner.partition, FormatOwner(owner)));
      }
      ++result.records_read;
      result.bytes_read += record.size();
      absl::StatusOr<RestoreStep> step = restore.Apply(record);
      if (!step.ok()) return step.status();
      // The owner's share of the window is complete with the commit that closed it.
      if (*step == RestoreStep::kApplied && restore.Closed(owner, window.day_)) return absl::CancelledError();
      return absl::OkStatus();
    };
    if (absl::Status s = (*reader)->Read(topic, owner.partition, next, marks->second, deadline, apply); !s.ok()) {
      return s;
    }
    if (!restore.Closed(owner, window.day_)) result.not_closed.push_back(owner);
  }
  // A partition that lacks its next commits needs a snapshot: the rest of one begun may come by
  // the next pass; without one it is refused.
  if (absl::Status s = restore.AwaitingSnapshotChunks() ? restore.Flush() : restore.Finish(); !s.ok()) return s;
  const auto closed = restore.windows_closed().find(window.day_);
  result.closed_at_ms = closed == restore.windows_closed().end() ? 0 : closed->second;
  return absl::OkStatus();
}

std::optional<Standby::Position> Standby::PositionOf(SourcePartition owner) const {
  const auto it = positions_.find(owner);
  if (it == positions_.end()) return std::nullopt;
  return it->second;
}

std::map<WindowDay, int64_t> Standby::ClosesOf(SourcePartition owner) const {
  std::map<WindowDay, int64_t> closes;
  for (const auto& [day, closed_at_ms] : restore_->windows_closed()) {
    if (restore_->Closed(owner, day)) closes.emplace(day, closed_at_ms);
  }
  return closes;
}

absl::StatusOr<std::unique_ptr<Standby>> KafkaChangelog::StartStandby(StateStore& store) {
  absl::StatusOr<std::unique_ptr<ChangelogRestore>> restore = ChangelogRestore::Open(store);
  if (!restore.ok()) return restore.status();
  std::unique_ptr<Standby> standby(new Standby(store));
  standby->restore_ = *std::move(restore);
  return standby;
}

absl::Status KafkaChangelog::ContinueStandby(Standby& standby, std::span<const SourcePartition> followed) {
  absl::StatusOr<std::unique_ptr<PartitionReader>> reader = PartitionReader::Create(impl_->options.bootstrap_servers);
  if (!reader.ok()) return reader.status();
  const Clock::time_point deadline = Clock::now() + impl_->options.restore_timeout;
  ChangelogRestore& restore = *standby.restore_;
  uint64_t lag = 0;
  for (const SourcePartition owner : followed) {
    const std::string topic = TopicOf(owner.topic);
    absl::StatusOr<std::pair<int64_t, int64_t>> marks = (*reader)->Watermarks(topic, owner.partition);
    if (!marks.ok()) return marks.status();
    Standby::Position& position = standby.positions_[owner];
    // What the broker dropped since the last pass is behind the standby: the restore waits for a
    // snapshot in what is left.
    position.next_offset = std::max(position.next_offset, marks->first);
    position.end_offset = marks->second;
    lag += static_cast<uint64_t>(position.end_offset - position.next_offset);
    auto apply = [&](std::string_view record) -> absl::Status {
      ++position.next_offset;
      ChangelogHeader header;
      if (!DecodeChangelogHeader(record, header) || header.owner != owner) {
        return absl::DataLossError(
            fmt::format("changelog {}/{} holds a record that is not one of {}", topic, owner.partition, FormatOwner(owner)));
      }
      return restore.Apply(record).status();
    };
    if (absl::Status s = (*reader)->Read(topic, owner.partition, position.next_offset, marks->second, deadline, apply);
        !s.ok()) {
      return s;
    }
  }
  standby.followed_count_ = followed.size();
  standby.lag_records_ = lag;
  return restore.AwaitingSnapshotChunks() ? restore.Flush() : restore.Finish();
}

absl::StatusOr<ClaimResult> KafkaChangelog::ClaimOne(ChangelogRestore& restore, PartitionReader& reader,
                                                     SourcePartition owner, int64_t read_from, SnapshotPolicy& policy) {
  const Clock::time_point started = Clock::now();
  const Clock::time_point deadline = started + impl_->options.restore_timeout;
  const std::string topic = TopicOf(owner.topic);
  ClaimResult result;
  const ChangelogProgress local = restore.progress(owner);
  uint64_t epoch_seen = std::max(local.epoch, local.fence_epoch);
  auto apply = [&](std::string_view record) -> absl::Status {
    ChangelogHeader header;
    if (!DecodeChangelogHeader(record, header)) {
      return absl::DataLossError(fmt::format("changelog {}/{} holds a record that is not one", topic, owner.partition));
    }
    if (header.owner != owner) {
      return absl::FailedPreconditionError(fmt::format(
          "changelog {}/{} holds a record of {}: the changelog topic's partitions do not match its source's",
          topic, owner.partition, FormatOwner(header.owner)));
    }
    epoch_seen = std::max(epoch_seen, header.epoch);
    ++result.records_read;
    result.bytes_read += record.size();
    // When the owner's next snapshot is due: after as many bytes of commits as it has or its last
    // snapshot's size.
    SnapshotChunk chunk;
    if (header.kind == ChangelogKind::kCommit) {
      policy.tail_bytes += record.size();
    } else if (DecodeSnapshotChunk(record, chunk)) {
      if (chunk.index == 0) policy.reading_snapshot_bytes = 0;
      policy.reading_snapshot_bytes += record.size();
      if (chunk.last) policy = {.tail_bytes = 0, .last_snapshot_bytes = policy.reading_snapshot_bytes};
    }
    absl::StatusOr<RestoreStep> step = restore.Apply(record);
    return step.status();
  };

  // Everything the changelog holds now, then the fence, then what came before the fence (a
  // former owner may have appended meanwhile).
  absl::StatusOr<std::pair<int64_t, int64_t>> marks = reader.Watermarks(topic, owner.partition);
  if (!marks.ok()) return marks.status();
  const int64_t start = std::max(marks->first, read_from);
  if (absl::Status s = reader.Read(topic, owner.partition, start, marks->second, deadline, apply); !s.ok()) {
    return s;
  }
  result.epoch = epoch_seen + 1;
  result.fence_offset = marks->second;
  {
    std::lock_guard<std::mutex> lock(impl_->append_mutex);
    std::string fence;
    EncodeChangelogFence(owner, result.epoch, fence);
    absl::Status s = impl_->producer->ProduceToPartition(topic, owner.partition, FormatOwner(owner), fence);
    if (s.ok()) s = impl_->producer->Flush(impl_->options.append_timeout);
    if (!s.ok()) {
      return absl::Status(s.code(), fmt::format("the fence of {} could not be appended: {}", FormatOwner(owner), std::string_view(s.message().data(), s.message().size())));
    }
  }
  absl::StatusOr<std::pair<int64_t, int64_t>> after = reader.Watermarks(topic, owner.partition);
  if (!after.ok()) return after.status();
  if (absl::Status s = reader.Read(topic, owner.partition, marks->second, after->second, deadline, apply); !s.ok()) {
    return s;
  }
  if (epoch_seen > result.epoch) {
    return absl::FailedPreconditionError(fmt::format(
        "{} was claimed by another instance (epoch {}) while this one claimed it (epoch {})", FormatOwner(owner),
        epoch_seen, result.epoch));
  }
  result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  return result;
}

}  // namespace yrd::kafka
