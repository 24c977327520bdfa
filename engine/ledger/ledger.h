// Ledger: the apply stage, a thin orchestrator of the parts that decide and record a batch. For
// each decoded batch it finds the transaction records the batch names (DedupIndex), routes each
// event to its window (WindowBook), judges it against those records (rules/), applies it: its
// record changes, its money nets into a line (LineBook), its window counts it; and records every
// applied event (for the detail files) and every rejection (the exception store and the
// dead-letter copy). All of it goes with the batch's Kafka offsets into one atomic, synced store
// write. At start it loads the parts from the store, so a restart continues exactly where the
// last commit ended.
//
// Apply does a batch start to end on one thread. A pipeline splits it: Prepare, on the ledger
// thread, decides every slot's fate and builds the batch's store write; Commit, on the commit
// thread, writes it, so the ledger prepares the next batch while the store inserts and syncs the
// last one. Batches are committed in the order they were prepared; at most kPreparedAheadMax
// batches are prepared and not yet committed (Prepare waits), and Prepare sees the transaction
// records of those batches as if they were already stored, so a duplicate or a refund in the
// next batch is decided exactly as without the overlap.
//
// Every method belongs to the ledger thread but Commit (the commit thread) and the accessors
// documented as thread-safe. After a failed store write or a failed Prepare the ledger refuses
// every later batch (failed() is set), including one already prepared; the process reopens the
// store to recover.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/base/window.h"
#include "engine/batch/batch.h"
#include "engine/changelog/changelog.h"
#include "engine/dedup/dedup_index.h"
#include "engine/netting/line_book.h"
#include "engine/store/owner_cache.h"
#include "engine/store/records.h"
#include "engine/store/state_store.h"
#include "engine/windows/window_book.h"

namespace yrd {

struct LedgerOptions {
  WindowCalendar calendar;
  // A stored transaction record whose event occurred more than this long before the batch
  // clock counts as absent, whether or not a compaction has purged it yet (the store's filter
  // purges the same records), so a decision never depends on when a compaction ran. Config
  // clearing.dedup_horizon_days; must equal DecodeLimits::dedup_horizon_ms.
  int64_t dedup_horizon_ms = DecodeLimits{}.dedup_horizon_ms;
  // Keep each rejected message's dead-letter copy in the store until the source reports it
  // delivered (Batch::dead_letters_delivered_through); on for a daemon that copies to yrd.dlq.
  bool keep_dead_letters = false;
  // Seals each kept copy's payload (required with keep_dead_letters); owned by the caller, used
  // on the ledger thread only.
  PayloadSealer* dead_letter_sealer = nullptr;
  // What a copy carries of the message (config kafka.dead_letter_payload): kOriginal or kRedacted.
  DeadLetterPayload dead_letter_payload = DeadLetterPayload::kOriginal;
  // Transaction records kept in memory (and in kRecentTxn) before they are sorted into kTxn.
  // Memory: about 150 bytes a record, up to twice as many while a sort runs (a batch that finds
  // that many waits for the sort). Config key store.recent_txn_records_max.
  uint64_t recent_txn_records_max = 1'000'000;
  // The netting lines are written to kLines every this many applied events (and in a commit
  // that closes a window); between those checkpoints the applied records of kApplied complete
  // them (ReadWindowLines), so a commit does not rewrite every line it touched. A start replays
  // at most this many applied records. Config key store.lines_checkpoint_applied_max.
  uint64_t lines_checkpoint_applied_max = 500'000;
  // When set (a member of a consumer group), every commit's changes of each partition it touched
  // go to that partition's changelog first (engine/changelog): the store is written only once
  // the sink has them durably, so the local store is never ahead of the changelog. Owned by the
  // caller.
  ChangelogSink* changelog = nullptr;
};

class Ledger final : private CommitProgress {
 public:
  Ledger(StateStore& store, LedgerOptions options);
  ~Ledger() override;
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Loads offsets, window states, counters and partition gross, the lines of every window not
  // closed yet (the last checkpoint completed by the applied records after it) and the recent
  // transaction records.
  [[nodiscard]] absl::Status Load(int64_t now_ms);
  // Reads the parts back from the store after something other than this ledger changed it (a
  // partition's state restored from its changelog, engine/changelog). Only while no batch is
  // prepared and not committed (the pipeline drained, its threads idle); FailedPrecondition
  // otherwise. On another error the ledger is failed.
  [[nodiscard]] absl::Status Reload(int64_t now_ms);

