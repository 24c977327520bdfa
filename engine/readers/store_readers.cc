#include "engine/readers/store_readers.h"

#include <algorithm>
#include <functional>

#include "engine/base/strings.h"

namespace yrd {

absl::Status NetAppliedAfter(StateStore& store, const LineIds& line_ids, WindowDay day, uint64_t after_sequence,
                             const std::function<LineTotals&(const AppliedRecord&)>& line_of) {
  std::string prefix, from;
  AppendBigEndian32(prefix, WindowKeyBits(day));
  AppliedKey(day, after_sequence + 1, from);
  absl::Status failure;
  absl::Status s = store.Scan(Table::kApplied, prefix, from, [&](std::string_view, std::string_view blob) {
    size_t position = 0;
    AppliedRecord record;
    bool damaged = false;
    while (NextAppliedRecord(blob, position, line_ids, record, damaged)) {
      if (!NetIntoLine(record.kind, record.amount_fen, record.fund_pay_fen, record.account_pay_fen,
                       record.cash_pay_fen, line_of(record))) {
        failure = absl::DataLossError(Cat("the applied records of window ", FormatWindowDay(day),
                                          " overflow netting line '", record.line_key, "'"));
        return false;
      }
    }
    if (damaged) {
      failure = absl::DataLossError(Cat("an applied record of window ", FormatWindowDay(day), " is damaged"));
    }
    return failure.ok();
  });
  return s.ok() ? failure : s;
}

absl::StatusOr<std::optional<WindowRecord>> ReadWindowRecord(StateStore& store, WindowDay day) {
  std::string key, value;
  bool found = false;
  WindowStateKey(day, key);
  if (absl::Status s = store.Get(Table::kMeta, key, value, found); !s.ok()) return s;
  if (!found) return std::nullopt;
  WindowRecord record;
  if (!DecodeWindowRecord(value, record)) {
    return absl::DataLossError(Cat("the state record of window ", FormatWindowDay(day), " is damaged"));
  }
  return record;
}

absl::StatusOr<LineIds> LoadLineIds(StateStore& store) {
  LineIds ids;
  bool damaged = false;
  absl::Status s = store.Scan(Table::kMeta, kLineIdKeyPrefix, {}, [&](std::string_view key, std::string_view value) {
    damaged = key.size() != kLineIdKeyPrefix.size() + 4 ||
              !ids.Add(ReadBigEndian32(key.data() + kLineIdKeyPrefix.size()), value);
    return !damaged;
  });
  if (!s.ok()) return s;
  if (damaged) {
    return absl::DataLossError(Cat("line id ", ids.size(), " (meta ", kLineIdKeyPrefix,
                                   ") is missing, repeats a line or is damaged"));
  }
  return ids;
}

absl::StatusOr<std::optional<uint64_t>> ReadLinesThrough(StateStore& store) {
  std::string value;
  bool found = false;
  if (absl::Status s = store.Get(Table::kMeta, kLinesThroughKey, value, found); !s.ok()) return s;
  if (!found) return std::nullopt;
  if (value.size() != 8) return absl::DataLossError("the lines_through record is damaged");
  return ReadBigEndian64(value.data());
}

absl::StatusOr<std::vector<WindowLine>> ReadWindowLines(StateStore& store, WindowDay day, uint64_t* replayed,
                                                        const LineIds* line_ids) {
  absl::StatusOr<std::optional<uint64_t>> lines_through = ReadLinesThrough(store);
  if (!lines_through.ok()) return lines_through.status();
  const std::string date = FormatWindowDay(day);
  std::string prefix;
  AppendBigEndian32(prefix, WindowKeyBits(day));
  std::vector<WindowLine> lines;
  absl::Status damaged;
  absl::Status s = store.Scan(Table::kLines, prefix, {}, [&](std::string_view key, std::string_view v) {
    WindowLine& line = lines.emplace_back();
    line.line_key.assign(key.substr(prefix.size()));
    if (!DecodeLineTotals(v, line.totals)) {
      damaged = absl::DataLossError(Cat("netting line '", line.line_key, "' of window ", date, " is damaged"));
      return false;
    }
    return true;
  });
  if (!s.ok()) return s;
  if (!damaged.ok()) return damaged;
  if (!lines_through->has_value()) return lines;  // written before checkpoints: kLines is complete

  std::optional<LineIds> loaded_line_ids;
  if (line_ids == nullptr) {
    // The line ids are read only for records to replay (a closed window has none).
    std::string from;
    AppliedKey(day, **lines_through + 1, from);
    bool any = false;
    s = store.Scan(Table::kApplied, prefix, from, [&](std::string_view, std::string_view) {
      any = true;
      return false;
    });
    if (!s.ok()) return s;
    if (!any) return lines;
    absl::StatusOr<LineIds> read = LoadLineIds(store);
    if (!read.ok()) return read.status();
    line_ids = &loaded_line_ids.emplace(*std::move(read));
  }
  StringMap<size_t> index;  // built at the first record to replay (a closed window has none)
  bool added = false;
  s = NetAppliedAfter(store, *line_ids, day, **lines_through, [&](const AppliedRecord& record) -> LineTotals& {
    if (replayed != nullptr) ++*replayed;
    if (index.empty()) {
      for (size_t i = 0; i < lines.size(); ++i) index.emplace(lines[i].line_key, i);
    }
    auto it = index.find(record.line_key);
    if (it == index.end()) {
      it = index.emplace(std::string(record.line_key), lines.size()).first;
      lines.push_back({std::string(record.line_key), {}});
      added = true;
    }
    return lines[it->second].totals;
  });
  if (!s.ok()) return s;
  if (added) {
    std::sort(lines.begin(), lines.end(),
              [](const WindowLine& a, const WindowLine& b) { return a.line_key < b.line_key; });
  }
  return lines;
}

absl::Status FindTxnRecord(StateStore& store, std::string_view txn_key, std::string& value, bool& found) {
  found = false;
  bool damaged = false;
  // Later commits come later in kRecentTxn: the last match is the newest record.
  const absl::Status s = store.Scan(Table::kRecentTxn, {}, {}, [&](std::string_view, std::string_view blob) {
    size_t position = 0;
    std::string_view key, record;
    while (NextRecentTxnEntry(blob, position, key, record, damaged)) {
      if (key == txn_key) {
        value.assign(record);
        found = true;
      }
    }
    return !damaged;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a value of recent transaction records (kRecentTxn) is damaged");
  if (found) return absl::OkStatus();
  return store.Get(Table::kTxn, txn_key, value, found);
}

}  // namespace yrd
