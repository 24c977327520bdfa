// StoreMaintenance: keeps the daemon's store bounded for as long as it runs (SPEC section 5), on
// a thread of its own that wakes every store.maintenance_interval_ms (the first time one interval
// after the start) and runs one round:
//   1. the dedup horizon follows the clock (set at construction too): the store's compaction filter drops transaction
//      records of events older than clearing.dedup_horizon_days (the ledger already treats them
//      as absent, so when a compaction runs never changes a decision);
//   2. once the horizon has moved a day since the last time (and once after a start), the dedup
//      table is compacted whole, since RocksDB filters only what a compaction touches;
//   3. a window whose files were written store.window_retention_days ago is retired: a ledger
//      command (kRetire, in order with the events) deletes its applied records, netting lines and
//      exceptions, keeping its counters, its state record and its files; the deleted ranges are
//      then compacted away.
// A round that fails is logged by the caller and tried again at the next interval: nothing here
// is needed for a correct answer, only for bounded disk use. Owned by the daemon's worker for one
// life of the store; stopped by its destructor.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "adapters/rocksdb/rocks_store.h"
#include "engine/base/clock.h"
#include "engine/ledger/ledger.h"

namespace yrd {

struct StoreMaintenanceOptions {
  int64_t dedup_horizon_ms = DecodeLimits{}.dedup_horizon_ms;  // clearing.dedup_horizon_days
  int64_t window_retention_ms = 93 * kDayMs;                     // store.window_retention_days
  std::chrono::milliseconds interval{3'600'000};                 // store.maintenance_interval_ms
  // Exception keys one retirement command carries at most; a window with more is finished by
  // the next rounds.
  size_t exception_keys_per_command_max = 100'000;
};

// What one round did, for the log and the tests.
struct MaintenanceRound {
  int64_t horizon_start_ms = 0;
  bool dedup_table_compacted = false;
  std::vector<WindowDay> windows_retiring;   // kRetire submitted
  std::vector<WindowDay> windows_compacted;  // retired ranges compacted
  size_t exception_keys_submitted = 0;
};

class StoreMaintenance {
 public:
  // `windows` gives the ledger's window table as of the last commit (nullptr while not
  // consuming); `submit` queues a window command with the events (false while not consuming).
  // Both are called on the maintenance thread. Starts the thread when `start_thread`.
  StoreMaintenance(RocksStore& store, const Clock& clock, StoreMaintenanceOptions options,
                   std::function<std::shared_ptr<const WindowTable>()> windows,
                   std::function<bool(WindowCommand)> submit,
                   std::function<void(const absl::Status&, const MaintenanceRound&)> on_round, bool start_thread);
  ~StoreMaintenance();
  StoreMaintenance(const StoreMaintenance&) = delete;
  StoreMaintenance& operator=(const StoreMaintenance&) = delete;

  // One round on the caller's thread, as the thread runs it every interval (tests).
  [[nodiscard]] absl::Status RunOnce(MaintenanceRound& round);

  // The horizon moves a whole day before the dedup table is compacted again.
  static constexpr int64_t kDedupCompactionStepMs = kDayMs;
  // The store's filter drops only records a day older than the ledger's horizon: the ledger
  // reads its clock per batch, earlier than this thread does, and a clock stepped back must not
  // let the filter drop a record the ledger still counts. Decisions then never depend on when a
  // compaction ran; the dedup state on disk is at most the horizon plus two days.
  // At start, windows retired this recently have their ranges compacted again, in case the last
  // life stopped before it did.
  static constexpr int64_t kRecompactRetiredWithinMs = 2 * kDayMs;
  static constexpr int64_t kFilterLagMs = kDayMs;

 private:
  void Loop();
  [[nodiscard]] absl::Status RetireDueWindows(const WindowTable& windows, int64_t now_ms, MaintenanceRound& round);

  RocksStore& store_;
  const Clock& clock_;
  const StoreMaintenanceOptions options_;
  const std::function<std::shared_ptr<const WindowTable>()> windows_;
  const std::function<bool(WindowCommand)> submit_;
  const std::function<void(const absl::Status&, const MaintenanceRound&)> on_round_;
  std::optional<int64_t> compacted_horizon_start_ms_;  // the horizon of the last dedup compaction
  std::set<WindowDay> compacted_windows_;               // retired windows whose ranges are compacted
  std::set<WindowDay> exceptions_retired_;              // retired windows with no exception left
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace yrd
