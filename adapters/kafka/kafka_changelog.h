// KafkaChangelog: the changelog of partition-owned state (engine/changelog) carried by Kafka, so
// that a partition's state moves with the partition between instances of a consumer group
// (docs/scale-out.md, section 4).
//
// Each source topic has a changelog topic of as many partitions, `<source topic><suffix>`
// (yrd.taps.changelog, yrd.medical.changelog by default), and source partition p's records go to
// its partition p. Append produces a commit's records (idempotent, acks=all, lz4) and returns once
// every one is acknowledged: the ledger writes its store only after. Claim makes this instance the
// owner of a partition: it restores the partition's state into the store from the changelog, picks
// an epoch above every one the changelog holds, appends a fence of that epoch (after which a
// former owner's commits change nothing for any reader), and restores what came before the fence.
//
// Thread-safe: Append from the commit thread, EpochOf from the ledger thread, Claim from the
// thread that handles assignments while the store's ledger is not running.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "adapters/kafka/producer.h"
#include "engine/changelog/changelog.h"
#include "engine/store/state_store.h"

namespace yrd::kafka {

struct KafkaChangelogOptions {
  std::string bootstrap_servers;
  // The source topics, in SourceTopic order (yrd.taps, yrd.medical); the changelog topic of each
  // is its name with `topic_suffix` appended (config kafka.changelog_topic_suffix).
  std::array<std::string, 2> source_topics = {"yrd.taps", "yrd.medical"};
  std::string topic_suffix = ".changelog";
  // How long an Append waits for the broker's acknowledgement before it fails the commit (config
  // kafka.changelog_append_timeout_ms).
  std::chrono::milliseconds append_timeout{30'000};
  // How long a Claim may take to read a partition's changelog (config
  // kafka.changelog_restore_timeout_ms).
  std::chrono::milliseconds restore_timeout{300'000};
  // A partition's owner appends a snapshot of its state once its changelog has grown by this many
  // bytes since the last snapshot, and by at least that snapshot's size (so snapshots cost at most
  // as much again as the commits); 0 never (config kafka.changelog_snapshot_bytes). A restore
  // then reads at most the last complete snapshot and the commits after it, and the broker may
  // drop anything older (docs/scale-out.md, section 4).
  uint64_t snapshot_bytes = 4 << 20;
  // Told before a diverged partition's state is dropped from the store and restored again, with
  // the refusal that found it (for the log).
  std::function<void(SourcePartition, const absl::Status&)> on_rebuild = nullptr;
};

// What one Claim did.
struct ClaimResult {
  uint64_t epoch = 0;             // this instance's epoch for the partition from now on
  int64_t fence_offset = 0;       // an offset of the changelog at or before this claim's fence
  uint64_t records_read = 0;      // changelog records read
  uint64_t commits_restored = 0;  // commit records applied to the store
  uint64_t snapshots_restored = 0;  // snapshots applied to the store (each replaces its state)
  uint64_t bytes_read = 0;
  std::chrono::milliseconds duration{0};
  // The windows the partition's restored commits closed, and the instant of each: the claimer
  // closes them too before it consumes the partition.
  std::map<WindowDay, int64_t> windows_closed;
};

// What one RestoreWindow did.
struct WindowRestoreResult {
  // Partitions whose changelog does not close the window yet (their owner has not closed it).
  std::vector<SourcePartition> not_closed;
  // The earliest instant at which a partition closed the window (0 when none did).
  int64_t closed_at_ms = 0;
  uint64_t records_read = 0;
  uint64_t bytes_read = 0;
};

class PartitionReader;  // kafka_changelog.cc: reads one changelog partition

// The restore of one window from every partition's changelog into a store of its own, kept
// between passes: each pass (KafkaChangelog::ContinueWindowRestore) reads every partition that
// has not closed the window yet on from where the last pass stopped, so a coordinator waiting
// for the last partitions reads each record once. Not thread-safe; the store must outlive it.
class WindowRestore {
 public:
  [[nodiscard]] WindowDay day() const { return day_; }
  // As of the last pass.
  [[nodiscard]] const WindowRestoreResult& result() const { return result_; }

 private:
  friend class KafkaChangelog;
  WindowRestore() = default;
  WindowDay day_ = 0;
  std::vector<SourcePartition> owners_;
  std::unique_ptr<ChangelogRestore> restore_;
  std::map<SourcePartition, int64_t> next_offsets_;  // where the next pass reads each partition
  WindowRestoreResult result_;
};

// A standby's copy of partitions this instance does not own, in a store of its own, kept by
// following their changelogs (config kafka.standby): a claim of one of them copies its state from
// there and reads only the changelog after it (docs/scale-out.md, section 4). Not thread-safe;
// the store must outlive it.
class Standby {
 public:
  // Where the standby stands in a followed partition's changelog, as of the last pass.
  struct Position {
    int64_t next_offset = 0;  // after the last record it read
    int64_t end_offset = 0;   // the changelog's end when the pass read it
  };
  [[nodiscard]] std::optional<Position> PositionOf(SourcePartition owner) const;
  // Records of the followed partitions' changelogs past what the standby had read, at the end of
  // the last pass (what a pass meanwhile had to read).
  [[nodiscard]] uint64_t lag_records() const { return lag_records_; }
  [[nodiscard]] size_t followed_count() const { return followed_count_; }
  [[nodiscard]] uint64_t commits_applied() const { return restore_->commits_applied(); }
  // The windows a followed partition's changelog closed, with the instant, as far as this
  // standby read it.
  [[nodiscard]] std::map<WindowDay, int64_t> ClosesOf(SourcePartition owner) const;
  [[nodiscard]] StateStore& store() { return store_; }

 private:
  friend class KafkaChangelog;
  explicit Standby(StateStore& store) : store_(store) {}
  StateStore& store_;
  std::unique_ptr<ChangelogRestore> restore_;
  std::map<SourcePartition, Position> positions_;
  size_t followed_count_ = 0;
  uint64_t lag_records_ = 0;
};

class KafkaChangelog final : public ChangelogSink {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<KafkaChangelog>> Create(KafkaChangelogOptions options);
  ~KafkaChangelog() override;
  KafkaChangelog(const KafkaChangelog&) = delete;
  KafkaChangelog& operator=(const KafkaChangelog&) = delete;

  // Makes this instance the owner of `owner`: restores its state into `store` (whose ledger must
  // not be running), fences every earlier owner and takes the next epoch. A changelog that was
  // truncated or has a gap is refused (DataLoss naming what is missing) and the partition is not
  // claimed; so is a record of another partition (a changelog topic with other partitions than
  // its source). A store whose state of the partition diverged from the changelog (it committed
  // as a zombie) drops that state and restores the partition from the changelog's start.
  [[nodiscard]] absl::StatusOr<ClaimResult> Claim(StateStore& store, SourcePartition owner);
  // The same for several partitions at once (what one assignment gives), in order; on an error
  // none of them is claimed. A partition in `read_from` is read from that offset of its changelog
  // on (the store holds the state of everything before it: a standby's copy), the others from
  // their oldest record.
  [[nodiscard]] absl::StatusOr<std::vector<ClaimResult>> Claim(StateStore& store,
                                                               std::span<const SourcePartition> owners,
                                                               std::map<SourcePartition, int64_t> read_from = {});
  // Restores into `store` (a store of its own, not this instance's) the state of every one of
  // `owners` through the commit that closed `day` in its changelog, without claiming anything:
  // what the owner of the coordinating partition merges a window's file set from (docs/
  // scale-out.md, section 5). A partition whose changelog has not closed the window yet is
  // restored to its end and named in not_closed. Refusals as Claim's.
  [[nodiscard]] absl::StatusOr<WindowRestoreResult> RestoreWindow(StateStore& store, WindowDay day,
                                                                  std::span<const SourcePartition> owners);
  // The same in passes: Start, then ContinueWindowRestore until result().not_closed is empty.
  // An error leaves the restore unusable (start again on a new store).
  [[nodiscard]] absl::StatusOr<std::unique_ptr<WindowRestore>> StartWindowRestore(
      StateStore& store, WindowDay day, std::span<const SourcePartition> owners);
  [[nodiscard]] absl::Status ContinueWindowRestore(WindowRestore& restore);
  // A standby on `store` (a store of its own, never the instance's), going on from what it holds.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Standby>> StartStandby(StateStore& store);
  // One pass of a standby: reads each of `followed` on from where the last pass stopped (from its
  // oldest record the first time) to its end, applies it to the standby's store and flushes. An
  // error (a changelog the standby cannot restore, a broker that does not answer) leaves the
  // standby unusable: start another on the same store.
  [[nodiscard]] absl::Status ContinueStandby(Standby& standby, std::span<const SourcePartition> followed);
  // Whether this instance still owns `owner` as far as the changelog says: it claimed it and no
  // fence of a later epoch followed its own (another instance claimed it since, and this one is a
  // zombie that has not noticed). Reads the changelog from this instance's fence to its end.
  [[nodiscard]] absl::StatusOr<bool> StillOwns(SourcePartition owner);
  // Forgets `owner` (it was revoked): a commit of it would be refused.
  void Release(SourcePartition owner);

  // ChangelogSink. A record of a partition this instance has not claimed is refused.
  [[nodiscard]] uint64_t EpochOf(SourcePartition owner) const override;
  [[nodiscard]] std::vector<SourcePartition> Owned() const override;
  [[nodiscard]] absl::Status Append(std::span<const ChangelogRecord> records) override;
  [[nodiscard]] bool SnapshotDue(SourcePartition owner) const override;
  [[nodiscard]] absl::Status AppendSnapshot(SourcePartition owner, std::span<const std::string> chunks) override;

  [[nodiscard]] std::string TopicOf(SourceTopic topic) const;
  // Records and bytes appended so far.
  [[nodiscard]] uint64_t records_appended() const;
  [[nodiscard]] uint64_t bytes_appended() const;
  // Snapshots and their bytes appended so far (also in records_ and bytes_appended).
  [[nodiscard]] uint64_t snapshots_appended() const;
  [[nodiscard]] uint64_t snapshot_bytes_appended() const;

  // The changelog producer's largest record (a commit's changes of one partition); a real
  // broker's max.message.bytes of the changelog topics must be at least this.
  static constexpr int64_t kRecordBytesMax = 64 << 20;

 private:
  struct Impl;
  explicit KafkaChangelog(std::unique_ptr<Impl> impl);
  // Claim without the rebuild: `diverged` names the partition the restore refused as
  // changelog_diverged.
  [[nodiscard]] absl::StatusOr<std::vector<ClaimResult>> ClaimAll(StateStore& store,
                                                                  std::span<const SourcePartition> owners,
                                                                  const std::map<SourcePartition, int64_t>& read_from,
                                                                  std::optional<SourcePartition>& diverged);
  // How much of a partition's changelog lies after its last complete snapshot, and that
  // snapshot's size: when the next one is due.
  struct SnapshotPolicy {
    uint64_t tail_bytes = 0;
    uint64_t last_snapshot_bytes = 0;
    uint64_t reading_snapshot_bytes = 0;  // of the snapshot whose chunks a claim is reading
  };
  // Restores one partition through `restore` (not flushed) and appends its fence.
  [[nodiscard]] absl::StatusOr<ClaimResult> ClaimOne(ChangelogRestore& restore, PartitionReader& reader,
                                                     SourcePartition owner, int64_t read_from, SnapshotPolicy& policy);
  std::unique_ptr<Impl> impl_;
};

}  // namespace yrd::kafka
