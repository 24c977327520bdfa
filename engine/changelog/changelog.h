// Changelog: a source partition's committed state changes as a stream of records, so that
// another instance can rebuild exactly the state of the partition's last commit and resume at the
// offset that state reflects (docs/scale-out.md, section 4).
//
// A commit record holds what one commit changed of one partition (its owner): the transaction
// records it wrote, the window counters and partition gross it touched, its applied records and
// its exceptions, with the owner's next source offset once it is applied. Records name their
// lines by key, not by the writing store's line numbers, so any store can take them. An owner's
// commit records are numbered consecutively from 1 and carry the owner's epoch (the consumer
// group's generation at which the instance got the partition); a fence record opens an epoch:
// after it, or after any record of a later epoch (the broker may have dropped the fence with the
// oldest records), a record of an earlier epoch (a zombie's) changes nothing.
//
// A snapshot holds a partition's whole state as of one of its commits, in chunks (the six sections
// of a commit record, with the days whose records it does not carry): the owner appends one when
// the partition's changelog has grown enough since the last, so that a restore needs only the
// last complete snapshot and the commits after it, and the broker may drop what came before.
//
// ChangelogRestore applies the records of a changelog to a store in their order: a commit
// numbered next is applied, a repeat skipped, a zombie's ignored; a store that lacks commits the
// changelog no longer holds starts again from a complete snapshot, and one that finds none (a gap,
// or the changelog's start dropped by the broker with no snapshot after) is refused, never
// restored into wrong state.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/store/records.h"
#include "engine/store/state_store.h"

namespace yrd {

enum class ChangelogKind : uint8_t { kCommit = 1, kFence = 2, kSnapshot = 3 };

// The partition whose owner writes the file set a consumer group merges from every partition's
// changelog (docs/scale-out.md, section 5).
inline constexpr SourcePartition kCoordinatingPartition{SourceTopic::kTaps, 0};

struct ChangelogHeader {
  ChangelogKind kind = ChangelogKind::kCommit;
  SourcePartition owner;
  uint64_t epoch = 0;
  uint64_t number = 0;      // commit: the owner's commit number (from 1); snapshot: the number
                            // of the commit whose state it holds; fence: 0
  int64_t next_offset = 0;  // commit, snapshot: the owner's next source offset once it is
                            // applied, or kNoNextOffset when the owner has consumed none of it
};
inline constexpr int64_t kNoNextOffset = -1;
[[nodiscard]] bool DecodeChangelogHeader(std::string_view record, ChangelogHeader& out);
// A snapshot chunk's place: its index (from 0) and whether it is the snapshot's last.
struct SnapshotChunk {
  uint32_t index = 0;
  bool last = false;
};
// False unless `record` is a snapshot chunk.
[[nodiscard]] bool DecodeSnapshotChunk(std::string_view record, SnapshotChunk& out);

// One record of an owner's changelog, as the ledger hands it to its sink.
struct ChangelogRecord {
  SourcePartition owner;
  uint64_t number = 0;
  std::string bytes;
};

// Builds one commit record. The line keys the added records name come from `line_ids`.
class ChangelogRecordBuilder {
 public:
  void Start(const ChangelogHeader& header);
  // A transaction record as stored (naming its line by number) under its kTxn key.
  [[nodiscard]] bool AddTxnRecord(std::string_view txn_key, const TxnRecord& record, const LineIds& line_ids);
  void AddCounters(WindowDay day, const WindowCounters& counters);
  void AddGross(WindowDay day, int64_t gross_fen);
  // One kApplied value (a blob of applied records numbering their lines) under its number.
  [[nodiscard]] bool AddApplied(WindowDay day, uint64_t number, std::string_view blob, const LineIds& line_ids);
  void AddException(std::string_view key, std::string_view value);
  // The commit closed `day` at `closed_at_ms` for the owner: the owner's report that its share of
  // the window is complete (docs/scale-out.md, section 5).
  void AddWindowClosed(WindowDay day, int64_t closed_at_ms);
  // A snapshot only: a day with the owner's counters whose records the snapshot does not carry.
  void AddDayNotCarried(WindowDay day);
  // The record; the builder is empty again.
  void Finish(std::string& out);
  // A snapshot chunk (Start with a kSnapshot header); the builder is empty again.
  void FinishSnapshotChunk(SnapshotChunk chunk, std::string& out);
  // The bytes of the sections added so far.
  [[nodiscard]] size_t size_bytes() const;

