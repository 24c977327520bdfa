// Ledger: the apply stage. For each decoded batch it deduplicates by txn_id (exact duplicate
// vs conflict), resolves refunds and cancellations against their originals, assigns windows
// (late events to the oldest open window), nets the money into lines, records every applied
// event and every exception, and writes all of it with the batch's Kafka offsets in one atomic,
// synced store write. It keeps the open windows' lines and counters in memory and loads them
// from the store at start, so a restart continues exactly where the last commit ended.
//
// Owned by the pipeline's ledger thread: every method is called from that thread only, except
// the const accessors documented as thread-safe. After a failed store write the ledger refuses
// every later batch (failed() is set); the process reopens the store to recover.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/batch.h"
#include "engine/records.h"
#include "engine/state_store.h"
#include "engine/strings.h"
#include "engine/window.h"

namespace yrd {

struct LedgerOptions {
  WindowCalendar calendar;
};

// A window as the admin endpoint and the file writer see it.
struct WindowInfo {
  WindowState state = WindowState::kOpen;  // open/closing follow from the clock
  int64_t closed_at_ms = 0;
  WindowCounters counters;
};
using WindowTable = std::map<WindowDay, WindowInfo>;

// Per-batch figures for metrics and the commit log line.
struct BatchResult {
  size_t applied_count = 0;
  size_t exact_duplicate_count = 0;
  size_t rejected_count = 0;
  size_t late_count = 0;
  size_t store_bytes = 0;
};

using PartitionOffsets = std::map<std::pair<SourceTopic, int32_t>, int64_t>;

class Ledger {
 public:
  Ledger(StateStore& store, LedgerOptions options);

  // Loads offsets, window states, counters and the lines of windows still open at `now_ms`.
  [[nodiscard]] absl::Status Load(int64_t now_ms);

  // Applies and durably commits one batch; on OK every slot has its fate, reason and window.
  // On error nothing of the batch is acknowledged and the ledger is failed.
  [[nodiscard]] absl::Status Apply(Batch& batch, BatchResult& result);

  // The next offset to consume per partition, as committed.
  [[nodiscard]] const PartitionOffsets& offsets() const { return offsets_; }

  // Windows with activity or a persisted state, as of the last commit. Thread-safe.
  [[nodiscard]] std::shared_ptr<const WindowTable> windows() const { return published_windows_.load(); }
  // Windows closed but whose files are not written yet (to resume after a restart).
  [[nodiscard]] std::vector<WindowDay> WindowsAwaitingFiles() const;
  [[nodiscard]] bool failed() const { return !failure_.ok(); }
  [[nodiscard]] uint64_t commit_sequence() const { return commit_sequence_; }

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
    TxnRecord record;
    std::string line_key;         // owned storage behind record.line_key
    std::string original_txn_id;  // owned storage behind record.original_txn_id
  };
  struct LineEntry {
    std::string store_key;  // window + line key
    LineTotals totals;
    uint64_t touched_sequence = 0;
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
  void PublishWindows(int64_t now_ms);
  uint32_t StateFor(Family family, std::string_view txn_id);
  [[nodiscard]] absl::Status LookUpPending();
  void ApplySlot(MessageSlot& slot, WindowDay oldest_open, int64_t now_ms, BatchResult& result);
  void Reject(MessageSlot& slot, Reason reason, WindowDay oldest_open, int64_t now_ms);
  LineTotals& TouchLine(WindowDay day, std::string_view line_key);
  WindowCounters& TouchCounters(WindowDay day);
  void RecordApplied(const MessageSlot& slot, std::string_view line_key);
  void BuildWrite(const Batch& batch);

  StateStore& store_;
  LedgerOptions options_;
  absl::Status failure_;
  uint64_t commit_sequence_ = 0;
  PartitionOffsets offsets_;
  PartitionOffsets pending_offsets_;
  std::map<WindowDay, WindowRecord> windows_;
  std::vector<WindowDay> touched_windows_;  // window records to write with this batch
  std::atomic<std::shared_ptr<const WindowTable>> published_windows_;

  // Lines and counters of open windows.
  StringMap<uint32_t> line_index_;
  std::vector<LineEntry> lines_;
  std::vector<uint32_t> touched_lines_;
  std::map<WindowDay, CountersEntry> counters_;

  // Per-batch scratch, reused so that steady state allocates nothing per message.
  // Keyed by txn_id views into the batch's payloads, one map per family.
  std::array<absl::flat_hash_map<std::string_view, uint32_t, StringHash, StringEq>, 2> txn_index_;
  std::vector<TxnState> txn_states_;
  size_t txn_states_used_ = 0;
  std::vector<uint32_t> dirty_in_key_order_;  // BuildWrite's scratch
  std::vector<uint32_t> pending_lookups_;
  std::vector<std::string_view> lookup_keys_;
  std::vector<std::string> lookup_values_;
  std::vector<uint8_t> lookup_found_;
  std::map<WindowDay, std::string> applied_blobs_;
  std::string key_scratch_;
  std::string line_key_scratch_;
  std::string value_scratch_;
  std::unique_ptr<StateWriteBatch> write_batch_;
};

}  // namespace yrd
