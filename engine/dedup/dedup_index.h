// DedupIndex: the transaction records (the dedup and refund state, one per txn_id within a
// family) as the ledger decides a batch against them, and where they are kept.
//
// Each event leaves a record, keyed in no useful order. A commit stores its batch's records as
// one value of kRecentTxn, and the index keeps them in memory: the recent records. Once there are
// recent_txn_records_max of them (or the oldest is kRecentAgeMaxMs old), the set is frozen and a
// sort thread of its own sorts it and stores it into kTxn in one step (StateStore::IngestSorted),
// after the commits that wrote it; a later write then deletes those commits' kRecentTxn values. A
// lookup goes to the recent records (including those of batches prepared and not committed yet),
// then to the frozen set, then to kTxn with one MultiGet per batch, so a record is found in the
// newest place that holds it. A crash anywhere in between leaves the records in kRecentTxn, in
// kTxn or in both with the same content; Load reads kRecentTxn back.
//
// Per batch, on the ledger thread: BeginBatch clears the batch's table; StateFor gives each
// txn_id a slot names (its own, or its original) one TxnState; LookUp fills them from the store;
// the ledger changes them in place; AppendRecords writes the changed ones and indexes them. The
// sort thread is the only other thread; it reads the ledger's progress through CommitProgress.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "engine/base/large_table.h"
#include "engine/base/strings.h"
#include "engine/event/event.h"
#include "engine/store/records.h"
#include "engine/store/state_store.h"

namespace yrd {

// One txn_id of the batch being decided: its stored record, if any, as the batch changes it.
struct TxnState {
  std::string key;              // TxnKey
  SourcePartition owner;        // the partition whose state it is
  bool exists = false;          // a record stands (stored, or applied earlier in the batch)
  bool dirty = false;           // changed by the batch: written with it
  TxnRecord record;             // its line by line_id only (line_key is not kept)
  std::string original_txn_id;  // owned storage behind record.original_txn_id
};

// What the sort thread needs to know of the ledger's commits. Implemented by the ledger;
// thread-safe.
class CommitProgress {
 public:
  virtual ~CommitProgress() = default;
  [[nodiscard]] virtual uint64_t committed_sequence() const = 0;
  // Set once the ledger failed: a sort waiting for commits then gives up with Failure().
  [[nodiscard]] virtual bool failed() const = 0;
  [[nodiscard]] virtual absl::Status Failure() const = 0;
};

class DedupIndex {
 public:
  // `recent_records_max`: config store.recent_txn_records_max (> 0).
  DedupIndex(StateStore& store, uint64_t recent_records_max, const CommitProgress& progress);
  ~DedupIndex();  // stops a sort thread still waiting for its commits
  DedupIndex(const DedupIndex&) = delete;
  DedupIndex& operator=(const DedupIndex&) = delete;

  // Reads kRecentTxn back (the records of commits not sorted yet).
  [[nodiscard]] absl::Status Load(int64_t now_ms);

  // ---- one batch, on the ledger thread ----
  static constexpr uint32_t kNoState = UINT32_MAX;
  void BeginBatch(size_t slot_count);
  // The state of `txn_id` in `family` as `owner` holds it, made (and queued for LookUp) the first
  // time.
  [[nodiscard]] uint32_t StateFor(SourcePartition owner, Family family, std::string_view txn_id);
  [[nodiscard]] TxnState& state(uint32_t index) { return states_[index]; }
  // Finds the stored record of every state made since the last LookUp. A record of an event that
  // occurred before `horizon_start_ms` counts as absent (purged or not). A record written before
  // line numbers names its line by text: it gets a number from `line_ids`, noted in
  // `new_line_ids` to be stored with the batch. DataLoss for a damaged record.
  [[nodiscard]] absl::Status LookUp(int64_t horizon_start_ms, LineIds& line_ids, std::vector<uint32_t>& new_line_ids);
  // Puts the batch's changed records into `write` as one kRecentTxn value of commit `sequence`
  // and indexes them as recent records; deletes the kRecentTxn values a finished sort stored.
  void AppendRecords(uint64_t sequence, int64_t now_ms, StateWriteBatch& write);
  // The records the last AppendRecords wrote, as TxnStates.
  template <typename Visit>
  void VisitWritten(Visit&& visit) const {
    for (size_t i = 0; i < states_used_; ++i) {
      if (states_[i].dirty) visit(states_[i]);
    }
  }