 private:
  struct Section {
    uint32_t count = 0;
    std::string bytes;
  };
  ChangelogHeader header_;
  void FinishSections(std::string& out);
  Section txn_, counters_, gross_, applied_, exceptions_, closes_, not_carried_;
  std::string scratch_;
};

// A fence record: `epoch` owns `owner` from here on.
void EncodeChangelogFence(SourcePartition owner, uint64_t epoch, std::string& out);

// A snapshot is cut into chunks of about this many bytes (a record the broker takes).
inline constexpr size_t kSnapshotChunkBytes = 256 << 10;
// Which windows a snapshot carries.
enum class SnapshotScope : uint8_t {
  kWindowsWithoutFiles = 0,  // what a restore needs to go on: a changelog's snapshots
  kWindowsKept = 1,          // every window whose records the store keeps (not retired): a copy
                             // between two local stores
};
// The chunks of a snapshot of `owner`'s state in `store` as of its commit `number` of `epoch`
// (the store must hold exactly that commit of it: the ledger's commit thread calls this right
// after writing it). It carries the owner's transaction records, next offset, and the counters,
// gross, applied records, exceptions and close of the windows `scope` says; the other windows the
// owner has counters in are named as not carried.
[[nodiscard]] absl::Status BuildOwnerSnapshot(StateStore& store, SourcePartition owner, uint64_t epoch,
                                              uint64_t number, std::vector<std::string>& chunks,
                                              size_t chunk_bytes = kSnapshotChunkBytes,
                                              SnapshotScope scope = SnapshotScope::kWindowsWithoutFiles);

// Deletes from `store` (a standby's, which no ledger writes) the applied records and exceptions of
// window `day`, which the instance's own store retired, and records it retired at `retired_at_ms`
// so that no restore puts them back. One synced write.
[[nodiscard]] absl::Status RetireWindowRecords(StateStore& store, WindowDay day, int64_t retired_at_ms);

// Copies `owner`'s state from `from` (a standby's store, which follows the owner's changelog) to
// `into` (whose ledger is not running) when `from` holds a later commit of it: what `into` held of
// the owner is replaced, every window `from` keeps included, with `from`'s changelog progress.
// Returns whether it copied. The stores may not be written meanwhile.
[[nodiscard]] absl::StatusOr<bool> CopyOwnerState(StateStore& from, StateStore& into, SourcePartition owner);

// Where the ledger's commit records go. Thread-safe as documented per method.
class ChangelogSink {
 public:
  virtual ~ChangelogSink() = default;
  // The epoch under which this instance owns `owner`; called on the ledger thread.
  [[nodiscard]] virtual uint64_t EpochOf(SourcePartition owner) const = 0;
  // Every partition this instance owns (claimed), in order: a commit that closes a window
  // appends a record for each of them, idle ones included. Called on the ledger thread.
  [[nodiscard]] virtual std::vector<SourcePartition> Owned() const = 0;
  // Appends the records of one commit (one per owner it changed) and returns once every one is
  // durable in the changelog; the commit is written to the store only after. Called on the
  // commit thread, in commit order.
  [[nodiscard]] virtual absl::Status Append(std::span<const ChangelogRecord> records) = 0;
  // Whether `owner`'s changelog has grown enough since its last snapshot for another: the commit
  // thread then appends one (BuildOwnerSnapshot) right after the commit it wrote. Called on the
  // commit thread.
  [[nodiscard]] virtual bool SnapshotDue(SourcePartition owner) const = 0;
  // Appends the chunks of a snapshot of `owner` and returns once every one is durable. Called on
  // the commit thread, between two commits.
  [[nodiscard]] virtual absl::Status AppendSnapshot(SourcePartition owner, std::span<const std::string> chunks) = 0;
};

// How much of an owner's changelog a store holds (kMeta ChangelogProgressKey): the number and
// epoch of its last commit record, and the epoch of the last fence.
struct ChangelogProgress {
  uint64_t number = 0;
  uint64_t epoch = 0;
  uint64_t fence_epoch = 0;
  bool operator==(const ChangelogProgress&) const = default;
};
void EncodeChangelogProgress(const ChangelogProgress& progress, std::string& out);
[[nodiscard]] bool DecodeChangelogProgress(std::string_view bytes, ChangelogProgress& out);
// Every owner's progress a store holds.
[[nodiscard]] absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> ReadChangelogProgress(StateStore& store);

// Drops from `store` (whose ledger is not running) everything it holds of `owner`'s state: its
// transaction records (sorted and recent), applied records, counters, partition gross,
// exceptions, next offset, netting-line marker and changelog progress, and takes the owner's
// share out of the netting lines' checkpoints, and forgets which windows lack its records; the
// other owners' state is untouched. A restore then applies the owner's changelog from its start
// or from a snapshot: what a store that diverged from the changelog (`changelog_diverged`: it went
// on as a zombie) does before it claims the partition again, and what a restore does before it
// applies a snapshot. One synced write.
[[nodiscard]] absl::Status DropOwnerState(StateStore& store, SourcePartition owner);

// What Apply did with one record.
enum class RestoreStep : uint8_t {
  kApplied = 0,       // a commit numbered next, or a snapshot's last chunk: its changes are in
                      // the store (at the next Flush)
  kRepeat = 1,        // a commit or snapshot the store already holds
  kFencedOut = 2,     // a commit or snapshot of an epoch a later one closed: a zombie's, changes
                      // nothing
  kFence = 3,         // a fence: later commits of earlier epochs change nothing
  kBehind = 4,        // a commit past the next number: the store lacks commits the changelog no
                      // longer holds, and waits for a snapshot
  kSnapshotPart = 5,  // a snapshot chunk before the last, kept until the last one (or one the
                      // store cannot use: its first chunks are not in the changelog)
};

// Applies changelog records to a store whose ledger is not running (the ledger reads the result
// when it loads). Records of several owners may be applied through one restore.
class ChangelogRestore {
 public:
  // Upgrades a store of an earlier format (engine/upgrade) and reads its line numbers, commit
  // sequence and changelog progress.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ChangelogRestore>> Open(StateStore& store);

