#include "engine/upgrade/store_upgrade.h"

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/base/strings.h"
#include "engine/store/records.h"

namespace yrd {
namespace {

// Format 3's keys that format 4 replaces.
constexpr size_t kLineIdKeyBytes = kLineIdKeyPrefix.size() + 4;
constexpr size_t kV3CountersKeyBytes = kCountersKeyPrefix.size() + 4;
constexpr size_t kV3AppliedKeyBytes = 4 + 8;  // window, commit sequence
constexpr std::string_view kV3LinesThroughKey = "lines_through";

class Upgrade {
 public:
  explicit Upgrade(StateStore& store) : store_(store), write_(store.NewWriteBatch()) {}

  absl::Status Run() {
    if (absl::Status s = LoadLineIds(); !s.ok()) return s;
    if (absl::Status s = LoadOwners(); !s.ok()) return s;
    if (absl::Status s = MoveTxnRecords(); !s.ok()) return s;
    if (absl::Status s = MoveRecentTxnRecords(); !s.ok()) return s;
    if (absl::Status s = CountExceptions(); !s.ok()) return s;
    if (absl::Status s = SplitWindows(); !s.ok()) return s;
    return Finish();
  }

 private:
  absl::Status Flush() {
    absl::Status s = store_.Write(*write_);
    write_->Clear();
    return s;
  }

  absl::StatusOr<SourcePartition> OwnerOf(Family family, int32_t partition) const {
    const SourcePartition owner{TopicOf(family), partition};
    if (!next_offsets_.contains(owner)) {
      return absl::DataLossError(Cat("a record of ", FormatOwner(owner), ", which has no committed offset"));
    }
    return owner;
  }

  // The store's line ids (their layout is the same in both formats).
  absl::Status LoadLineIds() {
    bool damaged = false;
    absl::Status s = store_.Scan(Table::kMeta, kLineIdKeyPrefix, {}, [&](std::string_view key, std::string_view value) {
      damaged = key.size() != kLineIdKeyBytes || !ids_.Add(ReadBigEndian32(key.data() + kLineIdKeyPrefix.size()), value);
      return !damaged;
    });
    if (!s.ok()) return s;
    return damaged ? absl::DataLossError("a line id record is missing, repeated or damaged") : absl::OkStatus();
  }

  absl::Status LoadOwners() {
    bool damaged = false;
    absl::Status s = store_.Scan(Table::kMeta, kOffsetKeyPrefix, {}, [&](std::string_view key, std::string_view value) {
      damaged = key.size() != kOffsetKeyPrefix.size() + kOwnerKeyBytes || value.size() != 8;
      if (!damaged) {
        next_offsets_[ReadOwner(key.data() + kOffsetKeyPrefix.size())] = static_cast<int64_t>(ReadBigEndian64(value.data()));
      }
      return !damaged;
    });
    if (!s.ok()) return s;
    return damaged ? absl::DataLossError("an offset record is damaged") : absl::OkStatus();
  }

  absl::Status MoveTxnRecords() {
    for (const Family family : {Family::kTaps, Family::kMedical}) {
      const std::string prefix(1, static_cast<char>('0' + static_cast<int>(family)));
      // Each chunk resumes after the last key moved, not over the deleted ones again.
      std::string resume;
      for (;;) {
        std::vector<std::pair<std::string, std::string>> chunk;
        absl::Status s = store_.Scan(Table::kTxn, prefix, resume, [&](std::string_view key, std::string_view value) {
          chunk.emplace_back(key, value);
          return chunk.size() < kUpgradeRecordsPerWrite;
        });
        if (!s.ok()) return s;
        if (chunk.empty()) break;
        std::string key;
        for (const auto& [old_key, value] : chunk) {
          TxnRecord record;
          if (!DecodeTxnRecord(value, ids_, record)) {
            return absl::DataLossError(Cat("transaction record ", old_key.substr(1), " is damaged"));
          }
          absl::StatusOr<SourcePartition> owner = OwnerOf(family, record.partition);
          if (!owner.ok()) return owner.status();
          TxnKey(*owner, family, std::string_view(old_key).substr(1), key);
          write_->Put(Table::kTxn, key, value);
          write_->Delete(Table::kTxn, old_key);
        }
        if (absl::Status flushed = Flush(); !flushed.ok()) return flushed;
        resume = chunk.back().first;
        resume.push_back('\0');
      }
    }
    return absl::OkStatus();
  }

