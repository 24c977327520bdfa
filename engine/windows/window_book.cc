#include "engine/windows/window_book.h"

#include <algorithm>

#include "engine/base/assert.h"
#include "engine/base/money.h"
#include "engine/base/strings.h"
#include "engine/readers/store_readers.h"

namespace yrd {

absl::Status WindowBook::Load(StateStore& store, const LineIds& line_ids) {
  absl::StatusOr<std::map<WindowDay, WindowRecord>> records = ReadWindowRecords(store);
  if (!records.ok()) return records.status();
  records_ = *std::move(records);
  absl::Status damaged;
  absl::Status s;
  // Every window's counters (one record per window and owner): a window that closed while the
  // daemon was down is found here and closed on the first batch.
  s = store.Scan(Table::kMeta, kCountersKeyPrefix, {}, [&](std::string_view key, std::string_view v) {
    WindowCounters counters;
    if (key.size() != kCountersKeyPrefix.size() + 4 + kOwnerKeyBytes || !DecodeWindowCounters(v, counters)) {
      damaged = absl::DataLossError("a window counters record is damaged");
      return false;
    }
    const char* day_bits = key.data() + kCountersKeyPrefix.size();
    counters_[{WindowFromKeyBits(ReadBigEndian32(day_bits)), ReadOwner(day_bits + 4)}].counters = counters;
    return true;
  });
  if (!s.ok()) return s;
  if (!damaged.ok()) return damaged;
  for (const auto& [index, entry] : counters_) {
    if (!day_sums_.contains(index.first)) SumDay(index.first);
  }
  return LoadGross(store, line_ids);
}

absl::Status WindowBook::LoadGross(StateStore& store, const LineIds& line_ids) {
  bool damaged = false;
  absl::Status s = store.Scan(Table::kMeta, kGrossKeyPrefix, {}, [&](std::string_view key, std::string_view value) {
    PartitionGross gross;
    damaged = !DecodeGross(key, value, gross);
    if (!damaged && PersistedState(gross.day) < WindowState::kClosed) {
      gross_[{gross.day, gross.topic, gross.partition}].gross_fen = gross.gross_fen;
    }
    return !damaged;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a partition gross record is damaged");
  for (const WindowDay day : DaysNotClosed()) {
    const auto first = gross_.lower_bound({day, SourceTopic::kTaps, 0});
    if (first != gross_.end() && std::get<0>(first->first) == day) continue;
    s = VisitAppliedRecords(store, day, line_ids, [&](SourcePartition owner, const AppliedRecord& record) {
      GrossEntry& entry = gross_[{day, owner.topic, owner.partition}];
      // An earlier version bounded only each line: past the bound, the partition takes no more
      // money in this window (saturated, so such a window never stops a start).
      const std::optional<int64_t> sum = CheckedAddFen(entry.gross_fen, record.amount_fen);
      entry.gross_fen = sum && *sum <= kPartitionWindowGrossFenMax ? *sum : kPartitionWindowGrossFenMax + 1;
      entry.touched_sequence = kStoreWithNextWrite;
      return true;
    });
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::vector<WindowDay> WindowBook::DaysNotClosed() const {
  std::vector<WindowDay> days;
  for (const auto& [day, sum] : day_sums_) {
    if (PersistedState(day) < WindowState::kClosed) days.push_back(day);
  }
  return days;
}

std::vector<WindowDay> WindowBook::DaysClosedNotRetired() const {
  std::vector<WindowDay> days;
  for (const auto& [day, record] : records_) {
    if (record.state >= WindowState::kClosed && record.retired_at_ms == 0) days.push_back(day);
  }
  return days;
}

void WindowBook::SumDay(WindowDay day) {
  WindowCounters sum;
  for (auto it = counters_.lower_bound({day, SourcePartition{static_cast<SourceTopic>(0), INT32_MIN}});
       it != counters_.end() && it->first.first == day; ++it) {
    // Bounded by the messages consumed: a sum past int64 means state this process produced is broken.
    const bool added = AddWindowCounters(it->second.counters, sum);
    YRD_ASSERT(added);
  }
  day_sums_[day] = sum;
}

void WindowBook::BeginBatch(uint64_t sequence) {
  sequence_ = sequence;
  touched_windows_.clear();
  retired_exception_keys_.clear();
  counters_cache_.Clear();  // the counters each window touches now are marked for this batch
  touched_counters_.clear();
  gross_cache_.Clear();
}

// ---- routing --------------------------------------------------------------------------------------

WindowState WindowBook::PersistedState(WindowDay day) const {
  const auto it = records_.find(day);
  return it == records_.end() ? WindowState::kOpen : it->second.state;
}

bool WindowBook::IsClosed(WindowDay day, int64_t now_ms) const {
  if (calendar_.CloseInstantMs(day) <= now_ms) return true;
  return PersistedState(day) >= WindowState::kClosed;
}

WindowDay WindowBook::OldestOpenWindow(int64_t now_ms) const {
  // The day before today may still be in its grace period.
  WindowDay day = calendar_.DayOf(now_ms) - 1;
  for (int32_t i = 0; i < kOpenWindowSearchDaysMax; ++i, ++day) {
    if (!IsClosed(day, now_ms)) return day;
  }
  YRD_ASSERT(false && "no open window within a year of the clock");
  return day;
}

std::pair<WindowDay, bool> WindowBook::RouteWindow(int64_t occurred_at_ms, int64_t now_ms) const {
  const WindowDay natural = calendar_.DayOf(occurred_at_ms);
  if (!IsClosed(natural, now_ms)) return {natural, false};
  return {OldestOpenWindow(now_ms), true};
}

// ---- commands -------------------------------------------------------------------------------------

void WindowBook::CloseWindow(WindowDay day, int64_t closed_at_ms, const Registry& registry, Batch& batch) {
  if (PersistedState(day) >= WindowState::kClosed) return;  // closing twice is a no-op
  WindowRecord& record = records_[day];
  record.state = WindowState::kClosed;
  record.closed_at_ms = closed_at_ms;
  for (size_t i = 0; i < kCategoryCount; ++i) record.fee_basis_points[i] = registry.fee_bps(static_cast<Category>(i));
  record.fee_bank_id = registry.fee_bank().bank_id;
  record.registered_bank_ids.clear();
  record.registered_fund_ids.clear();
  record.registered_province_codes.clear();
  for (const Bank& bank : registry.banks()) record.registered_bank_ids.push_back(bank.bank_id);
  for (const Fund& fund : registry.funds()) record.registered_fund_ids.push_back(fund.fund_id);
  for (const Province& province : registry.provinces()) record.registered_province_codes.push_back(province.code);
  touched_windows_.push_back(day);
  batch.windows_closed.push_back(day);
}

void WindowBook::RetireWindow(const WindowCommand& command, Batch& batch) {
  // Only a window whose files are written gives up its records; its ranges go once, its
  // exceptions with every command that names them (a large window's take several).
  const auto it = records_.find(command.day);
  if (it == records_.end() || it->second.state != WindowState::kFilesWritten) return;
  retired_exception_keys_.insert(retired_exception_keys_.end(), command.exception_keys.begin(),
                                 command.exception_keys.end());
  if (it->second.retired_at_ms != 0) return;
  it->second.retired_at_ms = batch.now_ms;
  touched_windows_.push_back(command.day);
  batch.windows_retired.push_back(command.day);
}

void WindowBook::ApplyCommands(Batch& batch) {
  const int64_t now_ms = batch.now_ms;
  // The clock closes every window with activity once its cutoff plus grace has passed; the
  // close time is that instant, so files generated again carry the same header.
  for (const auto& [day, sum] : day_sums_) {
    if (PersistedState(day) >= WindowState::kClosed) continue;
    const int64_t close_at_ms = calendar_.CloseInstantMs(day);
    if (close_at_ms <= now_ms) CloseWindow(day, close_at_ms, *batch.registry, batch);
  }
  for (const WindowCommand& command : batch.commands) {
    switch (command.kind) {
      case WindowCommand::Kind::kClose:
        if (command.closed_at_ms != 0) {
          // The region closed it: this instance's partitions close too, idle ones included.
          CloseWindow(command.day, command.closed_at_ms, *batch.registry, batch);
        } else if (HasCounters(command.day) || records_.contains(command.day)) {
          // A day with no activity and no state is not a window: closing it would invent one.
          CloseWindow(command.day, now_ms, *batch.registry, batch);
        }
        break;
      case WindowCommand::Kind::kMarkFilesWritten: {
        auto it = records_.find(command.day);
        if (it != records_.end() && it->second.state == WindowState::kClosed) {
          it->second.state = WindowState::kFilesWritten;
          it->second.files_written_at_ms = now_ms;
          touched_windows_.push_back(command.day);
          batch.windows_files_marked.push_back(command.day);
        }
        break;
      }
      case WindowCommand::Kind::kRetire:
        RetireWindow(command, batch);
        break;
      case WindowCommand::Kind::kReportClosed:
        if (PersistedState(command.day) >= WindowState::kClosed) batch.windows_reported.push_back(command.day);
        break;
    }
  }
}

// ---- counters and gross ----------------------------------------------------------------------------

WindowCounters& WindowBook::TouchCounters(WindowDay day, SourcePartition owner) {
  CountersEntry* entry = counters_cache_.Find(day, owner);
  if (entry == nullptr) {
    entry = &counters_[{day, owner}];  // a map's entries stay where they are
    if (entry->touched_sequence != sequence_) {
      entry->touched_sequence = sequence_;
      touched_counters_.push_back({{day, owner}, entry});
    }
    counters_cache_.Put(day, owner, entry);
  }
  return entry->counters;
}

bool WindowBook::AddPartitionGross(WindowDay day, SourceTopic topic, int32_t partition, int64_t amount_fen) {
  GrossEntry* entry = gross_cache_.Find(day, {topic, partition});
  if (entry == nullptr) {
    entry = &gross_[{day, topic, partition}];  // a map's entries stay where they are
    gross_cache_.Put(day, {topic, partition}, entry);
  }
  const std::optional<int64_t> sum = CheckedAddFen(entry->gross_fen, amount_fen);
  if (!sum || *sum > kPartitionWindowGrossFenMax) return false;
  entry->gross_fen = *sum;
  entry->touched_sequence = sequence_;
  return true;
}

// ---- the write --------------------------------------------------------------------------------------

void WindowBook::AppendWrites(const Batch& batch, StateWriteBatch& write) {
  for (const auto& [index, entry] : touched_counters_) {
    CountersKey(index.first, index.second, key_scratch_);
    EncodeWindowCounters(entry->counters, value_scratch_);
    write.Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  for (size_t i = 0; i < touched_counters_.size(); ++i) {
    const WindowDay day = touched_counters_[i].first.first;
    if (i == 0 || touched_counters_[i - 1].first.first != day) SumDay(day);  // mostly one day a batch
  }
  for (auto& [index, entry] : gross_) {
    if (entry.touched_sequence < sequence_) continue;
    entry.touched_sequence = sequence_;
    GrossKey(std::get<0>(index), std::get<1>(index), std::get<2>(index), key_scratch_);
    EncodeGross(entry.gross_fen, value_scratch_);
    write.Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  std::string begin, end;
  auto window_range = [&](std::string_view prefix, WindowDay day) {
    begin.assign(prefix);
    AppendBigEndian32(begin, WindowKeyBits(day));
    end.assign(prefix);
    AppendBigEndian32(end, WindowKeyBits(day + 1));
  };
  // A closed window's partition gross is never needed again (after the puts: the later wins).
  for (const WindowDay day : batch.windows_closed) {
    window_range(kGrossKeyPrefix, day);
    write.DeleteRange(Table::kMeta, begin, end);
  }
  for (const WindowDay day : batch.windows_retired) {
    window_range({}, day);
    write.DeleteRange(Table::kApplied, begin, end);
    write.DeleteRange(Table::kLines, begin, end);
  }
  for (const std::string& key : retired_exception_keys_) write.Delete(Table::kExceptions, key);
  for (const WindowDay day : touched_windows_) {
    WindowStateKey(day, key_scratch_);
    EncodeWindowRecord(records_.at(day), value_scratch_);
    write.Put(Table::kMeta, key_scratch_, value_scratch_);
  }
}

void WindowBook::ForgetClosed() {
  std::erase_if(gross_, [this](const auto& entry) { return PersistedState(std::get<0>(entry.first)) != WindowState::kOpen; });
  gross_cache_.Clear();
}

// ---- what others see ----------------------------------------------------------------------------------

std::shared_ptr<const WindowTable> WindowBook::BuildTable(int64_t now_ms) const {
  auto table = std::make_shared<WindowTable>();
  for (const auto& [day, sum] : day_sums_) (*table)[day].counters = sum;
  for (const auto& [day, record] : records_) {
    WindowInfo& info = (*table)[day];
    info.state = record.state;
    info.closed_at_ms = record.closed_at_ms;
    info.files_written_at_ms = record.files_written_at_ms;
    info.retired_at_ms = record.retired_at_ms;
  }
  for (auto& [day, info] : *table) {
    if (info.state >= WindowState::kClosed) continue;
    info.state = calendar_.CutoffInstantMs(day) <= now_ms ? WindowState::kClosing : WindowState::kOpen;
  }
  return table;
}

std::vector<WindowDay> WindowBook::AwaitingFiles() const {
  std::vector<WindowDay> days;
  for (const auto& [day, record] : records_) {
    if (record.state == WindowState::kClosed) days.push_back(day);
  }
  return days;
}

}  // namespace yrd