  // Applies one record; the changes are written by Flush (or by an Apply whose pending write
  // grew past kPendingBytesMax). The applied records and exceptions of a window the store retired
  // are not put back (its files are written and its records were deleted on purpose). A commit
  // that skips a number leaves its owner behind (kBehind): its later commits are skipped until a
  // complete snapshot of a later commit comes, which replaces everything the store held of the
  // owner (DropOwnerState, then the snapshot's state in one write, with a kLackingShareKeyPrefix
  // record for each window it does not carry). A damaged record is refused with DataLoss; nothing
  // of it is applied, and every later Apply and Flush returns the same error (what was flushed
  // before stands). A store that holds commits the changelog's history does not (it went on as a
  // zombie) is refused with FailedPrecondition (`changelog_diverged`).
  [[nodiscard]] absl::StatusOr<RestoreStep> Apply(std::string_view record);
  // Writes what was applied, synced.
  [[nodiscard]] absl::Status Flush();
  // Flush once every record is read: an owner still behind is refused with DataLoss naming what
  // is missing (`changelog_truncated` when its first record read was past the store's next,
  // `changelog_gap` after), and nothing more is written.
  [[nodiscard]] absl::Status Finish();
  // Whether an owner is behind and the chunks of a snapshot it can use have begun: a reader that
  // stopped at the changelog's end may find the rest on its next read.
  [[nodiscard]] bool AwaitingSnapshotChunks() const;

  // The owner's progress as applied so far (written or pending).
  [[nodiscard]] ChangelogProgress progress(SourcePartition owner) const;
  // Commit records applied so far.
  [[nodiscard]] uint64_t commits_applied() const { return commits_applied_; }
  // Snapshots applied so far.
  [[nodiscard]] uint64_t snapshots_applied() const { return snapshots_applied_; }
  // The owner whose changelog Apply refused as `changelog_diverged`, if it did.
  [[nodiscard]] std::optional<SourcePartition> diverged() const { return diverged_; }
  // The windows the applied commits closed, with the earliest instant a commit closed each at:
  // a claimer closes them too before it consumes the partition.
  [[nodiscard]] const std::map<WindowDay, int64_t>& windows_closed() const { return windows_closed_; }
  // Whether a commit of `owner` applied by this restore closed `day`.
  [[nodiscard]] bool Closed(SourcePartition owner, WindowDay day) const {
    const auto it = closed_by_owner_.find(owner);
    return it != closed_by_owner_.end() && it->second.contains(day);
  }