  // ---- the sort into kTxn ----
  // Before a batch: takes a finished sort; waits for a running one once the recent records are
  // as many again, so memory holds at most about twice recent_records_max. An error of the sort
  // is returned (and the ledger fails).
  [[nodiscard]] absl::Status BeforeBatch();
  // After a batch: hands the recent records to the sort thread when there are enough or the
  // oldest is kRecentAgeMaxMs old.
  void AfterBatch(int64_t now_ms);
  // Waits for a running sort to end and takes its outcome (tests).
  [[nodiscard]] absl::Status AwaitSort();
  // A commit, a failure or a stop moved: the sort thread looks again. Any thread.
  void Wake();

  // Recent records held in memory, a set being sorted included. Thread-safe.
  [[nodiscard]] uint64_t records_held() const { return records_held_.load(std::memory_order_relaxed); }
  // Sorts into kTxn finished so far. Thread-safe.
  [[nodiscard]] uint64_t sorts() const { return sorts_.load(std::memory_order_relaxed); }

  // Recent records older than this (by the batch clock) are sorted even when fewer than
  // recent_records_max, so a quiet day's records do not stay in memory and kRecentTxn for ever.
  static constexpr int64_t kRecentAgeMaxMs = 6 * 3'600'000;
  // The recent records' index is sized for recent_records_max up front, but no more than this
  // (about 40 MB); beyond it, it grows as needed.
  static constexpr uint64_t kIndexReserveMax = 1 << 20;

 private:
  // The kRecentTxn values of commits since the last sort, and an index of the newest record per
  // key into them.
  struct Recent {
    std::vector<std::unique_ptr<std::string>> blobs;  // never moved, so the views stay valid
    absl::flat_hash_map<std::string_view, std::string_view, StringHash, StringEq,
                        LargeTableAllocator<std::pair<const std::string_view, std::string_view>>>
        index;
    uint64_t records_written = 0;
    uint64_t through_sequence = 0;  // the last commit whose records are here
    int64_t started_at_ms = 0;      // the batch clock when its first record came
  };
  // Indexes the records of one commit's value; false if it is damaged.
  [[nodiscard]] static bool Index(Recent& recent, std::unique_ptr<std::string> blob);
  [[nodiscard]] const std::string_view* FindRecent(std::string_view key) const;
  [[nodiscard]] bool Adopt(TxnState& state, std::string_view bytes, int64_t horizon_start_ms, LineIds& line_ids,
                           std::vector<uint32_t>& new_line_ids);
  void Sort();  // the sort thread
  [[nodiscard]] absl::Status TakeSort();

  // The sort thread's nice value (Linux: per thread): it yields to the pipeline's threads.
  static constexpr int kSortThreadNice = 10;
  // How many keys ahead the large indexes are prefetched when many keys are looked up in turn.
  static constexpr size_t kPrefetchAhead = 8;

  StateStore& store_;
  const uint64_t recent_records_max_;
  const CommitProgress& progress_;

  Recent recent_;                       // ledger thread
  std::unique_ptr<Recent> sorting_;     // frozen while the sort thread stores it
  std::thread sort_thread_;
  std::atomic<bool> sort_done_{false};
  absl::Status sort_status_;            // written by the sort thread before sort_done_
  std::atomic<bool> stopping_{false};   // the destructor stops a sort waiting for its commits
  std::atomic<uint32_t> wake_{0};       // moved by commits, failures and the destructor
  uint64_t sorted_through_ = 0;         // kRecentTxn values up to this commit can go
  uint64_t deleted_through_ = 0;
  size_t blob_bytes_ = 0;               // the last commit's kRecentTxn value, to size the next
  std::atomic<uint64_t> records_held_{0};
  std::atomic<uint64_t> sorts_{0};

  // The batch's table: by txn_id views into the batch's payloads, one map per family. A txn_id
  // that two owners hold in one batch (its producer keyed it against the contract) is found by
  // its whole key in the second map.
  std::array<absl::flat_hash_map<std::string_view, uint32_t, StringHash, StringEq>, 2> batch_index_;
  StringMap<uint32_t> batch_index_by_key_;
  std::vector<TxnState> states_;
  size_t states_used_ = 0;
  std::vector<uint32_t> pending_;        // states made since the last LookUp
  std::vector<std::string_view> lookup_keys_;
  std::vector<std::string> lookup_values_;
  std::vector<uint8_t> lookup_found_;
  std::vector<uint32_t> lookup_states_;  // which state each store lookup is for
  std::string key_scratch_;
  std::string value_scratch_;
};

}  // namespace yrd