  // Applies and durably commits one batch; on OK every slot has its fate, reason and window.
  // On error nothing of the batch is acknowledged and the ledger is failed.
  [[nodiscard]] absl::Status Apply(Batch& batch, BatchResult& result);

  // The first half of Apply: on OK every slot has its fate, reason and window, the batch's
  // figures are in `batch.ledger_result`, and its write waits for Commit. Nothing is
  // acknowledged yet. On error the ledger is failed.
  [[nodiscard]] absl::Status Prepare(Batch& batch);
  // The second half: writes the oldest prepared batch, which must be `batch`. On OK the batch
  // is durable and the committed offsets, sequence and window table move to it. Called from
  // one thread (the commit thread), which may differ from the ledger thread.
  [[nodiscard]] absl::Status Commit(Batch& batch);
  static constexpr uint64_t kPreparedAheadMax = 2;

  // Recent transaction records older than this are sorted into the dedup table even when few.
  static constexpr int64_t kRecentTxnAgeMaxMs = DedupIndex::kRecentAgeMaxMs;
  // Waits for a running sort into the dedup table to end and takes its outcome (tests; a batch
  // takes it without waiting once it is done). An error fails the ledger.
  [[nodiscard]] absl::Status AwaitRecentTxnSort();
  // Recent transaction records held in memory, including a set being sorted. Thread-safe.
  [[nodiscard]] uint64_t recent_txn_records() const {
    std::shared_lock<std::shared_mutex> lock(parts_mutex_);
    return dedup_->records_held();
  }
  // Sorts into the dedup table finished so far (since the last Reload). Thread-safe.
  [[nodiscard]] uint64_t recent_txn_sorts() const {
    std::shared_lock<std::shared_mutex> lock(parts_mutex_);
    return dedup_->sorts();
  }
  // Netting lines held in memory: those of the windows not closed. Ledger thread.
  [[nodiscard]] size_t lines_held() const { return lines_->lines_held(); }

  // The next offset to consume per partition, as committed. Read it while no batch is in flight.
  [[nodiscard]] const PartitionOffsets& offsets() const { return offsets_; }
  // The next offset of one partition as committed, nullopt when it has none. Thread-safe.
  [[nodiscard]] std::optional<int64_t> CommittedOffset(SourceTopic topic, int32_t partition) const;
  // Windows with activity or a persisted state, as of the last commit. Thread-safe.
  [[nodiscard]] std::shared_ptr<const WindowTable> windows() const { return published_windows_.load(); }
  // Windows closed but whose files are not written yet (to resume after a restart).
  [[nodiscard]] std::vector<WindowDay> WindowsAwaitingFiles() const { return windows_->AwaitingFiles(); }
  [[nodiscard]] WindowDay OldestOpenWindow(int64_t now_ms) const { return windows_->OldestOpenWindow(now_ms); }
  [[nodiscard]] bool failed() const override { return failed_.load(std::memory_order_acquire); }
  // The sequence of the last committed write. Thread-safe.
  [[nodiscard]] uint64_t commit_sequence() const { return commit_sequence_.load(std::memory_order_acquire); }

 private:
  // A prepared batch's write, waiting for Commit.
  struct PreparedWrite {
    std::unique_ptr<StateWriteBatch> write;
    bool write_needed = false;  // false for an idle tick: nothing to store
    uint64_t sequence = 0;      // the commit sequence it stores
    PartitionOffsets offsets;   // next offsets once it is committed
    std::shared_ptr<const WindowTable> windows;
    std::vector<ChangelogRecord> changelog;  // with options.changelog: appended before the write
  };

  // CommitProgress, for the dedup index's sort thread.
  [[nodiscard]] uint64_t committed_sequence() const override { return commit_sequence(); }
  [[nodiscard]] absl::Status Failure() const override;
  void Fail(const absl::Status& status);

