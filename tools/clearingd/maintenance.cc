#include "tools/clearingd/maintenance.h"

#include <map>
#include <vector>

#include "engine/base/strings.h"
#include "engine/store/records.h"

namespace yrd {

StoreMaintenance::StoreMaintenance(RocksStore& store, const Clock& clock, StoreMaintenanceOptions options,
                                   std::function<std::shared_ptr<const WindowTable>()> windows,
                                   std::function<bool(WindowCommand)> submit,
                                   std::function<void(const absl::Status&, const MaintenanceRound&)> on_round,
                                   bool start_thread)
    : store_(store),
      clock_(clock),
      options_(options),
      windows_(std::move(windows)),
      submit_(std::move(submit)),
      on_round_(std::move(on_round)) {
  store_.SetHorizonStartMs(clock_.NowMs() - options_.dedup_horizon_ms - kFilterLagMs);
  if (start_thread) thread_ = std::thread([this] { Loop(); });
}

StoreMaintenance::~StoreMaintenance() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  // A compaction the round is waiting for gives up rather than hold up a stop.
  if (thread_.joinable()) store_.CancelManualCompactions();
  if (thread_.joinable()) thread_.join();
}

void StoreMaintenance::Loop() {
  // The first round waits an interval: a start catches up first.
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, options_.interval, [this] { return stopping_; })) {
    lock.unlock();
    MaintenanceRound round;
    const absl::Status status = RunOnce(round);
    if (on_round_) on_round_(status, round);
    lock.lock();
  }
}

absl::Status StoreMaintenance::RunOnce(MaintenanceRound& round) {
  const int64_t now_ms = clock_.NowMs();
  round.horizon_start_ms = now_ms - options_.dedup_horizon_ms;
  store_.SetHorizonStartMs(round.horizon_start_ms - kFilterLagMs);
  if (!compacted_horizon_start_ms_ ||
      round.horizon_start_ms - *compacted_horizon_start_ms_ >= kDedupCompactionStepMs) {
    if (absl::Status s = store_.CompactTable(Table::kTxn); !s.ok()) return s;
    compacted_horizon_start_ms_ = round.horizon_start_ms;
    round.dedup_table_compacted = true;
  }
  const std::shared_ptr<const WindowTable> windows = windows_();
  if (windows == nullptr) return absl::OkStatus();
  if (absl::Status s = RetireDueWindows(*windows, now_ms, round); !s.ok()) return s;
  // The ranges of retired windows, once their deletions are committed.
  bool any_compacted = false;
  for (const auto& [day, info] : *windows) {
    if (info.retired_at_ms == 0 || compacted_windows_.contains(day)) continue;
    if (!compacted_horizon_start_ms_ || now_ms - info.retired_at_ms > kRecompactRetiredWithinMs) {
      compacted_windows_.insert(day);  // retired in an earlier life, which compacted it
      continue;
    }
    std::string begin, end;
    AppendBigEndian32(begin, WindowKeyBits(day));
    AppendBigEndian32(end, WindowKeyBits(day + 1));
    for (const Table table : {Table::kApplied, Table::kLines}) {
      if (absl::Status s = store_.CompactTable(table, begin, end); !s.ok()) return s;
    }
    compacted_windows_.insert(day);
    round.windows_compacted.push_back(day);
    any_compacted = true;
  }
  if (any_compacted) return store_.CompactTable(Table::kExceptions);
  return absl::OkStatus();
}

absl::Status StoreMaintenance::RetireDueWindows(const WindowTable& windows, int64_t now_ms, MaintenanceRound& round) {
  // Due: files written at least the retention ago. Retired: may still have exceptions left.
  std::set<WindowDay> wanted;
  for (const auto& [day, info] : windows) {
    if (info.state != WindowState::kFilesWritten || exceptions_retired_.contains(day)) continue;
    const int64_t written_at_ms = info.files_written_at_ms != 0 ? info.files_written_at_ms : info.closed_at_ms;
    if (info.retired_at_ms != 0 || now_ms - written_at_ms >= options_.window_retention_ms) wanted.insert(day);
  }
  if (wanted.empty()) return absl::OkStatus();
  std::map<WindowDay, std::vector<std::string>> keys;
  bool damaged = false;
  absl::Status s = store_.Scan(Table::kExceptions, {}, {}, [&](std::string_view key, std::string_view value) {
    ExceptionRecord record;
    if (!DecodeExceptionRecord(key, value, record)) {
      damaged = true;
      return false;
    }
    if (!wanted.contains(record.window)) return true;
    std::vector<std::string>& window_keys = keys[record.window];
    if (window_keys.size() < options_.exception_keys_per_command_max) window_keys.emplace_back(key);
    return true;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("an exception record is damaged");
  for (const WindowDay day : wanted) {
    const bool retired = windows.at(day).retired_at_ms != 0;
    std::vector<std::string>& window_keys = keys[day];
    if (retired && window_keys.empty()) {
      exceptions_retired_.insert(day);  // nothing left of it: not scanned for again
      continue;
    }
    round.exception_keys_submitted += window_keys.size();
    if (!submit_(WindowCommand(WindowCommand::Kind::kRetire, day, std::move(window_keys)))) break;
    round.windows_retiring.push_back(day);
  }
  return absl::OkStatus();
}

}  // namespace yrd
