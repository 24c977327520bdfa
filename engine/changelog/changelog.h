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
// after it, a commit record of an earlier epoch (a zombie's) changes nothing.
//
// ChangelogRestore applies the records of a changelog to a store in their order: a commit
// numbered next is applied, a repeat skipped, a zombie's ignored, and a changelog that skips a
// number (a gap, or its start dropped by the broker) is refused, never restored into wrong state.
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

enum class ChangelogKind : uint8_t { kCommit = 1, kFence = 2 };

// The partition whose owner writes the file set a consumer group merges from every partition's
// changelog (docs/scale-out.md, section 5).
inline constexpr SourcePartition kCoordinatingPartition{SourceTopic::kTaps, 0};

struct ChangelogHeader {
  ChangelogKind kind = ChangelogKind::kCommit;
  SourcePartition owner;
  uint64_t epoch = 0;
  uint64_t number = 0;      // commit: the owner's commit number (from 1); fence: 0
  int64_t next_offset = 0;  // commit: the owner's next source offset once it is applied, or
                            // kNoNextOffset when the owner has consumed none of it
};
inline constexpr int64_t kNoNextOffset = -1;
[[nodiscard]] bool DecodeChangelogHeader(std::string_view record, ChangelogHeader& out);

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
  // The record; the builder is empty again.
  void Finish(std::string& out);

 private:
  struct Section {
    uint32_t count = 0;
    std::string bytes;
  };
  ChangelogHeader header_;
  Section txn_, counters_, gross_, applied_, exceptions_, closes_;
  std::string scratch_;
};

// A fence record: `epoch` owns `owner` from here on.
void EncodeChangelogFence(SourcePartition owner, uint64_t epoch, std::string& out);

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
// share out of the netting lines' checkpoints; the other owners' state is untouched. A restore
// then applies the owner's changelog from its start: what a store that diverged from the
// changelog (`changelog_diverged`: it went on as a zombie) does before it claims the partition
// again. One synced write.
[[nodiscard]] absl::Status DropOwnerState(StateStore& store, SourcePartition owner);

// What Apply did with one record.
enum class RestoreStep : uint8_t {
  kApplied = 0,    // a commit numbered next: its changes are in the store (at the next Flush)
  kRepeat = 1,     // a commit the store already holds
  kFencedOut = 2,  // a commit of an epoch a fence closed: a zombie's, changes nothing
  kFence = 3,      // a fence: later commits of earlier epochs change nothing
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
  // are not put back (its files are written and its records were deleted on purpose). A record
  // that skips a commit number is refused with DataLoss naming what is missing
  // (`changelog_truncated` when it is the first record read for its owner, `changelog_gap`
  // after), and a damaged one with DataLoss; nothing of it is applied,
  // and every later Apply and Flush returns the same error (what was flushed before stands). A
  // store that holds commits the changelog's history does not (it went on as a zombie) is refused
  // with FailedPrecondition (`changelog_diverged`).
  [[nodiscard]] absl::StatusOr<RestoreStep> Apply(std::string_view record);
  // Writes what was applied, synced.
  [[nodiscard]] absl::Status Flush();

  // The owner's progress as applied so far (written or pending).
  [[nodiscard]] ChangelogProgress progress(SourcePartition owner) const;
  // Commit records applied so far.
  [[nodiscard]] uint64_t commits_applied() const { return commits_applied_; }
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
  [[nodiscard]] absl::Status ApplyCommit(const ChangelogHeader& header, std::string_view body, size_t section_count);
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
  LineIds line_ids_;
  uint64_t commit_sequence_ = 0;
  std::map<SourcePartition, ChangelogProgress> progress_;
  std::map<SourcePartition, bool> seen_;  // owners with a record read by this restore
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
