#include "engine/ledger/ledger.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <functional>

#include "engine/base/assert.h"
#include "engine/base/money.h"

namespace yrd {
namespace {

void AddChecked(int64_t& total, int64_t delta) {
  const std::optional<int64_t> sum = CheckedAddFen(total, delta);
  // Every amount was validated and totals of a window cannot reach 9.2e18 fen; an overflow
  // here means state this process produced is broken.
  YRD_ASSERT(sum.has_value());
  total = *sum;
}

}  // namespace

Ledger::Ledger(StateStore& store, LedgerOptions options) : store_(store), options_(options) {
  YRD_ASSERT(options_.recent_txn_records_max > 0);
  YRD_ASSERT(!options_.keep_dead_letters || options_.dead_letter_sealer != nullptr);
  YRD_ASSERT(options_.dead_letter_payload != DeadLetterPayload::kWithheld);
  for (PreparedWrite& prepared : prepared_) prepared.write = store.NewWriteBatch();
}

Ledger::~Ledger() {
  stopping_.store(true, std::memory_order_release);
  WakeSortThread();
  if (sort_thread_.joinable()) sort_thread_.join();
}

void Ledger::WakeSortThread() {
  sort_wake_.fetch_add(1, std::memory_order_release);
  sort_wake_.notify_all();
}

void Ledger::Fail(const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(failure_mutex_);
    if (failure_.ok()) failure_ = status;
    failed_.store(true, std::memory_order_release);
  }
  WakeSortThread();
}

absl::Status Ledger::Failure() const {
  std::lock_guard<std::mutex> lock(failure_mutex_);
  return failure_.ok() ? absl::InternalError("the ledger failed") : failure_;
}

absl::Status Ledger::Load(int64_t now_ms) {
  absl::StatusOr<LineIds> line_ids = LoadLineIds(store_);
  if (!line_ids.ok()) return line_ids.status();
  line_ids_ = *std::move(line_ids);
  new_line_ids_.clear();
  std::string value;
  bool found = false;
  if (absl::Status s = store_.Get(Table::kMeta, kCommitSequenceKey, value, found); !s.ok()) return s;
  if (found) {
    if (value.size() != 8) return absl::DataLossError("commit_sequence record is damaged");
    commit_sequence_.store(ReadBigEndian64(value.data()));
  }
  absl::Status decode_status;
  absl::Status s = store_.Scan(Table::kMeta, kOffsetKeyPrefix, {}, [&](std::string_view key, std::string_view v) {
    if (key.size() != kOffsetKeyPrefix.size() + 5 || v.size() != 8) {
      decode_status = absl::DataLossError("an offset record is damaged");
      return false;
    }
    const auto topic = static_cast<SourceTopic>(key[kOffsetKeyPrefix.size()]);
    const auto partition = static_cast<int32_t>(ReadBigEndian32(key.data() + kOffsetKeyPrefix.size() + 1));
    offsets_[{topic, partition}] = static_cast<int64_t>(ReadBigEndian64(v.data()));
    return true;
  });
  if (!s.ok()) return s;
  if (!decode_status.ok()) return decode_status;
  s = store_.Scan(Table::kMeta, kWindowKeyPrefix, {}, [&](std::string_view key, std::string_view v) {
    WindowRecord record;
    if (key.size() != kWindowKeyPrefix.size() + 4 || !DecodeWindowRecord(v, record)) {
      decode_status = absl::DataLossError("a window record is damaged");
      return false;
    }
    windows_[WindowFromKeyBits(ReadBigEndian32(key.data() + kWindowKeyPrefix.size()))] = record;
    return true;
  });
  if (!s.ok()) return s;
  if (!decode_status.ok()) return decode_status;

  // Every window's counters (one record per window): a window that closed while the daemon was
  // down is found here and closed on the first batch.
  s = store_.Scan(Table::kMeta, kCountersKeyPrefix, {}, [&](std::string_view key, std::string_view v) {
    WindowCounters counters;
    if (key.size() != kCountersKeyPrefix.size() + 4 || !DecodeWindowCounters(v, counters)) {
      decode_status = absl::DataLossError("a window counters record is damaged");
      return false;
    }
    counters_[WindowFromKeyBits(ReadBigEndian32(key.data() + kCountersKeyPrefix.size()))].counters = counters;
    return true;
  });
  if (!s.ok()) return s;
  if (!decode_status.ok()) return decode_status;
  absl::StatusOr<std::optional<uint64_t>> lines_through = ReadLinesThrough(store_);
  if (!lines_through.ok()) return lines_through.status();
  if (!lines_through->has_value()) lines_checkpoint_due_ = true;  // kLines is complete: say so with the next commit
  // The lines of every window not closed yet, the ones the clock closes with the first batch
  // included: a close checkpoints them, so they must be whole in memory. They are read as any
  // reader reads them and count as changed, so the next checkpoint writes them all.
  for (const auto& [day, entry] : counters_) {
    if (PersistedState(day) >= WindowState::kClosed) continue;
    uint64_t replayed = 0;
    absl::StatusOr<std::vector<WindowLine>> lines = ReadWindowLines(store_, day, &replayed, &line_ids_);
    if (!lines.ok()) return lines.status();
    applied_since_checkpoint_ += replayed;
    for (const WindowLine& line : *lines) TouchLine(LineIndex(day, line.line_key)) = line.totals;
  }
  if (s = LoadPartitionGross(); !s.ok()) return s;
  if (s = LoadRecentTxn(now_ms); !s.ok()) return s;
  prepared_sequence_ = commit_sequence_.load();
  prepared_offsets_ = offsets_;
  published_windows_.store(BuildWindowTable(now_ms));
  return absl::OkStatus();
}

