// Ledger: the apply stage. For each decoded batch it deduplicates by txn_id (exact duplicate
// vs conflict), resolves refunds and cancellations against their originals, assigns windows
// (late events to the oldest open window), nets the money into lines, records every applied
// event and every exception, and writes all of it with the batch's Kafka offsets in one atomic,
// synced store write. It keeps the open windows' lines and counters in memory and loads them
// from the store at start, so a restart continues exactly where the last commit ended.
//
// Apply does a batch start to end on one thread. A pipeline splits it: Prepare, on the ledger
// thread, decides every slot's fate and builds the batch's store write; Commit, on the commit
// thread, writes it, so the ledger prepares the next batch while the store inserts and syncs the
// last one. Batches are committed in the order they were prepared; at most kPreparedAheadMax
// batches are prepared and not yet committed (Prepare waits), and Prepare sees the transaction
// records of those batches as if they were already stored, so a duplicate or a refund in the
// next batch is decided exactly as without the overlap.
//
// Transaction records (the dedup and refund state, one per txn_id) are the one write every
// event makes, under keys in no useful order. Each commit stores its records as one value in
// kRecentTxn, and the ledger keeps them in memory, indexed: the recent records. Once there are
// recent_txn_records_max of them (or the oldest is kRecentTxnAgeMaxMs old), the set is frozen
// and a sort thread sorts it and stores it into kTxn in one step (StateStore::IngestSorted),
// after the commits that wrote it; the next batch then deletes those commits' kRecentTxn
// values. Lookups go to the recent records, then the frozen set, then kTxn, so a record is
// found in the newest place that holds it. A crash anywhere in between leaves the records in
// kRecentTxn, in kTxn or in both with the same content: Load reads kRecentTxn back.
//
// The netting lines are kept in memory and written to kLines only at a checkpoint (every
// lines_checkpoint_applied_max applied events, and in the commit that closes a window), with
// kLinesThroughKey naming the commit they reflect; the applied records every commit writes
// complete them in between (ReadWindowLines, and Load for the windows not closed yet).
//
// Every other method belongs to the ledger thread, except the accessors documented as
// thread-safe. After a failed store write or
// a failed Prepare the ledger refuses every later batch (failed() is set), including one
// already prepared; the process reopens the store to recover.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/ledger/batch.h"
#include "engine/base/large_table.h"
#include "engine/store/records.h"
#include "engine/store/state_store.h"
#include "engine/base/strings.h"
#include "engine/base/window.h"
#include "engine/readers/store_readers.h"

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
};

// A window as the admin endpoint and the file writer see it.
struct WindowInfo {
  WindowState state = WindowState::kOpen;  // open/closing follow from the clock
  int64_t closed_at_ms = 0;
  int64_t files_written_at_ms = 0;
  int64_t retired_at_ms = 0;  // its records were deleted (WindowRecord::retired_at_ms)
  WindowCounters counters;
};
using WindowTable = std::map<WindowDay, WindowInfo>;

using PartitionOffsets = std::map<std::pair<SourceTopic, int32_t>, int64_t>;