  // Load without the upgrade: every part from the store.
  [[nodiscard]] absl::Status LoadParts(int64_t now_ms);
  [[nodiscard]] absl::Status LoadOffsets();
  // Waits until fewer than kPreparedAheadMax batches are prepared and not committed.
  [[nodiscard]] absl::Status WaitForPreparedRoom();
  // Gives every pending slot its transaction state (and its original's), and finds them.
  [[nodiscard]] absl::Status LookUpBatch(Batch& batch);
  void ApplySlot(MessageSlot& slot, size_t slot_index, WindowDay oldest_open, int64_t now_ms, BatchResult& result);
  void Reject(MessageSlot& slot, Reason reason, RejectionDetail detail, WindowDay oldest_open, int64_t now_ms);
  // Changes the records and the line of an event the rules let through; returns its line.
  [[nodiscard]] uint32_t ApplyEffects(MessageSlot& slot, TxnState& self, TxnState* original);
  void RecordApplied(const MessageSlot& slot, uint32_t line);
  void BuildWrite(const Batch& batch, PreparedWrite& prepared);
  void AppendRejections(const Batch& batch, uint64_t sequence, StateWriteBatch& write);
  void AppendOffsets(const Batch& batch, uint64_t sequence, PreparedWrite& prepared);
  // With options.changelog: one commit record per owner the batch changed, and their progress.
  void BuildChangelog(const Batch& batch, PreparedWrite& prepared);
  [[nodiscard]] ChangelogRecordBuilder& ChangelogBuilderOf(SourcePartition owner);
  // On the commit thread after a commit's write: a snapshot of each owner whose changelog wants
  // one (ChangelogSink::SnapshotDue).
  [[nodiscard]] absl::Status AppendDueSnapshots(std::span<const ChangelogRecord> records);

  StateStore& store_;
  const LedgerOptions options_;
  std::atomic<bool> failed_{false};
  mutable std::mutex failure_mutex_;
  absl::Status failure_;  // guarded by failure_mutex_

  // Committed state, moved by Commit. Before the parts: the dedup index's sort thread, which the
  // index stops when it goes, reads commit_sequence_.
  std::atomic<uint64_t> commit_sequence_{0};
  mutable std::mutex offsets_mutex_;  // the commit thread's swap against CommittedOffset
  PartitionOffsets offsets_;

  // The parts, made again by Reload (exclusive on parts_mutex_, which the thread-safe accessors
  // of a part take shared).
  mutable std::shared_mutex parts_mutex_;
  std::optional<DedupIndex> dedup_;
  std::optional<LineBook> lines_;
  std::optional<WindowBook> windows_;

  std::atomic<std::shared_ptr<const WindowTable>> published_windows_;
  // Prepared state (the ledger thread): what the next batch builds on.
  uint64_t prepared_sequence_ = 0;
  uint64_t dead_letters_dropped_through_ = 0;  // the last range of copies a write deleted
  PartitionOffsets prepared_offsets_;
  std::array<PreparedWrite, kPreparedAheadMax> prepared_;
  uint64_t prepared_count_ = 0;              // batches prepared so far (ledger thread)
  std::atomic<uint64_t> finished_count_{0};  // of those, committed or given up (commit thread)

  // Per-batch scratch, reused so that steady state allocates nothing per message.
  int64_t horizon_start_ms_ = 0;  // records of events before this count as absent
  // Per slot of the batch: its own transaction state and its original's (kNoState if none).
  std::vector<std::array<uint32_t, 2>> slot_states_;
  // The applied records of the batch, per window and owner, and each owner's last one.
  std::map<std::pair<WindowDay, SourcePartition>, std::string> applied_blobs_;
  OwnerDayCache<std::string> applied_cache_;
  // The changelog: each owner's progress as prepared, and the records being built for a batch.
  std::map<SourcePartition, ChangelogProgress> changelog_progress_;
  struct ChangelogBuild {
    ChangelogRecordBuilder builder;
    uint64_t started_for = 0;  // the commit sequence whose record it builds
  };
  std::map<SourcePartition, ChangelogBuild> changelog_builds_;
  std::vector<std::string> snapshot_chunks_;  // the commit thread's
  std::vector<SourcePartition> changelog_owners_;  // those of the batch being built, in order
  SourcePartition last_changelog_owner_;           // the last one ChangelogBuilderOf gave
  ChangelogBuild* last_changelog_ = nullptr;
  DeadLetterScratch dead_letter_scratch_;
  std::string sealed_scratch_;
  std::string key_scratch_;
  std::string value_scratch_;
};

}  // namespace yrd