  // The recent records are newer than kTxn's: each commit's value, in order, overwrites them.
  absl::Status MoveRecentTxnRecords() {
    std::vector<std::pair<std::string, std::string>> blobs;
    absl::Status s = store_.Scan(Table::kRecentTxn, {}, {}, [&](std::string_view key, std::string_view value) {
      blobs.emplace_back(key, value);
      return true;
    });
    if (!s.ok()) return s;
    std::string key;
    for (const auto& [blob_key, blob] : blobs) {
      size_t position = 0;
      std::string_view old_key, value;
      bool damaged = false;
      while (NextRecentTxnEntry(blob, position, old_key, value, damaged)) {
        TxnRecord record;
        if (old_key.empty() || (old_key[0] != '0' && old_key[0] != '1') || !DecodeTxnRecord(value, ids_, record)) {
          damaged = true;
          break;
        }
        const auto family = static_cast<Family>(old_key[0] - '0');
        absl::StatusOr<SourcePartition> owner = OwnerOf(family, record.partition);
        if (!owner.ok()) return owner.status();
        TxnKey(*owner, family, old_key.substr(1), key);
        write_->Put(Table::kTxn, key, value);
      }
      if (damaged) return absl::DataLossError("a value of recent transaction records (kRecentTxn) is damaged");
      write_->Delete(Table::kRecentTxn, blob_key);
      if (s = Flush(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status CountExceptions() {
    bool damaged = false;
    absl::Status s = store_.Scan(Table::kExceptions, {}, {}, [&](std::string_view key, std::string_view value) {
      ExceptionRecord record;
      damaged = !DecodeExceptionRecord(key, value, record);
      if (!damaged) {
        ++exception_counts_[{record.window, {record.topic, record.partition}}][static_cast<size_t>(record.reason)];
      }
      return !damaged;
    });
    if (!s.ok()) return s;
    return damaged ? absl::DataLossError("an exception record is damaged") : absl::OkStatus();
  }

  absl::Status SplitWindows() {
    std::vector<std::pair<WindowDay, WindowCounters>> windows;
    bool damaged = false;
    absl::Status s = store_.Scan(Table::kMeta, kCountersKeyPrefix, {}, [&](std::string_view key, std::string_view value) {
      if (key.size() != kV3CountersKeyBytes) return true;  // already split
      WindowCounters counters;
      damaged = !DecodeWindowCounters(value, counters);
      if (!damaged) windows.emplace_back(WindowFromKeyBits(ReadBigEndian32(key.data() + kCountersKeyPrefix.size())), counters);
      return !damaged;
    });
    if (!s.ok()) return s;
    if (damaged) return absl::DataLossError("a window counters record is damaged");
    std::optional<uint64_t> lines_through;
    std::string value;
    bool found = false;
    if (s = store_.Get(Table::kMeta, kV3LinesThroughKey, value, found); !s.ok()) return s;
    if (found) {
      if (value.size() != 8) return absl::DataLossError("the lines_through record is damaged");
      lines_through = ReadBigEndian64(value.data());
    }
    for (const auto& [day, counters] : windows) {
      if (s = SplitWindow(day, counters, lines_through); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status SplitWindow(WindowDay day, const WindowCounters& window_counters, std::optional<uint64_t> lines_through) {
    const std::string date = FormatWindowDay(day);
    std::string prefix, key;
    WindowKeyPrefix(day, prefix);
    // The window's lines as format 3 holds them: kLines, completed by the applied records of the
    // commits after lines_through (all of kLines when a store predates checkpoints).
    StringMap<LineTotals> v3_lines;
    bool damaged = false;
    absl::Status s = store_.Scan(Table::kLines, prefix, {}, [&](std::string_view k, std::string_view v) {
      LineTotals totals;
      damaged = !DecodeLineTotals(v, totals);
      v3_lines[k.substr(4)] = totals;
      return !damaged;
    });
    if (!s.ok()) return s;
    if (damaged) return absl::DataLossError(Cat("a netting line of window ", date, " is damaged"));

    StringMap<LineTotals> lines;  // the sum of every applied record of the window
    std::map<SourcePartition, WindowCounters> owner_counters;
    std::map<SourcePartition, std::string> owner_blobs;
    std::string failure;
    s = store_.Scan(Table::kApplied, prefix, {}, [&](std::string_view k, std::string_view blob) {
      if (k.size() != kV3AppliedKeyBytes) return true;
      const uint64_t sequence = ReadBigEndian64(k.data() + 4);
      const bool replay = lines_through.has_value() && sequence > *lines_through;
      std::map<SourcePartition, int64_t> last_offsets;
      for (auto& [owner, owner_blob] : owner_blobs) owner_blob.clear();
      size_t position = 0;
      AppliedRecord record;
      bool record_damaged = false;
      while (NextAppliedRecord(blob, position, ids_, record, record_damaged)) {
        absl::StatusOr<SourcePartition> owner = OwnerOf(FamilyOf(record.kind), record.partition);
        if (!owner.ok()) {
          failure = std::string(owner.status().message());
          return false;
        }
        const std::string line_key(record.line_key);
        const bool netted = (!replay || NetIntoLine(record.kind, record.amount_fen, record.fund_pay_fen,
                                                    record.account_pay_fen, record.cash_pay_fen, v3_lines[line_key])) &&
                            NetIntoLine(record.kind, record.amount_fen, record.fund_pay_fen, record.account_pay_fen,
                                        record.cash_pay_fen, lines[line_key]);
        if (!netted) {
          failure = Cat("the applied records of window ", date, " overflow netting line '", line_key, "'");
          return false;
        }
        WindowCounters& counters = owner_counters[*owner];
        ++counters.applied_count;
        if (record.late) ++counters.late_count;
        if (record.line_id == kNoLineId && !line_key.empty()) {  // a record of before line ids
          bool added = false;
          record.line_id = ids_.IdOf(line_key, added);
          if (added) {
            LineIdKey(record.line_id, key);
            write_->Put(Table::kMeta, key, line_key);
          }
        }
        AppendAppliedRecord(record, owner_blobs[*owner]);
        last_offsets[*owner] = record.offset;
      }
      if (record_damaged) {
        failure = Cat("an applied record of window ", date, " is damaged");
        return false;
      }
      for (const auto& [owner, last] : last_offsets) {
        AppliedKey(day, owner, static_cast<uint64_t>(last) + 1, key);
        write_->Put(Table::kApplied, key, owner_blobs[owner]);
      }
      write_->Delete(Table::kApplied, k);
      return true;
    });
    if (!s.ok()) return s;
    if (!failure.empty()) return absl::DataLossError(failure);

    if (s = PutCheckedLines(day, v3_lines, lines); !s.ok()) return s;
    if (s = PutSplitCounters(day, window_counters, owner_counters); !s.ok()) return s;
    return Flush();
  }


  // The applied records must add up to the window's lines; the lines then stand complete, so
  // that every owner's marker can say so.
  absl::Status PutCheckedLines(WindowDay day, const StringMap<LineTotals>& v3_lines, const StringMap<LineTotals>& lines) {
    const std::string date = FormatWindowDay(day);
    std::string key;
    for (const auto& [line_key, totals] : v3_lines) {
      const auto it = lines.find(line_key);
      const bool matches = it == lines.end() ? totals == LineTotals{} : it->second == totals;
      if (!matches) {
        return absl::DataLossError(Cat("netting line '", line_key, "' of window ", date,
                                       " is not the sum of its applied records: the store cannot be upgraded"));
      }
    }
    for (const auto& [line_key, totals] : lines) {
      if (!v3_lines.contains(line_key)) {
        return absl::DataLossError(Cat("applied records of window ", date, " net into line '", line_key,
                                       "', which the window does not have: the store cannot be upgraded"));
      }
      LineStoreKey(day, line_key, key);
      EncodeLineTotals(totals, value_scratch_);
      write_->Put(Table::kLines, key, value_scratch_);
    }
    return absl::OkStatus();
  }

  // The counters: what the records tell per owner, the rest to the first owner; the window's
  // format-3 counters go (which marks the window upgraded).
  absl::Status PutSplitCounters(WindowDay day, const WindowCounters& window_counters,
                                std::map<SourcePartition, WindowCounters>& owner_counters) {
    const std::string date = FormatWindowDay(day);
    std::string key;
    for (const auto& [index, counts] : exception_counts_) {
      if (index.first != day) continue;
      WindowCounters& counters = owner_counters[index.second];
      for (size_t i = 0; i < kReasonCount; ++i) counters.exception_counts[i] += counts[i];
    }
    WindowCounters rest = window_counters;
    auto take = [&](int64_t& from, int64_t amount) {
      from -= amount;
      return from >= 0;
    };
    for (const auto& [owner, counters] : owner_counters) {
      bool within = take(rest.applied_count, counters.applied_count) && take(rest.late_count, counters.late_count);
      for (size_t i = 0; within && i < kReasonCount; ++i) within = take(rest.exception_counts[i], counters.exception_counts[i]);
      if (!within) {
        return absl::DataLossError(
            Cat("the records of window ", date, " count more than its counters: the store cannot be upgraded"));
      }
    }
    if (!(rest == WindowCounters{})) {
      if (next_offsets_.empty()) return absl::DataLossError(Cat("window ", date, " has counters but the store no offsets"));
      WindowCounters& first = owner_counters[next_offsets_.begin()->first];
      if (!AddWindowCounters(rest, first)) return absl::DataLossError(Cat("the counters of window ", date, " overflow"));
    }
    for (const auto& [owner, counters] : owner_counters) {
      CountersKey(day, owner, key);
      EncodeWindowCounters(counters, value_scratch_);
      write_->Put(Table::kMeta, key, value_scratch_);
    }
    key.assign(kCountersKeyPrefix);
    AppendBigEndian32(key, WindowKeyBits(day));
    write_->Delete(Table::kMeta, key);
    return absl::OkStatus();
  }

  absl::Status Finish() {
    std::string key, value;
    for (const auto& [owner, next] : next_offsets_) {
      LinesThroughKey(owner, key);
      value.clear();
      AppendBigEndian64(value, static_cast<uint64_t>(next));
      write_->Put(Table::kMeta, key, value);
    }
    write_->Delete(Table::kMeta, kV3LinesThroughKey);
    write_->Put(Table::kMeta, kStoreFormatKey, std::string(1, static_cast<char>(kStoreFormat)));
    return Flush();
  }

  StateStore& store_;
  std::unique_ptr<StateWriteBatch> write_;
  LineIds ids_;
  std::map<SourcePartition, int64_t> next_offsets_;
  std::map<std::pair<WindowDay, SourcePartition>, std::array<int64_t, kReasonCount>> exception_counts_;
  std::string value_scratch_;
};

}  // namespace

absl::Status UpgradeStore(StateStore& store) {
  std::string value;
  bool found = false;
  if (absl::Status s = store.Get(Table::kMeta, kStoreFormatKey, value, found); !s.ok()) return s;
  if (found) {
    if (value.size() == 1 && static_cast<uint8_t>(value[0]) == kStoreFormat) return absl::OkStatus();
    return absl::FailedPreconditionError(
        Cat("the store is of format ", value.size() == 1 ? static_cast<int>(static_cast<uint8_t>(value[0])) : -1,
            ", which this build (format ", static_cast<int>(kStoreFormat), ") does not know"));
  }
  // A store that holds no commit is new: it only gets the marker.
  bool any = false;
  if (absl::Status s = store.Get(Table::kMeta, kCommitSequenceKey, value, any); !s.ok()) return s;
  if (!any) {
    for (const Table table : {Table::kMeta, Table::kTxn, Table::kLines, Table::kApplied, Table::kRecentTxn}) {
      absl::Status s = store.Scan(table, {}, {}, [&](std::string_view key, std::string_view) {
        any = !(table == Table::kMeta && key == kCardTokenKeyCheckKey);
        return !any;
      });
      if (!s.ok()) return s;
      if (any) break;
    }
  }
  if (any) return Upgrade(store).Run();
  std::unique_ptr<StateWriteBatch> write = store.NewWriteBatch();
  write->Put(Table::kMeta, kStoreFormatKey, std::string(1, static_cast<char>(kStoreFormat)));
  return store.Write(*write);
}

}  // namespace yrd
