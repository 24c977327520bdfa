// WindowBook: the clearing windows the ledger knows, and what places an event in one. It holds
// every window's state record (closed, files written, retired, with what the close froze), its
// counters, and the partition gross of the windows not closed (engine/base/money.h); it routes an
// event to its window (late events to the oldest open one), applies the window commands of a
// batch in order with its events (the clock's close at cutoff plus grace, the operator's close,
// files written, retirement), and puts whatever a batch changed of them into its write. It
// publishes a table of the windows for the admin endpoint, the metrics and the maintenance.
//
// Used on the ledger thread only; the published table is read by any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/base/window.h"
#include "engine/batch/batch.h"
#include "engine/registry/registry.h"
#include "engine/store/owner_cache.h"
#include "engine/store/records.h"
#include "engine/store/state_store.h"

namespace yrd {

// A window as the admin endpoint, the file writer and the maintenance see it.
struct WindowInfo {
  WindowState state = WindowState::kOpen;  // open/closing follow from the clock
  int64_t closed_at_ms = 0;
  int64_t files_written_at_ms = 0;
  int64_t retired_at_ms = 0;  // its records were deleted (WindowRecord::retired_at_ms)
  WindowCounters counters;
};
using WindowTable = std::map<WindowDay, WindowInfo>;

class WindowBook {
 public:
  explicit WindowBook(WindowCalendar calendar) : calendar_(calendar) {}

  // Reads the state records, every owner's counters and the partition gross. A window not closed
  // that has applied records but no gross record (a store written before they were kept) gets its
  // gross from those records (`line_ids` reads them), stored with the next write.
  [[nodiscard]] absl::Status Load(StateStore& store, const LineIds& line_ids);
  // Windows with counters that are not closed: the ones whose lines the ledger holds.
  [[nodiscard]] std::vector<WindowDay> DaysNotClosed() const;
  // Windows closed whose records are not retired.
  [[nodiscard]] std::vector<WindowDay> DaysClosedNotRetired() const;

  // Before a batch whose write will store commit `sequence`.
  void BeginBatch(uint64_t sequence);
  // The clock's closes (every window with activity whose cutoff plus grace has passed, at that
  // instant) and the batch's commands, in order; fills the batch's windows_closed,
  // windows_files_marked and windows_retired. A close of a day with no activity and no state
  // does nothing: it would invent a window.
  void ApplyCommands(Batch& batch);
  // True when the commands changed something to store (a record, or exceptions to delete).
  [[nodiscard]] bool changed() const { return !touched_windows_.empty() || !retired_exception_keys_.empty(); }

  [[nodiscard]] WindowState PersistedState(WindowDay day) const;
  // The instant `day` closed at, 0 when it is not closed.
  [[nodiscard]] int64_t ClosedAtMs(WindowDay day) const {
    const auto it = records_.find(day);
    return it == records_.end() || it->second.state < WindowState::kClosed ? 0 : it->second.closed_at_ms;
  }
  [[nodiscard]] bool IsClosed(WindowDay day, int64_t now_ms) const;
  // The oldest window still open at `now_ms`.
  [[nodiscard]] WindowDay OldestOpenWindow(int64_t now_ms) const;
  // The window an event of `occurred_at_ms` goes to at `now_ms`, and whether that makes it late.
  [[nodiscard]] std::pair<WindowDay, bool> RouteWindow(int64_t occurred_at_ms, int64_t now_ms) const;

  // `owner`'s counters of `day`, marked to be stored with the batch.
  WindowCounters& TouchCounters(WindowDay day, SourcePartition owner);
  // Adds `amount_fen` to the gross of (`day`, `topic`, `partition`), unless that would pass
  // kPartitionWindowGrossFenMax: then false, and nothing changes.
  [[nodiscard]] bool AddPartitionGross(WindowDay day, SourceTopic topic, int32_t partition, int64_t amount_fen);

  // Puts what the batch changed into `write`: counters, gross (and the gross of windows it closed
  // deleted), the records and exceptions of windows it retired deleted, and the state records.
  void AppendWrites(const Batch& batch, StateWriteBatch& write);
  // What AppendWrites stored of the owners' state: each touched (day, owner)'s counters, and each
  // touched (day, owner)'s gross (for the changelog, engine/changelog).
  template <typename CountersVisit, typename GrossVisit>
  void VisitWritten(CountersVisit&& counters, GrossVisit&& gross) const {
    for (const auto& [index, entry] : touched_counters_) counters(index.first, index.second, entry->counters);
    for (const auto& [index, entry] : gross_) {
      if (entry.touched_sequence == sequence_) {
        gross(std::get<0>(index), SourcePartition{std::get<1>(index), std::get<2>(index)}, entry.gross_fen);
      }
    }
  }
  // Forgets the gross of closed windows (after the commit that closed them is built).
  void ForgetClosed();

  [[nodiscard]] std::shared_ptr<const WindowTable> BuildTable(int64_t now_ms) const;
  // Windows closed whose files are not written yet (to resume after a restart).
  [[nodiscard]] std::vector<WindowDay> AwaitingFiles() const;

  // How far back OldestOpenWindow looks for an open window before giving up (an operator would
  // have had to close every day of a year in advance).
  static constexpr int32_t kOpenWindowSearchDaysMax = 366;

 private:
  struct CountersEntry {
    WindowCounters counters;
    uint64_t touched_sequence = 0;
  };
  struct GrossEntry {
    int64_t gross_fen = 0;
    uint64_t touched_sequence = 0;  // written by the write of this sequence (or a later one)
  };
  static constexpr uint64_t kStoreWithNextWrite = UINT64_MAX;
  using GrossIndex = std::tuple<WindowDay, SourceTopic, int32_t>;
  using CountersIndex = std::pair<WindowDay, SourcePartition>;

  [[nodiscard]] absl::Status LoadGross(StateStore& store, const LineIds& line_ids);
  // True when some owner has counters in `day` (the window had activity).
  [[nodiscard]] bool HasCounters(WindowDay day) const { return day_sums_.contains(day); }
  // Sums `day`'s counters over its owners into day_sums_.
  void SumDay(WindowDay day);
  // Closes `day` at `closed_at_ms` with the registry's fee schedule and participants, unless
  // already closed.
  void CloseWindow(WindowDay day, int64_t closed_at_ms, const Registry& registry, Batch& batch);
  void RetireWindow(const WindowCommand& command, Batch& batch);

  const WindowCalendar calendar_;
  std::map<WindowDay, WindowRecord> records_;
  std::map<CountersIndex, CountersEntry> counters_;  // per window and owner
  // Each window's counters summed over its owners, as of the last write: what the table shows and
  // what tells the windows with activity, without a pass over every owner's counters per batch.
  std::map<WindowDay, WindowCounters> day_sums_;
  std::vector<std::pair<CountersIndex, CountersEntry*>> touched_counters_;  // by this batch
  std::map<GrossIndex, GrossEntry> gross_;  // of the windows not closed
  uint64_t sequence_ = 0;                   // the commit the batch being prepared stores
  std::vector<WindowDay> touched_windows_;  // state records to write with this batch
  std::vector<std::string> retired_exception_keys_;  // deleted with this batch's write
  // Each owner's counters and gross the batch touched last: most slots of a batch share a window.
  OwnerDayCache<CountersEntry> counters_cache_;  // cleared per batch: a hit is marked for it
  OwnerDayCache<GrossEntry> gross_cache_;
  std::string key_scratch_;
  std::string value_scratch_;
};

}  // namespace yrd