  // A pending write is flushed once it holds this many bytes.
  static constexpr size_t kPendingBytesMax = 8 << 20;

 private:
  explicit ChangelogRestore(StateStore& store) : store_(store), write_(store.NewWriteBatch()) {}
  [[nodiscard]] absl::StatusOr<RestoreStep> ApplyOne(std::string_view record);
  // Applies the commit numbered next for its owner (whose progress is `progress`).
  [[nodiscard]] absl::StatusOr<RestoreStep> ApplyCommit(const ChangelogHeader& header, std::string_view record,
                                                        ChangelogProgress& progress);
  [[nodiscard]] absl::StatusOr<RestoreStep> ApplySnapshotChunk(const ChangelogHeader& header, std::string_view record);
  // Replaces what the store holds of the snapshot's owner by its state.
  [[nodiscard]] absl::Status ApplySnapshot(SourcePartition owner);
  // What a record's sections hold, read and checked: puts_ (the store's changes but its new line
  // numbers, which line_id_puts_ holds), recent_entries_, closes_.
  [[nodiscard]] absl::Status ReadSections(const ChangelogHeader& header, std::string_view body, size_t section_count);
  [[nodiscard]] absl::Status WritePending();
  // A commit record's section: its entry count and bytes. Each Queue* reads one section of
  // `owner`'s record into puts_ (false for a damaged one, which changes nothing).
  using Section = std::pair<uint32_t, std::string_view>;
  [[nodiscard]] bool QueueTxnRecords(SourcePartition owner, const Section& section, std::string& recent_entries);
  [[nodiscard]] bool QueueCounters(SourcePartition owner, const Section& section);
  [[nodiscard]] bool QueueGross(SourcePartition owner, const Section& section);
  [[nodiscard]] bool QueueAppliedRecords(SourcePartition owner, const Section& section);
  [[nodiscard]] bool QueueExceptions(SourcePartition owner, const Section& section);
  // Queues a change of the record being applied; it joins the pending write once the whole
  // record is read.
  void Put(Table table, std::string_view key, std::string_view value);
  // The store's number of `line_key`, given now (and stored with the pending write) if new.
  uint32_t LocalLineId(std::string_view line_key);

  StateStore& store_;
  std::unique_ptr<StateWriteBatch> write_;
  bool pending_ = false;
  absl::Status failure_;
  struct PendingPut {
    Table table;
    std::string key, value;
  };
  std::vector<PendingPut> puts_;
  std::vector<PendingPut> line_id_puts_;
  std::string recent_entries_;
  std::vector<std::pair<WindowDay, int64_t>> closes_;
  std::vector<WindowDay> not_carried_;
  // An owner whose next commit the changelog lacks: the first number found past it, and whether
  // that was the first record read of the owner.
  struct Behind {
    uint64_t held_through = 0;
    uint64_t found = 0;
    bool first_read = false;
  };
  std::map<SourcePartition, Behind> behind_;
  // The snapshot being read for an owner that is behind, until its last chunk.
  struct SnapshotRead {
    uint64_t number = 0;
    uint64_t epoch = 0;
    int64_t next_offset = 0;
    uint32_t next_chunk = 0;
    std::vector<PendingPut> puts;
    std::string recent_entries;
    std::vector<std::pair<WindowDay, int64_t>> closes;
    std::set<WindowDay> not_carried;
  };
  std::map<SourcePartition, SnapshotRead> snapshots_;
  uint64_t snapshots_applied_ = 0;
  LineIds line_ids_;
  uint64_t commit_sequence_ = 0;
  std::map<SourcePartition, ChangelogProgress> progress_;
  std::map<SourcePartition, bool> seen_;  // owners with a commit record read by this restore
  std::map<SourcePartition, uint64_t> fence_read_;  // the last fence's epoch read by this restore
  uint64_t commits_applied_ = 0;
  std::optional<SourcePartition> diverged_;
  std::set<WindowDay> retired_;  // the store's retired windows: their records are not restored
  std::map<WindowDay, int64_t> windows_closed_;
  std::map<SourcePartition, std::set<WindowDay>> closed_by_owner_;
  std::string recent_blob_;  // the transaction records of the pending write (one kRecentTxn value)
  std::string key_scratch_;
  std::string value_scratch_;
  std::string blob_scratch_;
};

}  // namespace yrd
