#include "engine/readers/store_readers.h"

#include <algorithm>
#include <functional>

#include "engine/base/strings.h"

namespace yrd {
namespace {

// The owner of an applied or lines key (window, owner, ...); false when the key is too short.
bool OwnerOfWindowKey(std::string_view key, SourcePartition& owner) {
  if (key.size() < 4 + kOwnerKeyBytes) return false;
  owner = ReadOwner(key.data() + 4);
  return true;
}

}  // namespace

absl::Status NetAppliedAfter(StateStore& store, const LineIds& line_ids, WindowDay day, SourcePartition owner,
                             uint64_t after_number, const std::function<LineTotals&(const AppliedRecord&)>& line_of,
                             uint64_t through_number) {
  std::string prefix, from, through_end;
  WindowOwnerKeyPrefix(day, owner, prefix);
  AppliedKey(day, owner, after_number + 1, from);
  if (through_number != UINT64_MAX) AppliedKey(day, owner, through_number + 1, through_end);
  absl::Status failure;
  absl::Status s = store.Scan(Table::kApplied, prefix, from, [&](std::string_view key, std::string_view blob) {
    if (!through_end.empty() && key >= through_end) return false;
    size_t position = 0;
    AppliedRecord record;
    bool damaged = false;
    while (NextAppliedRecord(blob, position, line_ids, record, damaged)) {
      if (!NetIntoLine(record.kind, record.amount_fen, record.fund_pay_fen, record.account_pay_fen,
                       record.cash_pay_fen, line_of(record))) {
        failure = absl::DataLossError(Cat("the applied records of ", FormatOwner(owner), " in window ",
                                          FormatWindowDay(day), " overflow netting line '", record.line_key, "'"));
        return false;
      }
    }
    if (damaged) {
      failure = absl::DataLossError(
          Cat("an applied record of ", FormatOwner(owner), " in window ", FormatWindowDay(day), " is damaged"));
    }
    return failure.ok();
  });
  return s.ok() ? failure : s;
}

absl::Status VisitAppliedRecords(StateStore& store, WindowDay day, const LineIds& line_ids,
                                 const std::function<bool(SourcePartition owner, const AppliedRecord& record)>& visitor) {
  std::string prefix;
  WindowKeyPrefix(day, prefix);
  absl::Status failure;
  absl::Status s = store.Scan(Table::kApplied, prefix, {}, [&](std::string_view key, std::string_view blob) {
    SourcePartition owner;
    if (!OwnerOfWindowKey(key, owner)) {
      failure = absl::DataLossError(Cat("an applied-record key of window ", FormatWindowDay(day), " is damaged"));
      return false;
    }
    size_t position = 0;
    AppliedRecord record;
    bool damaged = false;
    while (NextAppliedRecord(blob, position, line_ids, record, damaged)) {
      if (!visitor(owner, record)) return false;
    }
    if (damaged) {
      failure = absl::DataLossError(
          Cat("an applied record of ", FormatOwner(owner), " in window ", FormatWindowDay(day), " is damaged"));
    }
    return failure.ok();
  });
  return s.ok() ? failure : s;
}

absl::Status RequireCurrentStoreFormat(StateStore& store) {
  std::string value;
  bool found = false;
  if (absl::Status s = store.Get(Table::kMeta, kStoreFormatKey, value, found); !s.ok()) return s;
  if (found && value.size() == 1 && static_cast<uint8_t>(value[0]) == kStoreFormat) return absl::OkStatus();
  if (!found) {
    return absl::FailedPreconditionError(Cat("the store is of format 3 or earlier (or clearingd never started on it); "
                                             "start clearingd of this version once to upgrade it to format ",
                                             static_cast<int>(kStoreFormat)));
  }
  return absl::FailedPreconditionError(
      Cat("the store is of a format this build (format ", static_cast<int>(kStoreFormat), ") does not know"));
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

absl::StatusOr<std::map<WindowDay, WindowRecord>> ReadWindowRecords(StateStore& store) {
  std::map<WindowDay, WindowRecord> records;
  bool damaged = false;
  absl::Status s = store.Scan(Table::kMeta, kWindowKeyPrefix, {}, [&](std::string_view key, std::string_view v) {
    WindowRecord record;
    damaged = key.size() != kWindowKeyPrefix.size() + 4 || !DecodeWindowRecord(v, record);
    if (!damaged) records[WindowFromKeyBits(ReadBigEndian32(key.data() + kWindowKeyPrefix.size()))] = record;
    return !damaged;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a window record is damaged");
  return records;
}

absl::StatusOr<std::optional<Ownership>> ReadOwnership(StateStore& store) {
  std::string value;
  bool found = false;
  if (absl::Status s = store.Get(Table::kMeta, kOwnershipKey, value, found); !s.ok()) return s;
  if (!found) return std::nullopt;
  Ownership ownership;
  if (!DecodeOwnership(value, ownership)) return absl::DataLossError("the ownership record is damaged");
  return ownership;
}

absl::StatusOr<std::map<WindowDay, std::vector<SourcePartition>>> ReadLackingShares(StateStore& store) {
  std::map<WindowDay, std::vector<SourcePartition>> lacking;
  bool damaged = false;
  absl::Status s = store.Scan(Table::kMeta, kLackingShareKeyPrefix, {}, [&](std::string_view key, std::string_view) {
    damaged = key.size() != kLackingShareKeyPrefix.size() + 4 + kOwnerKeyBytes;
    if (damaged) return false;
    const WindowDay day = WindowFromKeyBits(ReadBigEndian32(key.data() + kLackingShareKeyPrefix.size()));
    lacking[day].push_back(ReadOwner(key.data() + kLackingShareKeyPrefix.size() + 4));
    return true;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a lacking-share record is damaged");
  return lacking;
}

std::string DescribeLackingShares(const std::map<WindowDay, std::vector<SourcePartition>>& lacking) {
  std::string out;
  for (const auto& [day, owners] : lacking) {
    std::string names;
    for (const SourcePartition owner : owners) names += Cat(names.empty() ? "" : ", ", FormatOwner(owner));
    out += Cat(out.empty() ? "" : "; ", "window ", FormatWindowDay(day), " lacks the records of ", names);
  }
  if (out.empty()) return {};
  return Cat(out, " (restored from a changelog snapshot after the window's files were written): read its clearing files");
}

std::string DescribeMissingPartitions(const Ownership& ownership) {
  std::string lacking;
  size_t total = 0;
  for (const SourceTopic topic : {SourceTopic::kTaps, SourceTopic::kMedical}) {
    const auto count = static_cast<int32_t>(ownership.partition_counts[topic == SourceTopic::kTaps ? 0 : 1]);
    total += static_cast<size_t>(count);
    std::string ranges;
    int32_t start = -1;
    for (int32_t p = 0; p <= count; ++p) {
      const bool missing = p < count && std::find(ownership.owned.begin(), ownership.owned.end(),
                                                  SourcePartition{topic, p}) == ownership.owned.end();
      if (missing && start < 0) start = p;
      if (!missing && start >= 0) {
        ranges += Cat(ranges.empty() ? "" : ",", start, p - 1 > start ? Cat("-", p - 1) : "");
        start = -1;
      }
    }
    if (!ranges.empty()) {
      lacking += Cat(lacking.empty() ? "" : ", ", topic == SourceTopic::kTaps ? kTapsTopic : kMedicalTopic, " ", ranges);
    }
  }
  if (lacking.empty()) return {};
  return Cat("this store's instance consumes ", ownership.owned.size(), " of the ", total,
             " partitions; answers lack ", lacking);
}

absl::StatusOr<std::vector<SourcePartition>> ListOwners(StateStore& store) {
  std::vector<SourcePartition> owners;
  bool damaged = false;
  absl::Status s = store.Scan(Table::kMeta, kOffsetKeyPrefix, {}, [&](std::string_view key, std::string_view) {
    damaged = key.size() != kOffsetKeyPrefix.size() + kOwnerKeyBytes;
    if (!damaged) owners.push_back(ReadOwner(key.data() + kOffsetKeyPrefix.size()));
    return !damaged;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("an offset record is damaged");
  return owners;
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

absl::StatusOr<uint64_t> ReadLinesThrough(StateStore& store, SourcePartition owner) {
  std::string key, value;
  bool found = false;
  LinesThroughKey(owner, key);
  if (absl::Status s = store.Get(Table::kMeta, key, value, found); !s.ok()) return s;
  if (!found) return 0;
  if (value.size() != 8) return absl::DataLossError(Cat("the lines_through record of ", FormatOwner(owner), " is damaged"));
  return ReadBigEndian64(value.data());
}

absl::StatusOr<std::vector<WindowDay>> DaysWithRecordsAfterMarkers(StateStore& store,
                                                                  const std::vector<WindowDay>& days) {
  std::vector<WindowDay> found;
  if (days.empty()) return found;
  absl::StatusOr<std::vector<SourcePartition>> owners = ListOwners(store);
  if (!owners.ok()) return owners.status();
  std::vector<uint64_t> markers;
  for (const SourcePartition owner : *owners) {
    absl::StatusOr<uint64_t> lines_through = ReadLinesThrough(store, owner);
    if (!lines_through.ok()) return lines_through.status();
    markers.push_back(*lines_through);
  }
  for (const WindowDay day : days) {
    bool any = false;
    for (size_t i = 0; i < owners->size() && !any; ++i) {
      absl::StatusOr<bool> after = HasAppliedAfter(store, day, (*owners)[i], markers[i]);
      if (!after.ok()) return after.status();
      any = *after;
    }
    if (any) found.push_back(day);
  }
  return found;
}

absl::StatusOr<bool> HasAppliedAfter(StateStore& store, WindowDay day, SourcePartition owner, uint64_t after_number) {
  std::string prefix, from;
  WindowOwnerKeyPrefix(day, owner, prefix);
  AppliedKey(day, owner, after_number + 1, from);
  bool any = false;
  absl::Status s = store.Scan(Table::kApplied, prefix, from, [&](std::string_view, std::string_view) {
    any = true;
    return false;
  });
  if (!s.ok()) return s;
  return any;
}

absl::StatusOr<std::vector<WindowLine>> ReadCheckpointedLines(StateStore& store, WindowDay day) {
  std::string prefix;
  WindowKeyPrefix(day, prefix);
  std::vector<WindowLine> lines;
  absl::Status damaged;
  absl::Status s = store.Scan(Table::kLines, prefix, {}, [&](std::string_view key, std::string_view v) {
    WindowLine& line = lines.emplace_back();
    line.line_key.assign(key.substr(prefix.size()));
    if (!DecodeLineTotals(v, line.totals)) {
      damaged = absl::DataLossError(
          Cat("netting line '", line.line_key, "' of window ", FormatWindowDay(day), " is damaged"));
      return false;
    }
    return true;
  });
  if (!s.ok()) return s;
  if (!damaged.ok()) return damaged;
  return lines;
}

absl::StatusOr<std::vector<WindowLine>> ReadWindowLines(StateStore& store, WindowDay day, uint64_t* replayed,
                                                        const LineIds* line_ids) {
  absl::StatusOr<std::vector<WindowLine>> checkpointed = ReadCheckpointedLines(store, day);
  if (!checkpointed.ok()) return checkpointed.status();
  std::vector<WindowLine> lines = *std::move(checkpointed);
  absl::Status s;

  absl::StatusOr<std::vector<SourcePartition>> owners = ListOwners(store);
  if (!owners.ok()) return owners.status();
  std::optional<LineIds> loaded_line_ids;
  StringMap<size_t> index;  // built at the first record to replay (a closed window has none)
  bool added = false;
  for (const SourcePartition owner : *owners) {
    absl::StatusOr<uint64_t> lines_through = ReadLinesThrough(store, owner);
    if (!lines_through.ok()) return lines_through.status();
    if (line_ids == nullptr) {
      // The line ids are read only for records to replay (a closed window has none).
      absl::StatusOr<bool> any = HasAppliedAfter(store, day, owner, *lines_through);
      if (!any.ok()) return any.status();
      if (!*any) continue;
      absl::StatusOr<LineIds> read = LoadLineIds(store);
      if (!read.ok()) return read.status();
      line_ids = &loaded_line_ids.emplace(*std::move(read));
    }
    s = NetAppliedAfter(store, *line_ids, day, owner, *lines_through, [&](const AppliedRecord& record) -> LineTotals& {
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
  }
  if (added) {
    std::sort(lines.begin(), lines.end(),
              [](const WindowLine& a, const WindowLine& b) { return a.line_key < b.line_key; });
  }
  return lines;
}

absl::StatusOr<std::map<WindowDay, WindowCounters>> ReadAllWindowCounters(StateStore& store) {
  std::map<WindowDay, WindowCounters> out;
  std::string failure;
  absl::Status s = store.Scan(Table::kMeta, kCountersKeyPrefix, {}, [&](std::string_view key, std::string_view v) {
    WindowCounters counters;
    if (key.size() != kCountersKeyPrefix.size() + 4 + kOwnerKeyBytes || !DecodeWindowCounters(v, counters)) {
      failure = "a window counters record is damaged";
      return false;
    }
    const WindowDay day = WindowFromKeyBits(ReadBigEndian32(key.data() + kCountersKeyPrefix.size()));
    if (!AddWindowCounters(counters, out[day])) {
      failure = Cat("the counters of window ", FormatWindowDay(day), " overflow over its owners");
      return false;
    }
    return true;
  });
  if (!s.ok()) return s;
  if (!failure.empty()) return absl::DataLossError(failure);
  return out;
}

absl::StatusOr<WindowCounters> ReadWindowCounters(StateStore& store, WindowDay day) {
  std::string prefix(kCountersKeyPrefix);
  AppendBigEndian32(prefix, WindowKeyBits(day));
  WindowCounters total;
  std::string failure;
  absl::Status s = store.Scan(Table::kMeta, prefix, {}, [&](std::string_view key, std::string_view v) {
    WindowCounters counters;
    if (key.size() != prefix.size() + kOwnerKeyBytes || !DecodeWindowCounters(v, counters)) {
      failure = Cat("a counters record of window ", FormatWindowDay(day), " is damaged");
    } else if (!AddWindowCounters(counters, total)) {
      failure = Cat("the counters of window ", FormatWindowDay(day), " overflow over its owners");
    }
    return failure.empty();
  });
  if (!s.ok()) return s;
  if (!failure.empty()) return absl::DataLossError(failure);
  return total;
}

absl::StatusOr<std::vector<OwnedTxnRecord>> FindTxnRecordsOfId(StateStore& store, Family family,
                                                                 std::string_view txn_id) {
  absl::StatusOr<std::vector<SourcePartition>> listed = ListOwners(store);
  if (!listed.ok()) return listed.status();
  std::vector<SourcePartition> owners;
  std::vector<std::string> keys;
  for (const SourcePartition owner : *listed) {
    if (owner.topic != TopicOf(family)) continue;
    owners.push_back(owner);
    TxnKey(owner, family, txn_id, keys.emplace_back());
  }
  std::vector<OwnedTxnRecord> out;
  if (owners.empty()) return out;
  // One pass over kRecentTxn for every owner's key: later commits come later, so the last match
  // of a key is its newest record.
  std::vector<std::optional<std::string>> newest(owners.size());
  bool damaged = false;
  absl::Status s = store.Scan(Table::kRecentTxn, {}, {}, [&](std::string_view, std::string_view blob) {
    size_t position = 0;
    std::string_view key, record;
    while (NextRecentTxnEntry(blob, position, key, record, damaged)) {
      for (size_t i = 0; i < keys.size(); ++i) {
        if (key == keys[i]) newest[i].emplace(record);
      }
    }
    return !damaged;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a value of recent transaction records (kRecentTxn) is damaged");
  std::vector<std::string_view> views(keys.begin(), keys.end());
  std::vector<std::string> values(keys.size());
  std::vector<uint8_t> found(keys.size());
  if (s = store.MultiGet(Table::kTxn, views, values, found); !s.ok()) return s;
  for (size_t i = 0; i < owners.size(); ++i) {
    if (newest[i]) {
      out.push_back({owners[i], *std::move(newest[i])});
    } else if (found[i] != 0) {
      out.push_back({owners[i], std::move(values[i])});
    }
  }
  return out;
}

}  // namespace yrd