class Ledger {
 public:
  Ledger(StateStore& store, LedgerOptions options);
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Loads offsets, window states, counters, the lines of every window not closed yet (the last
  // checkpoint completed by the applied records after it) and the recent transaction records.
  [[nodiscard]] absl::Status Load(int64_t now_ms);

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

  // Recent transaction records older than this (by the batch clock) are sorted into kTxn even
  // when there are fewer than recent_txn_records_max, so a quiet day's records do not stay in
  // memory and in kRecentTxn for ever.
  static constexpr int64_t kRecentTxnAgeMaxMs = 6 * 3'600'000;
  // The recent records' index is sized for recent_txn_records_max up front, but no more than
  // this (about 40 MB); beyond it, it grows as needed.
  static constexpr uint64_t kRecentTxnIndexReserveMax = 1 << 20;
  // Ledger thread: waits for a running sort into kTxn to end and takes its outcome (tests; a
  // batch takes it without waiting once it is done). An error fails the ledger.
  [[nodiscard]] absl::Status AwaitRecentTxnSort();
  // Recent transaction records held in memory, including a set being sorted. Thread-safe.
  [[nodiscard]] uint64_t recent_txn_records() const { return recent_txn_records_.load(std::memory_order_relaxed); }
  // Sorts into kTxn finished so far. Thread-safe.
  [[nodiscard]] uint64_t recent_txn_sorts() const { return recent_txn_sorts_.load(std::memory_order_relaxed); }

  // Netting lines held in memory: those of the windows not closed. Ledger thread.
  [[nodiscard]] size_t lines_held() const { return lines_.size(); }

  // The next offset to consume per partition, as committed. Read it while no batch is in flight.
  [[nodiscard]] const PartitionOffsets& offsets() const { return offsets_; }

  // Windows with activity or a persisted state, as of the last commit. Thread-safe.
  [[nodiscard]] std::shared_ptr<const WindowTable> windows() const { return published_windows_.load(); }
  // Windows closed but whose files are not written yet (to resume after a restart).
  [[nodiscard]] std::vector<WindowDay> WindowsAwaitingFiles() const;
  [[nodiscard]] bool failed() const { return failed_.load(std::memory_order_acquire); }
  // The sequence of the last committed write. Thread-safe.
  [[nodiscard]] uint64_t commit_sequence() const { return commit_sequence_.load(std::memory_order_acquire); }

  // The window an event of `occurred_at_ms` goes to at `now_ms`, and whether that makes it late.
  [[nodiscard]] std::pair<WindowDay, bool> RouteWindow(int64_t occurred_at_ms, int64_t now_ms) const;
  [[nodiscard]] WindowDay OldestOpenWindow(int64_t now_ms) const;

  // How far back OldestOpenWindow looks for an open window before giving up (an operator would
  // have had to close every day of a year in advance).
  static constexpr int32_t kOpenWindowSearchDaysMax = 366;

 private:
  struct TxnState {
    std::string key;
    bool exists = false;
    bool dirty = false;
    TxnRecord record;             // its line by line_id only (line_key is not kept)
    std::string original_txn_id;  // owned storage behind record.original_txn_id
  };
  struct LineEntry {
    std::string store_key;  // window + line key
    uint32_t line_id = kNoLineId;
    LineTotals totals;
    bool dirty = false;     // changed since the last checkpoint
  };
  struct CountersEntry {
    WindowCounters counters;
    uint64_t touched_sequence = 0;
  };

  [[nodiscard]] bool IsClosed(WindowDay day, int64_t now_ms) const;
  [[nodiscard]] WindowState PersistedState(WindowDay day) const;
  // Closes `day` at `closed_at_ms` with the registry's fee schedule, unless already closed.
  void CloseWindow(WindowDay day, int64_t closed_at_ms, const Registry& registry, Batch& batch);
  void ApplyWindowCommands(Batch& batch);
  [[nodiscard]] std::shared_ptr<const WindowTable> BuildWindowTable(int64_t now_ms) const;
  uint32_t StateFor(Family family, std::string_view txn_id);
  [[nodiscard]] absl::Status LookUpPending();
  void ApplySlot(MessageSlot& slot, size_t slot_index, WindowDay oldest_open, int64_t now_ms, BatchResult& result);
  void Reject(MessageSlot& slot, Reason reason, WindowDay oldest_open, int64_t now_ms);
  // The line of `line_key` (without window) in `day`, added when new.
  uint32_t LineIndex(WindowDay day, std::string_view line_key);
  // The line of a tap or a settlement, found by its registry entries (see line_routes_), which
  // belong to the batch's registry, held in line_routes_registry_.
  uint32_t RouteLine(WindowDay day, const DecodedEvent& event);
  // Marks a line changed since the last checkpoint and returns its totals.
  LineTotals& TouchLine(uint32_t index);
  // Forgets the lines of closed windows (checkpointed by the commit that closed them, and never
  // netted into again) and their applied-record buffers, so a daemon that runs for months holds
  // only what the open windows need.
  void ForgetClosedWindows();
  WindowCounters& TouchCounters(WindowDay day);
  // Adds `amount_fen` to the gross of the slot's partition in its window, unless that would
  // pass kPartitionWindowGrossFenMax (engine/base/money.h): then false, and nothing changes.
  [[nodiscard]] bool AddPartitionGross(const MessageSlot& slot, int64_t amount_fen);
  // Reads the partition gross records; a window not closed that has applied records but no
  // gross record (a store written before they were kept) gets its gross from those records.
  [[nodiscard]] absl::Status LoadPartitionGross();
  void RecordApplied(const MessageSlot& slot, uint32_t line);
  // A prepared batch's write, waiting for Commit.
  struct PreparedWrite {
    std::unique_ptr<StateWriteBatch> write;
    bool write_needed = false;  // false for an idle tick: nothing to store
    uint64_t sequence = 0;      // the commit sequence it stores
    PartitionOffsets offsets;   // next offsets once it is committed
    std::shared_ptr<const WindowTable> windows;
  };
  void BuildWrite(const Batch& batch, PreparedWrite& prepared);
  void Fail(const absl::Status& status);
  [[nodiscard]] absl::Status Failure() const;
  // Waits until fewer than kPreparedAheadMax batches are prepared and not committed.
  [[nodiscard]] absl::Status WaitForPreparedRoom();
  [[nodiscard]] bool AdoptRecord(TxnState& state, std::string_view bytes);
  // Applies a retirement: the window's records go with the batch's write (WindowCommand::kRetire).
  void RetireWindow(const WindowCommand& command, Batch& batch);
  void AppendRetirements(const Batch& batch, StateWriteBatch& write);

  StateStore& store_;
  LedgerOptions options_;
  std::atomic<bool> failed_{false};
  mutable std::mutex failure_mutex_;
  absl::Status failure_;  // guarded by failure_mutex_
  // Committed state, moved by Commit.
  std::atomic<uint64_t> commit_sequence_{0};
  PartitionOffsets offsets_;
  // Prepared state (the ledger thread): what the next batch builds on.
  uint64_t prepared_sequence_ = 0;
  uint64_t dead_letters_dropped_through_ = 0;  // the last range of copies a write deleted
  PartitionOffsets prepared_offsets_;
  std::array<PreparedWrite, kPreparedAheadMax> prepared_;
  uint64_t prepared_count_ = 0;                  // batches prepared so far (ledger thread)
  std::atomic<uint64_t> finished_count_{0};      // of those, committed or given up (commit thread)
  // The sort thread's nice value (Linux: per thread): it yields to the pipeline's threads.
  static constexpr int kSortThreadNice = 10;
  // How many keys ahead the large indexes are prefetched when many keys are looked up in turn.
  static constexpr size_t kPrefetchAhead = 8;
  // Recent transaction records: the kRecentTxn values of commits since the last sort into
  // kTxn, and an index of the newest record per key into them.
  struct RecentTxn {
    std::vector<std::unique_ptr<std::string>> blobs;  // never moved, so the views stay valid
    absl::flat_hash_map<std::string_view, std::string_view, StringHash, StringEq,
                        LargeTableAllocator<std::pair<const std::string_view, std::string_view>>>
        index;
    uint64_t records_written = 0;
    uint64_t through_sequence = 0;  // the last commit whose records are here
    int64_t started_at_ms = 0;      // the batch clock when its first record came
  };
  // Indexes the records of one commit's value; false if it is damaged.
  [[nodiscard]] static bool IndexRecentTxn(RecentTxn& recent, std::unique_ptr<std::string> blob);
  [[nodiscard]] absl::Status LoadRecentTxn(int64_t now_ms);
  [[nodiscard]] const std::string_view* FindRecentTxn(std::string_view key) const;
  // After a batch: hands the recent records to the sort thread when there are enough.
  void MaybeStartRecentTxnSort(int64_t now_ms);
  void SortRecentTxn();  // the sort thread
  void WakeSortThread();
  // Ledger thread: takes a finished sort's outcome.
  [[nodiscard]] absl::Status TakeRecentTxnSort();

  RecentTxn recent_;                      // ledger thread
  std::unique_ptr<RecentTxn> sorting_;    // frozen while the sort thread stores it
  std::thread sort_thread_;
  std::atomic<bool> sort_done_{false};
  absl::Status sort_status_;              // written by the sort thread before sort_done_
  std::atomic<bool> stopping_{false};     // the destructor stops a sort waiting for its commits
  std::atomic<uint32_t> sort_wake_{0};    // moved by commits, failures and the destructor
  uint64_t recent_txn_sorted_through_ = 0;  // kRecentTxn values up to this commit can go
  uint64_t recent_txn_deleted_through_ = 0;
  size_t recent_blob_bytes_ = 0;  // the last commit's kRecentTxn value, to size the next
  std::atomic<uint64_t> recent_txn_records_{0};
  std::atomic<uint64_t> recent_txn_sorts_{0};
  std::map<WindowDay, WindowRecord> windows_;
  std::vector<WindowDay> touched_windows_;  // window records to write with this batch
  int64_t horizon_start_ms_ = 0;            // records of events before this count as absent
  std::vector<std::string> retired_exception_keys_;  // deleted with this batch's write
  std::atomic<std::shared_ptr<const WindowTable>> published_windows_;

  // Lines and counters of open windows.
  StringMap<uint32_t> line_index_;
  std::vector<LineEntry> lines_;
  LineIds line_ids_;                   // as loaded, plus those given since
  std::vector<uint32_t> new_line_ids_;  // given since the last write was built: stored with it
  // Within one registry a tap's line follows from its issuing bank, merchant and merchant's
  // bank, and a settlement's from its insured fund, institution and institution's fund: the
  // line is found by those entries' addresses, without building and hashing its key text.
  // Cleared when a batch brings another registry; the registry is held meanwhile, so no entry
  // of another one can take an address that is in here.
  struct LineRoute {
    const void* first = nullptr;
    const void* second = nullptr;
    const void* third = nullptr;
    WindowDay day = 0;
    bool operator==(const LineRoute&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const LineRoute& route) {
      return H::combine(std::move(h), route.first, route.second, route.third, route.day);
    }
  };
  absl::flat_hash_map<LineRoute, uint32_t> line_routes_;
  std::shared_ptr<const Registry> line_routes_registry_;
  std::vector<uint32_t> dirty_lines_;  // lines changed since the last checkpoint
  uint64_t applied_since_checkpoint_ = 0;
  bool lines_checkpoint_due_ = false;  // a store without kLinesThroughKey gets one at once
  std::map<WindowDay, CountersEntry> counters_;
  // Partition gross of the windows not closed, by window, topic and partition.
  struct GrossEntry {
    int64_t gross_fen = 0;
    uint64_t touched_sequence = 0;  // written by the write of this sequence (or a later one)
  };
  static constexpr uint64_t kStoreWithNextWrite = UINT64_MAX;
  using GrossIndex = std::tuple<WindowDay, SourceTopic, int32_t>;
  std::map<GrossIndex, GrossEntry> partition_gross_;
  GrossIndex cached_gross_index_{};
  GrossEntry* cached_gross_ = nullptr;  // the last entry a slot touched: most of a batch shares it

  // Per-batch scratch, reused so that steady state allocates nothing per message.
  // Keyed by txn_id views into the batch's payloads, one map per family.
  std::array<absl::flat_hash_map<std::string_view, uint32_t, StringHash, StringEq>, 2> txn_index_;
  std::vector<TxnState> txn_states_;
  size_t txn_states_used_ = 0;
  std::vector<uint32_t> pending_lookups_;
  // Per slot of the batch: its own transaction state and its original's (kNoState if none).
  static constexpr uint32_t kNoState = UINT32_MAX;
  std::vector<std::array<uint32_t, 2>> slot_states_;
  // The last window's counters and applied blob a slot touched: most slots of a batch share it.
  WindowDay cached_counters_day_ = 0;
  CountersEntry* cached_counters_ = nullptr;
  WindowDay cached_applied_day_ = 0;
  std::string* cached_applied_blob_ = nullptr;
  std::vector<std::string_view> lookup_keys_;
  std::vector<std::string> lookup_values_;
  std::vector<uint8_t> lookup_found_;
  std::vector<uint32_t> lookup_states_;  // which txn state each store lookup is for
  std::map<WindowDay, std::string> applied_blobs_;
  std::string key_scratch_;
  std::string line_key_scratch_;
  std::string value_scratch_;
  DeadLetterScratch dead_letter_scratch_;
  std::string sealed_scratch_;
};

}  // namespace yrd