absl::Status Ledger::LoadPartitionGross() {
  bool damaged = false;
  absl::Status s = store_.Scan(Table::kMeta, kGrossKeyPrefix, {}, [&](std::string_view key, std::string_view value) {
    PartitionGross gross;
    damaged = !DecodeGross(key, value, gross);
    if (!damaged && PersistedState(gross.day) < WindowState::kClosed) {
      partition_gross_[{gross.day, gross.topic, gross.partition}].gross_fen = gross.gross_fen;
    }
    return !damaged;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a partition gross record is damaged");
  for (const auto& [day, entry] : counters_) {
    if (PersistedState(day) >= WindowState::kClosed) continue;
    const auto first = partition_gross_.lower_bound({day, SourceTopic::kTaps, 0});
    if (first != partition_gross_.end() && std::get<0>(first->first) == day) continue;
    std::string prefix;
    AppendBigEndian32(prefix, WindowKeyBits(day));
    absl::Status failure;
    s = store_.Scan(Table::kApplied, prefix, {}, [&](std::string_view, std::string_view blob) {
      size_t position = 0;
      AppliedRecord record;
      bool record_damaged = false;
      while (NextAppliedRecord(blob, position, line_ids_, record, record_damaged)) {
        const SourceTopic topic = FamilyOf(record.kind) == Family::kTaps ? SourceTopic::kTaps : SourceTopic::kMedical;
        GrossEntry& entry = partition_gross_[{day, topic, record.partition}];
        // An earlier version bounded only each line: past the bound, the partition takes no more
        // money in this window (saturated, so such a window never stops a start).
        const std::optional<int64_t> sum = CheckedAddFen(entry.gross_fen, record.amount_fen);
        entry.gross_fen = sum && *sum <= kPartitionWindowGrossFenMax ? *sum : kPartitionWindowGrossFenMax + 1;
        entry.touched_sequence = kStoreWithNextWrite;
      }
      if (record_damaged) failure = absl::DataLossError("an applied record is damaged");
      return failure.ok();
    });
    if (!s.ok()) return s;
    if (!failure.ok()) return failure;
  }
  return absl::OkStatus();
}

// ---- recent transaction records ---------------------------------------------------------------

bool Ledger::IndexRecentTxn(RecentTxn& recent, std::unique_ptr<std::string> blob) {
  const std::string_view bytes = *blob;
  size_t position = 0;
  std::string_view key, record;
  bool damaged = false;
  // Keys are read kPrefetchAhead entries before they are inserted, and their slots prefetched.
  std::array<std::pair<std::string_view, std::string_view>, kPrefetchAhead> ahead;
  size_t read = 0, inserted = 0;
  auto insert_oldest = [&] {
    const auto& [k, r] = ahead[inserted++ % kPrefetchAhead];
    recent.index.insert_or_assign(k, r);
    ++recent.records_written;
  };
  while (NextRecentTxnEntry(bytes, position, key, record, damaged)) {
    if (read - inserted == kPrefetchAhead) insert_oldest();
    recent.index.prefetch(key);
    ahead[read++ % kPrefetchAhead] = {key, record};
  }
  while (inserted < read) insert_oldest();
  recent.blobs.push_back(std::move(blob));
  return !damaged;
}

absl::Status Ledger::LoadRecentTxn(int64_t now_ms) {
  bool damaged = false;
  const absl::Status s = store_.Scan(Table::kRecentTxn, {}, {}, [&](std::string_view key, std::string_view value) {
    if (key.size() != 8 || !IndexRecentTxn(recent_, std::make_unique<std::string>(value))) {
      damaged = true;
      return false;
    }
    recent_.through_sequence = ReadBigEndian64(key.data());
    return true;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a value of recent transaction records (kRecentTxn) is damaged");
  recent_.started_at_ms = now_ms;
  recent_txn_records_.store(recent_.index.size(), std::memory_order_relaxed);
  return absl::OkStatus();
}

const std::string_view* Ledger::FindRecentTxn(std::string_view key) const {
  if (const auto it = recent_.index.find(key); it != recent_.index.end()) return &it->second;
  if (sorting_ != nullptr) {
    if (const auto it = sorting_->index.find(key); it != sorting_->index.end()) return &it->second;
  }
  return nullptr;
}

void Ledger::MaybeStartRecentTxnSort(int64_t now_ms) {
  recent_txn_records_.store(recent_.index.size() + (sorting_ != nullptr ? sorting_->index.size() : 0),
                            std::memory_order_relaxed);
  if (sorting_ != nullptr || recent_.records_written == 0) return;
  const bool enough = recent_.records_written >= options_.recent_txn_records_max;
  if (!enough && now_ms - recent_.started_at_ms < kRecentTxnAgeMaxMs) return;
  sorting_ = std::make_unique<RecentTxn>(std::move(recent_));
  recent_ = RecentTxn{};
  sort_done_.store(false, std::memory_order_relaxed);
  sort_thread_ = std::thread([this] { SortRecentTxn(); });
}

void Ledger::SortRecentTxn() {
  // Background work: the ledger and commit threads come first on a busy machine.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kSortThreadNice);
  const RecentTxn& recent = *sorting_;
  // Sorted by the keys' first bytes held inline (OrderPrefix), then by the whole keys.
  struct Sortable {
    OrderPrefix prefix;
    std::string_view key, record;
  };
  std::vector<Sortable> sortable;
  sortable.reserve(recent.index.size());
  for (const auto& [key, record] : recent.index) sortable.push_back({OrderPrefixOf(key), key, record});
  std::sort(sortable.begin(), sortable.end(), [](const Sortable& a, const Sortable& b) {
    if (a.prefix != b.prefix) return a.prefix < b.prefix;
    return a.key < b.key;
  });
  std::vector<std::pair<std::string_view, std::string_view>> records;
  records.reserve(sortable.size());
  for (const Sortable& entry : sortable) records.emplace_back(entry.key, entry.record);
  sortable = {};
  // Only committed records may reach kTxn: wait for the commit of the last batch in the set.
  absl::Status status;
  for (;;) {
    const uint32_t seen = sort_wake_.load(std::memory_order_acquire);
    if (commit_sequence_.load(std::memory_order_acquire) >= recent.through_sequence) break;
    if (failed()) {
      status = Failure();
      break;
    }
    if (stopping_.load(std::memory_order_acquire)) {
      status = absl::AbortedError("the ledger stopped before the recent transaction records were committed");
      break;
    }
    sort_wake_.wait(seen, std::memory_order_acquire);
  }
  if (status.ok()) status = store_.IngestSorted(Table::kTxn, records);
  sort_status_ = std::move(status);
  sort_done_.store(true, std::memory_order_release);
}

absl::Status Ledger::TakeRecentTxnSort() {
  if (!sort_thread_.joinable()) return Failure();  // a failed sort was taken before
  sort_thread_.join();
  absl::Status status = std::move(sort_status_);
  sort_status_ = absl::OkStatus();
  if (!status.ok()) {
    Fail(status);
    return status;
  }
  // The next write deletes the kRecentTxn values the sort stored into kTxn.
  recent_txn_sorted_through_ = sorting_->through_sequence;
  sorting_.reset();
  recent_txn_sorts_.fetch_add(1, std::memory_order_relaxed);
  recent_txn_records_.store(recent_.index.size(), std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status Ledger::AwaitRecentTxnSort() {
  if (sorting_ == nullptr) return failed() ? Failure() : absl::OkStatus();
  return TakeRecentTxnSort();
}

WindowState Ledger::PersistedState(WindowDay day) const {
  const auto it = windows_.find(day);
  return it == windows_.end() ? WindowState::kOpen : it->second.state;
}

std::vector<WindowDay> Ledger::WindowsAwaitingFiles() const {
  std::vector<WindowDay> days;
  for (const auto& [day, record] : windows_) {
    if (record.state == WindowState::kClosed) days.push_back(day);
  }
  return days;
}

void Ledger::CloseWindow(WindowDay day, int64_t closed_at_ms, const Registry& registry, Batch& batch) {
  if (PersistedState(day) >= WindowState::kClosed) return;  // closing twice is a no-op
  WindowRecord& record = windows_[day];
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

void Ledger::ApplyWindowCommands(Batch& batch) {
  const int64_t now_ms = batch.now_ms;
  // The clock closes every window with activity once its cutoff plus grace has passed; the
  // close time is that instant, so files generated again carry the same header.
  for (const auto& [day, entry] : counters_) {
    const int64_t close_at_ms = options_.calendar.CloseInstantMs(day);
    if (close_at_ms <= now_ms) CloseWindow(day, close_at_ms, *batch.registry, batch);
  }
  for (const WindowCommand& command : batch.commands) {
    switch (command.kind) {
      case WindowCommand::Kind::kClose:
        // A day with no activity and no state is not a window: closing it would invent one.
        if (counters_.contains(command.day) || windows_.contains(command.day)) {
          CloseWindow(command.day, now_ms, *batch.registry, batch);
        }
        break;
      case WindowCommand::Kind::kMarkFilesWritten: {
        auto it = windows_.find(command.day);
        if (it != windows_.end() && it->second.state == WindowState::kClosed) {
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
    }
  }
}

void Ledger::RetireWindow(const WindowCommand& command, Batch& batch) {
  // Only a window whose files are written gives up its records; its ranges go once, its
  // exceptions with every command that names them (a large window's take several).
  const auto it = windows_.find(command.day);
  if (it == windows_.end() || it->second.state != WindowState::kFilesWritten) return;
  retired_exception_keys_.insert(retired_exception_keys_.end(), command.exception_keys.begin(),
                                 command.exception_keys.end());
  if (it->second.retired_at_ms != 0) return;
  it->second.retired_at_ms = batch.now_ms;
  touched_windows_.push_back(command.day);
  batch.windows_retired.push_back(command.day);
}

void Ledger::AppendRetirements(const Batch& batch, StateWriteBatch& write) {
  std::string begin, end;
  auto window_range = [&](std::string_view prefix, WindowDay day) {
    begin.assign(prefix);
    AppendBigEndian32(begin, WindowKeyBits(day));
    end.assign(prefix);
    AppendBigEndian32(end, WindowKeyBits(day + 1));
  };
  // A closed window's partition gross is never needed again.
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
  retired_exception_keys_.clear();
}

std::shared_ptr<const WindowTable> Ledger::BuildWindowTable(int64_t now_ms) const {
  auto table = std::make_shared<WindowTable>();
  for (const auto& [day, entry] : counters_) (*table)[day].counters = entry.counters;
  for (const auto& [day, record] : windows_) {
    WindowInfo& info = (*table)[day];
    info.state = record.state;
    info.closed_at_ms = record.closed_at_ms;
    info.files_written_at_ms = record.files_written_at_ms;
    info.retired_at_ms = record.retired_at_ms;
  }
  for (auto& [day, info] : *table) {
    if (info.state >= WindowState::kClosed) continue;
    info.state = options_.calendar.CutoffInstantMs(day) <= now_ms ? WindowState::kClosing : WindowState::kOpen;
  }
  return table;
}

bool Ledger::IsClosed(WindowDay day, int64_t now_ms) const {
  if (options_.calendar.CloseInstantMs(day) <= now_ms) return true;
  const auto it = windows_.find(day);
  return it != windows_.end() && it->second.state >= WindowState::kClosed;
}

WindowDay Ledger::OldestOpenWindow(int64_t now_ms) const {
  // The day before today may still be in its grace period.
  WindowDay day = options_.calendar.DayOf(now_ms) - 1;
  for (int32_t i = 0; i < kOpenWindowSearchDaysMax; ++i, ++day) {
    if (!IsClosed(day, now_ms)) return day;
  }
  YRD_ASSERT(false && "no open window within a year of the clock");
  return day;
}

std::pair<WindowDay, bool> Ledger::RouteWindow(int64_t occurred_at_ms, int64_t now_ms) const {
  const WindowDay natural = options_.calendar.DayOf(occurred_at_ms);
  if (!IsClosed(natural, now_ms)) return {natural, false};
  return {OldestOpenWindow(now_ms), true};
}

uint32_t Ledger::StateFor(Family family, std::string_view txn_id) {
  auto& index = txn_index_[static_cast<size_t>(family)];
  const auto [it, inserted] = index.try_emplace(txn_id, static_cast<uint32_t>(txn_states_used_));
  if (!inserted) return it->second;
  if (txn_states_used_ == txn_states_.size()) txn_states_.emplace_back();
  TxnState& state = txn_states_[txn_states_used_];
  TxnKey(family, txn_id, state.key);
  state.exists = false;
  state.dirty = false;
  pending_lookups_.push_back(static_cast<uint32_t>(txn_states_used_));
  return static_cast<uint32_t>(txn_states_used_++);
}

bool Ledger::AdoptRecord(TxnState& state, std::string_view bytes) {
  if (!DecodeTxnRecord(bytes, line_ids_, state.record)) return false;
  // Past the dedup horizon: as if purged already (state.exists stays false).
  if (state.record.occurred_at_ms < horizon_start_ms_) return true;
  if (state.record.line_id == kNoLineId && !state.record.line_key.empty()) {
    // A record written before line ids: its line gets one, stored with this batch.
    bool added = false;
    state.record.line_id = line_ids_.IdOf(state.record.line_key, added);
    if (added) new_line_ids_.push_back(state.record.line_id);
  }
  // A tap or a settlement has a line: its refunds and cancellations net into it.
  const bool has_line = state.record.kind == EventKind::kTap || state.record.kind == EventKind::kMedicalSettlement;
  if (has_line && state.record.line_id == kNoLineId) return false;
  // The record's views must outlive `bytes`. The ledger goes by the line's number only; the
  // original's id moves into the state's own string.
  state.record.line_key = {};
  state.original_txn_id.assign(state.record.original_txn_id);
  state.record.original_txn_id = state.original_txn_id;
  state.exists = true;
  return true;
}

absl::Status Ledger::LookUpPending() {
  // A recent record (of a batch committed or still waiting for its commit) is newer than kTxn's.
  lookup_keys_.clear();
  lookup_states_.clear();
  for (size_t k = 0; k < pending_lookups_.size(); ++k) {
    // The index is large and read at random: ask for the slots a few keys ahead.
    if (k + kPrefetchAhead < pending_lookups_.size()) {
      recent_.index.prefetch(std::string_view(txn_states_[pending_lookups_[k + kPrefetchAhead]].key));
    }
    const uint32_t index = pending_lookups_[k];
    TxnState& state = txn_states_[index];
    const std::string_view* recent = FindRecentTxn(state.key);
    if (recent == nullptr) {
      lookup_keys_.push_back(state.key);
      lookup_states_.push_back(index);
    } else if (!AdoptRecord(state, *recent)) {
      return absl::DataLossError(Cat("transaction record ", state.key.substr(1), " is damaged"));
    }
  }
  pending_lookups_.clear();
  const size_t count = lookup_keys_.size();
  if (count == 0) return absl::OkStatus();
  if (lookup_values_.size() < count) lookup_values_.resize(count);
  lookup_found_.assign(count, 0);
  if (absl::Status s = store_.MultiGet(Table::kTxn, lookup_keys_, std::span(lookup_values_.data(), count),
                                       lookup_found_);
      !s.ok()) {
    return s;
  }
  for (size_t i = 0; i < count; ++i) {
    if (!lookup_found_[i]) continue;
    TxnState& state = txn_states_[lookup_states_[i]];
    if (!AdoptRecord(state, lookup_values_[i])) {
      return absl::DataLossError(Cat("transaction record ", state.key.substr(1), " is damaged"));
    }
  }
  return absl::OkStatus();
}

uint32_t Ledger::LineIndex(WindowDay day, std::string_view line_key) {
  line_key_scratch_.clear();
  AppendBigEndian32(line_key_scratch_, WindowKeyBits(day));
  line_key_scratch_.append(line_key);
  if (const auto it = line_index_.find(std::string_view(line_key_scratch_)); it != line_index_.end()) {
    return it->second;
  }
  const auto index = static_cast<uint32_t>(lines_.size());
  LineEntry& entry = lines_.emplace_back();
  entry.store_key = line_key_scratch_;
  bool added = false;
  entry.line_id = line_ids_.IdOf(line_key, added);
  if (added) new_line_ids_.push_back(entry.line_id);
  line_index_.emplace(entry.store_key, index);
  return index;
}

uint32_t Ledger::RouteLine(WindowDay day, const DecodedEvent& event) {
  const bool tap = event.kind == EventKind::kTap;
  YRD_ASSERT(tap || event.kind == EventKind::kMedicalSettlement);
  auto build_key = [&] {
    if (tap) {
      TapLineKey(event, value_scratch_);
    } else {
      SettlementLineKey(event, value_scratch_);
    }
  };
  if (line_routes_registry_ == nullptr) {  // no registry held: by the key text
    build_key();
    return LineIndex(day, value_scratch_);
  }
  const LineRoute route =
      tap ? LineRoute{event.issuer_bank, event.merchant, event.merchant_bank, day}
          : LineRoute{event.insured_fund, event.merchant, event.institution_fund, day};
  const auto [it, inserted] = line_routes_.try_emplace(route, 0);
  if (inserted) {
    build_key();
    it->second = LineIndex(day, value_scratch_);
  }
  return it->second;
}

LineTotals& Ledger::TouchLine(uint32_t index) {
  LineEntry& entry = lines_[index];
  if (!entry.dirty) {
    entry.dirty = true;
    dirty_lines_.push_back(index);
  }
  return entry.totals;
}

void Ledger::ForgetClosedWindows() {
  YRD_ASSERT(dirty_lines_.empty());  // just checkpointed
  std::vector<LineEntry> open_lines;
  line_index_.clear();
  for (LineEntry& entry : lines_) {
    const WindowDay day = WindowFromKeyBits(ReadBigEndian32(entry.store_key.data()));
    if (PersistedState(day) != WindowState::kOpen) continue;
    line_index_.emplace(entry.store_key, static_cast<uint32_t>(open_lines.size()));
    open_lines.push_back(std::move(entry));
  }
  lines_ = std::move(open_lines);
  line_routes_.clear();  // its line numbers were positions in lines_
  std::erase_if(applied_blobs_, [this](const auto& entry) { return PersistedState(entry.first) != WindowState::kOpen; });
  std::erase_if(partition_gross_,
                [this](const auto& entry) { return PersistedState(std::get<0>(entry.first)) != WindowState::kOpen; });
  cached_gross_ = nullptr;
}

WindowCounters& Ledger::TouchCounters(WindowDay day) {
  if (cached_counters_ == nullptr || cached_counters_day_ != day) {
    cached_counters_ = &counters_[day];  // a map's entries stay where they are
    cached_counters_day_ = day;
    cached_counters_->touched_sequence = prepared_sequence_ + 1;
  }
  return cached_counters_->counters;
}

bool Ledger::AddPartitionGross(const MessageSlot& slot, int64_t amount_fen) {
  const GrossIndex index{slot.window, slot.topic, slot.partition};
  if (cached_gross_ == nullptr || cached_gross_index_ != index) {
    cached_gross_ = &partition_gross_[index];  // a map's entries stay where they are
    cached_gross_index_ = index;
  }
  const std::optional<int64_t> sum = CheckedAddFen(cached_gross_->gross_fen, amount_fen);
  if (!sum || *sum > kPartitionWindowGrossFenMax) return false;
  cached_gross_->gross_fen = *sum;
  cached_gross_->touched_sequence = prepared_sequence_ + 1;
  return true;
}

void Ledger::Reject(MessageSlot& slot, Reason reason, WindowDay oldest_open, int64_t now_ms) {
  slot.fate = Fate::kRejected;
  slot.reason = reason;
  if (!slot.event.timestamp_checked) {
    slot.window = oldest_open;
    slot.late = false;
  } else {
    std::tie(slot.window, slot.late) = RouteWindow(slot.event.occurred_at_ms, now_ms);
  }
  AddChecked(TouchCounters(slot.window).exception_counts[static_cast<size_t>(reason)], 1);
}

void Ledger::RecordApplied(const MessageSlot& slot, uint32_t line) {
  const DecodedEvent& e = slot.event;
  AppliedRecord record;
  record.kind = e.kind;
  record.late = slot.late;
  record.occurred_at_ms = e.occurred_at_ms;
  record.partition = slot.partition;
  record.offset = slot.offset;
  record.amount_fen = e.amount_fen;
  record.fund_pay_fen = e.fund_pay_fen;
  record.account_pay_fen = e.account_pay_fen;
  record.cash_pay_fen = e.cash_pay_fen;
  record.txn_id = e.txn_id;
  record.original_txn_id = e.original_txn_id;
  record.line_id = lines_[line].line_id;
  record.terminal_id = e.terminal_id;
  record.card_masked = e.card_masked_view();
  record.card_token = e.card_token;
  if (cached_applied_blob_ == nullptr || cached_applied_day_ != slot.window) {
    cached_applied_blob_ = &applied_blobs_[slot.window];  // a map's entries stay where they are
    cached_applied_day_ = slot.window;
  }
  AppendAppliedRecord(record, *cached_applied_blob_);
}

void Ledger::ApplySlot(MessageSlot& slot, size_t slot_index, WindowDay oldest_open, int64_t now_ms,
                       BatchResult& result) {
  if (slot.fate == Fate::kRejected) {
    Reject(slot, *slot.reason, oldest_open, now_ms);
    ++result.rejected_count;
    return;
  }
  DecodedEvent& e = slot.event;
  const auto [self_state, original_state] = slot_states_[slot_index];
  TxnState& self = txn_states_[self_state];
  if (self.exists) {
    if (self.record.digest == e.digest) {
      slot.fate = Fate::kExactDuplicate;
      std::tie(slot.window, slot.late) = RouteWindow(e.occurred_at_ms, now_ms);
      AddChecked(TouchCounters(slot.window).exact_duplicate_count, 1);
      AddChecked(self.record.duplicate_count, 1);
      self.dirty = true;
      ++result.exact_duplicate_count;
    } else {
      slot.first_digest = self.record.digest;
      e.rejection = RejectionDetail::Text("txn_id", "was applied before with other content", e.txn_id);
      Reject(slot, Reason::kDuplicateConflict, oldest_open, now_ms);
      ++result.rejected_count;
    }
    return;
  }

  // Resolve the original before routing so a rejected refund touches nothing.
  TxnState* original = nullptr;
  if (e.kind == EventKind::kTapRefund || e.kind == EventKind::kMedicalCancellation) {
    original = &txn_states_[original_state];
    const EventKind wanted = e.kind == EventKind::kTapRefund ? EventKind::kTap : EventKind::kMedicalSettlement;
    if (!original->exists || original->record.kind != wanted) {
      e.rejection = RejectionDetail::Text(
          "original_txn_id", wanted == EventKind::kTap ? "names no applied tap" : "names no applied settlement",
          e.original_txn_id);
      Reject(slot, Reason::kUnknownOriginal, oldest_open, now_ms);
      ++result.rejected_count;
      return;
    }
    if (e.kind == EventKind::kTapRefund) {
      const std::optional<int64_t> refunded = CheckedAddFen(original->record.refunded_fen, e.amount_fen);
      if (!refunded || *refunded > original->record.amount_fen) {
        e.rejection = RejectionDetail::Number(
            "amount_fen", "would take the refunds of the original tap past its amount", e.amount_fen);
        Reject(slot, Reason::kRefundExceedsOriginal, oldest_open, now_ms);
        ++result.rejected_count;
        return;
      }
    } else if (original->record.cancelled) {
      e.rejection = RejectionDetail::Text("original_txn_id", "was cancelled before", e.original_txn_id);
      Reject(slot, Reason::kAlreadyCancelled, oldest_open, now_ms);
      ++result.rejected_count;
      return;
    }
  }

  std::tie(slot.window, slot.late) = RouteWindow(e.occurred_at_ms, now_ms);
  // Every total of the window stays within int64 (engine/base/money.h): the last check, so a
  // rejected event changes nothing.
  const int64_t moved_fen = e.kind == EventKind::kMedicalCancellation ? original->record.amount_fen : e.amount_fen;
  if (!AddPartitionGross(slot, moved_fen)) {
    e.rejection = RejectionDetail::Number(
        e.kind == EventKind::kMedicalSettlement ? "total_fen" : "amount_fen",
        "would take this source partition's gross of the window past 2^48 - 1 fen", moved_fen);
    if (e.kind == EventKind::kMedicalCancellation) {
      e.rejection = RejectionDetail::Text(
          "original_txn_id", "the cancelled total would take this source partition's gross of the window past 2^48 - 1 fen",
          e.original_txn_id);
    }
    Reject(slot, Reason::kAmountInvalid, oldest_open, now_ms);
    ++result.rejected_count;
    return;
  }
  slot.fate = Fate::kApplied;
  TxnRecord& record = self.record;
  record = TxnRecord{};
  record.kind = e.kind;
  record.late = slot.late;
  record.window = slot.window;
  record.partition = slot.partition;
  record.offset = slot.offset;
  record.occurred_at_ms = e.occurred_at_ms;
  record.digest = e.digest;
  record.amount_fen = e.amount_fen;
  self.original_txn_id.clear();

  uint32_t line = 0;
  switch (e.kind) {
    case EventKind::kTap:
      line = RouteLine(slot.window, e);
      record.line_id = lines_[line].line_id;
      break;
    case EventKind::kMedicalSettlement:
      line = RouteLine(slot.window, e);
      record.line_id = lines_[line].line_id;
      record.fund_pay_fen = e.fund_pay_fen;
      record.account_pay_fen = e.account_pay_fen;
      record.cash_pay_fen = e.cash_pay_fen;
      break;
    case EventKind::kTapRefund:
      // A refund or a cancellation nets into its original's line.
      line = LineIndex(slot.window, *line_ids_.KeyOf(original->record.line_id));
      self.original_txn_id.assign(e.original_txn_id);
      AddChecked(original->record.refunded_fen, e.amount_fen);
      original->dirty = true;
      break;
    case EventKind::kMedicalCancellation:
      line = LineIndex(slot.window, *line_ids_.KeyOf(original->record.line_id));
      self.original_txn_id.assign(e.original_txn_id);
      original->record.cancelled = true;
      original->dirty = true;
      // A cancellation carries the whole settlement's amounts, for the detail files.
      e.amount_fen = original->record.amount_fen;
      e.fund_pay_fen = original->record.fund_pay_fen;
      e.account_pay_fen = original->record.account_pay_fen;
      e.cash_pay_fen = original->record.cash_pay_fen;
      record.amount_fen = e.amount_fen;
      break;
  }
  // The partition gross bounds every line (engine/base/money.h): an overflow here means state this
  // process produced is broken.
  const bool netted =
      NetIntoLine(e.kind, e.amount_fen, e.fund_pay_fen, e.account_pay_fen, e.cash_pay_fen, TouchLine(line));
  YRD_ASSERT(netted);
  record.original_txn_id = self.original_txn_id;
  self.exists = true;
  self.dirty = true;

  WindowCounters& counters = TouchCounters(slot.window);
  AddChecked(counters.applied_count, 1);
  if (slot.late) AddChecked(counters.late_count, 1);
  ++result.applied_count;
  if (slot.late) ++result.late_count;
  RecordApplied(slot, line);
}

void Ledger::BuildWrite(const Batch& batch, PreparedWrite& prepared) {
  StateWriteBatch& write = *prepared.write;
  write.Clear();
  const uint64_t sequence = prepared_sequence_ + 1;
  // The batch's transaction records go into one kRecentTxn value, which the ledger then keeps
  // and looks records up in until a sort moves them into kTxn.
  auto blob = std::make_unique<std::string>();
  blob->reserve(recent_blob_bytes_);  // about the last one's size: it does not grow by copies
  StartRecentTxnBlob(*blob);
  bool records_written = false;
  for (size_t i = 0; i < txn_states_used_; ++i) {
    TxnState& state = txn_states_[i];
    if (!state.dirty) continue;
    state.record.original_txn_id = state.original_txn_id;
    EncodeTxnRecord(state.record, value_scratch_);
    AppendRecentTxnEntry(state.key, value_scratch_, *blob);
    records_written = true;
  }
  if (records_written) {
    recent_blob_bytes_ = blob->size();
    RecentTxnKey(sequence, key_scratch_);
    write.Put(Table::kRecentTxn, key_scratch_, *blob);
    if (recent_.records_written == 0) {
      recent_.started_at_ms = batch.now_ms;
      // Sized once for the records it will hold, instead of rehashing as it grows.
      recent_.index.reserve(std::min<uint64_t>(options_.recent_txn_records_max, kRecentTxnIndexReserveMax));
    }
    const bool indexed = IndexRecentTxn(recent_, std::move(blob));
    YRD_ASSERT(indexed);
    recent_.through_sequence = sequence;
  }
  // Line numbers first used by this batch's records are stored with them.
  for (const uint32_t id : new_line_ids_) {
    LineIdKey(id, key_scratch_);
    write.Put(Table::kMeta, key_scratch_, *line_ids_.KeyOf(id));
  }
  new_line_ids_.clear();
  if (recent_txn_sorted_through_ > recent_txn_deleted_through_) {
    RecentTxnKey(recent_txn_sorted_through_ + 1, key_scratch_);
    write.DeleteRange(Table::kRecentTxn, std::string_view(), key_scratch_);
    recent_txn_deleted_through_ = recent_txn_sorted_through_;
  }
  // The lines are checkpointed now and then, not with every commit: kApplied holds what the
  // commits in between add to them.
  applied_since_checkpoint_ += batch.ledger_result.applied_count;
  if (lines_checkpoint_due_ || !batch.windows_closed.empty() ||
      applied_since_checkpoint_ >= options_.lines_checkpoint_applied_max) {
    // In key order: the store's sorted in-memory table then inserts each line next to the
    // previous one instead of searching from the top.
    std::sort(dirty_lines_.begin(), dirty_lines_.end(),
              [this](uint32_t a, uint32_t b) { return lines_[a].store_key < lines_[b].store_key; });
    for (const uint32_t index : dirty_lines_) {
      EncodeLineTotals(lines_[index].totals, value_scratch_);
      write.Put(Table::kLines, lines_[index].store_key, value_scratch_);
      lines_[index].dirty = false;
    }
    dirty_lines_.clear();
    value_scratch_.clear();
    AppendBigEndian64(value_scratch_, sequence);
    write.Put(Table::kMeta, kLinesThroughKey, value_scratch_);
    applied_since_checkpoint_ = 0;
    lines_checkpoint_due_ = false;
    if (!batch.windows_closed.empty()) ForgetClosedWindows();
  }
  for (auto& [day, entry] : counters_) {
    if (entry.touched_sequence != sequence) continue;
    CountersKey(day, key_scratch_);
    EncodeWindowCounters(entry.counters, value_scratch_);
    write.Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  for (auto& [index, entry] : partition_gross_) {
    if (entry.touched_sequence < sequence) continue;
    entry.touched_sequence = sequence;
    GrossKey(std::get<0>(index), std::get<1>(index), std::get<2>(index), key_scratch_);
    EncodeGross(entry.gross_fen, value_scratch_);
    write.Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  AppendRetirements(batch, write);
  for (const WindowDay day : touched_windows_) {
    WindowStateKey(day, key_scratch_);
    EncodeWindowRecord(windows_.at(day), value_scratch_);
    write.Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  for (auto& [day, blob] : applied_blobs_) {
    if (blob.empty()) continue;
    AppliedKey(day, sequence, key_scratch_);
    write.Put(Table::kApplied, key_scratch_, blob);
  }
  if (batch.dead_letters_delivered_through > dead_letters_dropped_through_) {
    DeadLetterKeyLimit(batch.dead_letters_delivered_through, key_scratch_);
    write.DeleteRange(Table::kMeta, kDeadLetterKeyPrefix, key_scratch_);
    dead_letters_dropped_through_ = batch.dead_letters_delivered_through;
  }
  for (const MessageSlot& slot : batch.slots()) {
    if (slot.fate != Fate::kRejected) continue;
    DeadLetterCopy copy = DeadLetterCopyOf(slot, sequence, options_.dead_letter_payload, dead_letter_scratch_);
    if (options_.keep_dead_letters) {
      // The copy may hold a card number: the store keeps it sealed.
      options_.dead_letter_sealer->Seal(copy.payload, sealed_scratch_);
      copy.payload = sealed_scratch_;
      DeadLetterKey(sequence, slot.topic, slot.partition, slot.offset, key_scratch_);
      EncodeDeadLetterCopy(copy, value_scratch_);
      write.Put(Table::kMeta, key_scratch_, value_scratch_);
    }
    ExceptionRecord exception;
    exception.reason = *slot.reason;
    exception.topic = slot.topic;
    exception.partition = slot.partition;
    exception.offset = slot.offset;
    exception.window = slot.window;
    exception.message_digest = slot.event.digest;
    exception.first_digest = slot.first_digest;
    exception.txn_id = IsValidId(slot.event.txn_id) ? slot.event.txn_id : std::string_view();
    exception.original_txn_id = IsValidId(slot.event.original_txn_id) ? slot.event.original_txn_id : std::string_view();
    exception.detail = copy.detail;
    exception.message_key = slot.key;
    ExceptionKey(slot.topic, slot.partition, slot.offset, key_scratch_);
    EncodeExceptionRecord(exception, value_scratch_);
    write.Put(Table::kExceptions, key_scratch_, value_scratch_);
  }
  // The committed offsets move only once the write returned OK (Commit moves them in).
  for (const MessageSlot& slot : batch.slots()) {
    int64_t& next = prepared_offsets_[{slot.topic, slot.partition}];
    // The source delivers each partition in order, without gaps it has not reported, and only
    // partitions below the bound the totals rely on (engine/base/money.h).
    YRD_ASSERT(slot.offset >= next);
    YRD_ASSERT(slot.partition >= 0 && slot.partition < kSourcePartitionsPerTopicMax);
    next = slot.offset + 1;
  }
  prepared.offsets = prepared_offsets_;
  for (const auto& [topic_partition, next] : prepared.offsets) {
    OffsetKey(topic_partition.first, topic_partition.second, key_scratch_);
    value_scratch_.clear();
    AppendBigEndian64(value_scratch_, static_cast<uint64_t>(next));
    write.Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  value_scratch_.clear();
  AppendBigEndian64(value_scratch_, sequence);
  write.Put(Table::kMeta, kCommitSequenceKey, value_scratch_);
}

absl::Status Ledger::Apply(Batch& batch, BatchResult& result) {
  if (absl::Status s = Prepare(batch); !s.ok()) return s;
  result = batch.ledger_result;
  return Commit(batch);
}

absl::Status Ledger::WaitForPreparedRoom() {
  for (;;) {
    const uint64_t finished = finished_count_.load(std::memory_order_acquire);
    // Checked after the load: a commit that failed before it finished is seen here.
    if (failed()) return Failure();
    if (prepared_count_ - finished < kPreparedAheadMax) return absl::OkStatus();
    finished_count_.wait(finished, std::memory_order_acquire);
  }
}

absl::Status Ledger::Prepare(Batch& batch) {
  batch.ledger_prepared = false;
  if (absl::Status s = WaitForPreparedRoom(); !s.ok()) return s;
  // A finished sort is taken; a running one is waited for once the recent records are as many
  // again, so memory holds at most about twice recent_txn_records_max of them.
  if (sorting_ != nullptr && (sort_done_.load(std::memory_order_acquire) ||
                              recent_.records_written >= options_.recent_txn_records_max)) {
    if (absl::Status s = TakeRecentTxnSort(); !s.ok()) return s;
  }
  BatchResult& result = batch.ledger_result;
  result = BatchResult{};
  PreparedWrite& prepared = prepared_[prepared_count_ % kPreparedAheadMax];
  const int64_t now_ms = batch.now_ms;
  horizon_start_ms_ = now_ms - options_.dedup_horizon_ms;
  touched_windows_.clear();
  cached_counters_ = nullptr;  // the counters each window touches now are marked for this batch
  cached_applied_blob_ = nullptr;
  cached_gross_ = nullptr;
  ApplyWindowCommands(batch);
  const WindowDay oldest_open = OldestOpenWindow(now_ms);
  const bool dead_letters_to_drop = batch.dead_letters_delivered_through > dead_letters_dropped_through_;
  if (batch.empty() && touched_windows_.empty() && !dead_letters_to_drop &&
      retired_exception_keys_.empty()) {  // an idle tick: nothing to commit
    prepared.write_needed = false;
    batch.ledger_prepared_number = prepared_count_++;
    batch.ledger_prepared = true;
    MaybeStartRecentTxnSort(now_ms);  // a quiet hour still ages the recent records out
    return absl::OkStatus();
  }

  for (auto& index : txn_index_) {
    // clear() gives a large table's memory back; sized again at once, it does not grow (and
    // rehash) many times during the batch.
    index.clear();
    index.reserve(batch.size());
  }
  txn_states_used_ = 0;
  pending_lookups_.clear();
  for (auto& [day, blob] : applied_blobs_) blob.clear();

  if (batch.registry != line_routes_registry_) {
    line_routes_.clear();
    line_routes_registry_ = batch.registry;
  }
  slot_states_.resize(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const MessageSlot& slot = batch.slots()[i];
    if (slot.fate != Fate::kPending) continue;
    const Family family = FamilyOf(slot.event.kind);
    slot_states_[i] = {StateFor(family, slot.event.txn_id),
                       slot.event.original_txn_id.empty() ? kNoState : StateFor(family, slot.event.original_txn_id)};
  }
  if (absl::Status s = LookUpPending(); !s.ok()) {
    Fail(s);
    return s;
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    ApplySlot(batch.slots()[i], i, oldest_open, now_ms, result);
  }

  BuildWrite(batch, prepared);
  result.store_bytes = prepared.write->size_bytes();
  prepared.write_needed = true;
  prepared.sequence = ++prepared_sequence_;
  batch.commit_sequence = prepared.sequence;
  prepared.windows = BuildWindowTable(now_ms);
  batch.ledger_prepared_number = prepared_count_++;
  batch.ledger_prepared = true;
  MaybeStartRecentTxnSort(now_ms);
  return absl::OkStatus();
}

absl::Status Ledger::Commit(Batch& batch) {
  if (!batch.ledger_prepared) return Failure();  // Prepare failed and said why
  const uint64_t number = finished_count_.load(std::memory_order_relaxed);
  YRD_ASSERT(batch.ledger_prepared_number == number && "batches are committed in the order they were prepared");
  PreparedWrite& prepared = prepared_[number % kPreparedAheadMax];
  absl::Status status = failed() ? Failure() : absl::OkStatus();
  if (status.ok() && prepared.write_needed) {
    status = store_.Write(*prepared.write);
    if (status.ok()) {
      offsets_.swap(prepared.offsets);  // the slot's copy is rebuilt when it is reused
      commit_sequence_.store(prepared.sequence, std::memory_order_release);
      WakeSortThread();
      published_windows_.store(prepared.windows);
    } else {
      Fail(status);
    }
  }
  finished_count_.store(number + 1, std::memory_order_release);
  finished_count_.notify_all();
  return status;
}

}  // namespace yrd
