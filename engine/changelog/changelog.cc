#include "engine/changelog/changelog.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "engine/base/strings.h"
#include "engine/readers/store_readers.h"
#include "engine/upgrade/store_upgrade.h"

namespace yrd {
namespace {

// Layout (integers little-endian, as in the store's values):
//   version, kind, owner (AppendOwner), epoch u64, number u64, next_offset i64,
//   then for a commit six sections: transaction records, counters, gross, applied, exceptions,
//   windows closed (version 2 on; version 1 has the first five), each a count u32 and a byte
//   length u32 before its entries; for a snapshot chunk its index u32 and last flag u8, then the
//   six sections and a seventh, the days not carried.
constexpr uint8_t kChangelogVersion = 2;
constexpr uint8_t kChangelogVersionFiveSections = 1;
constexpr uint8_t kProgressVersion = 1;
constexpr size_t kHeaderBytes = 2 + kOwnerKeyBytes + 8 + 8 + 8;
constexpr size_t kSectionCount = 6;
constexpr size_t kSnapshotSectionCount = 7;
constexpr size_t kSnapshotChunkFieldBytes = 4 + 1;  // index, last flag

template <typename T>
void PutFixed(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}
void PutBytes(std::string& out, std::string_view bytes) {
  PutFixed(out, static_cast<uint32_t>(bytes.size()));
  out.append(bytes);
}

class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes) : bytes_(bytes) {}
  template <typename T>
  bool Fixed(T& value) {
    if (bytes_.size() - position_ < sizeof(T)) return false;
    std::memcpy(&value, bytes_.data() + position_, sizeof(T));
    position_ += sizeof(T);
    return true;
  }
  bool Bytes(std::string_view& out) {
    uint32_t size = 0;
    if (!Fixed(size) || bytes_.size() - position_ < size) return false;
    out = bytes_.substr(position_, size);
    position_ += size;
    return true;
  }
  [[nodiscard]] bool AtEnd() const { return position_ == bytes_.size(); }

 private:
  std::string_view bytes_;
  size_t position_ = 0;
};

void EncodeHeader(const ChangelogHeader& header, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(kChangelogVersion));
  out.push_back(static_cast<char>(header.kind));
  AppendOwner(out, header.owner);
  PutFixed(out, header.epoch);
  PutFixed(out, header.number);
  PutFixed(out, header.next_offset);
}

absl::Status Damaged(const ChangelogHeader& header, std::string_view what) {
  return absl::DataLossError(Cat("changelog record ", header.number, " of ", FormatOwner(header.owner),
                                 " is damaged: ", what));
}

// A section of a commit record: its entry count and bytes.
using Section = std::pair<uint32_t, std::string_view>;

// Reads each of the section's entries with `read` (false for a damaged one); true when every
// entry read and the section ends with the last.
template <typename ReadEntry>
bool ForEachEntry(const Section& section, ReadEntry&& read) {
  ByteReader r(section.second);
  for (uint32_t i = 0; i < section.first; ++i) {
    if (!read(r)) return false;
  }
  return r.AtEnd();
}

bool HasOwner(std::string_view key, SourcePartition owner) {
  return key.size() >= kOwnerKeyBytes && ReadOwner(key.data()) == owner;
}

}  // namespace

bool DecodeChangelogHeader(std::string_view record, ChangelogHeader& out) {
  if (record.size() < kHeaderBytes) return false;
  const auto version = static_cast<uint8_t>(record[0]);
  if (version != kChangelogVersion && version != kChangelogVersionFiveSections) return false;
  const auto kind = static_cast<uint8_t>(record[1]);
  if (kind != static_cast<uint8_t>(ChangelogKind::kCommit) && kind != static_cast<uint8_t>(ChangelogKind::kFence) &&
      kind != static_cast<uint8_t>(ChangelogKind::kSnapshot)) {
    return false;
  }
  if (kind == static_cast<uint8_t>(ChangelogKind::kSnapshot) && version != kChangelogVersion) return false;
  out.kind = static_cast<ChangelogKind>(kind);
  const auto topic = static_cast<uint8_t>(record[2]);
  if (topic > static_cast<uint8_t>(SourceTopic::kMedical)) return false;
  out.owner = ReadOwner(record.data() + 2);
  if (out.owner.partition < 0 || out.owner.partition >= kSourcePartitionsPerTopicMax) return false;
  ByteReader r(record.substr(2 + kOwnerKeyBytes));
  return r.Fixed(out.epoch) && r.Fixed(out.number) && r.Fixed(out.next_offset);
}

bool DecodeSnapshotChunk(std::string_view record, SnapshotChunk& out) {
  ChangelogHeader header;
  if (!DecodeChangelogHeader(record, header) || header.kind != ChangelogKind::kSnapshot) return false;
  ByteReader r(record.substr(kHeaderBytes));
  uint8_t last = 0;
  if (!r.Fixed(out.index) || !r.Fixed(last) || last > 1) return false;
  out.last = last == 1;
  return true;
}

// ---- building ------------------------------------------------------------------------------------

void ChangelogRecordBuilder::Start(const ChangelogHeader& header) {
  header_ = header;
  for (Section* section : {&txn_, &counters_, &gross_, &applied_, &exceptions_, &closes_, &not_carried_}) {
    section->count = 0;
    section->bytes.clear();
  }
}

size_t ChangelogRecordBuilder::size_bytes() const {
  size_t bytes = 0;
  for (const Section* section : {&txn_, &counters_, &gross_, &applied_, &exceptions_, &closes_, &not_carried_}) {
    bytes += section->bytes.size();
  }
  return bytes;
}

bool ChangelogRecordBuilder::AddTxnRecord(std::string_view txn_key, const TxnRecord& record,
                                          const LineIds& line_ids) {
  TxnRecord named = record;
  if (record.line_id != kNoLineId) {
    const std::optional<std::string_view> line_key = line_ids.KeyOf(record.line_id);
    if (!line_key) return false;
    named.line_key = *line_key;
  }
  EncodeTxnRecordWithLineKey(named, scratch_);
  PutBytes(txn_.bytes, txn_key);
  PutBytes(txn_.bytes, scratch_);
  ++txn_.count;
  return true;
}

void ChangelogRecordBuilder::AddCounters(WindowDay day, const WindowCounters& counters) {
  EncodeWindowCounters(counters, scratch_);
  PutFixed(counters_.bytes, day);
  PutBytes(counters_.bytes, scratch_);
  ++counters_.count;
}

void ChangelogRecordBuilder::AddGross(WindowDay day, int64_t gross_fen) {
  PutFixed(gross_.bytes, day);
  PutFixed(gross_.bytes, gross_fen);
  ++gross_.count;
}

bool ChangelogRecordBuilder::AddApplied(WindowDay day, uint64_t number, std::string_view blob,
                                        const LineIds& line_ids) {
  scratch_.clear();
  size_t position = 0;
  AppliedRecord record;
  bool damaged = false;
  while (NextAppliedRecord(blob, position, line_ids, record, damaged)) AppendAppliedRecordWithLineKey(record, scratch_);
  if (damaged) return false;
  PutFixed(applied_.bytes, day);
  PutFixed(applied_.bytes, number);
  PutBytes(applied_.bytes, scratch_);
  ++applied_.count;
  return true;
}

void ChangelogRecordBuilder::AddException(std::string_view key, std::string_view value) {
  PutBytes(exceptions_.bytes, key);
  PutBytes(exceptions_.bytes, value);
  ++exceptions_.count;
}

void ChangelogRecordBuilder::AddWindowClosed(WindowDay day, int64_t closed_at_ms) {
  PutFixed(closes_.bytes, day);
  PutFixed(closes_.bytes, closed_at_ms);
  ++closes_.count;
}

void ChangelogRecordBuilder::AddDayNotCarried(WindowDay day) {
  PutFixed(not_carried_.bytes, day);
  ++not_carried_.count;
}

void ChangelogRecordBuilder::FinishSections(std::string& out) {
  for (Section* section : {&txn_, &counters_, &gross_, &applied_, &exceptions_, &closes_}) {
    PutFixed(out, section->count);
    PutBytes(out, section->bytes);
    section->count = 0;
    section->bytes.clear();
  }
}

void ChangelogRecordBuilder::Finish(std::string& out) {
  EncodeHeader(header_, out);
  FinishSections(out);
}

void ChangelogRecordBuilder::FinishSnapshotChunk(SnapshotChunk chunk, std::string& out) {
  EncodeHeader(header_, out);
  PutFixed(out, chunk.index);
  PutFixed(out, static_cast<uint8_t>(chunk.last ? 1 : 0));
  FinishSections(out);
  PutFixed(out, not_carried_.count);
  PutBytes(out, not_carried_.bytes);
  not_carried_.count = 0;
  not_carried_.bytes.clear();
}

void EncodeChangelogFence(SourcePartition owner, uint64_t epoch, std::string& out) {
  EncodeHeader({.kind = ChangelogKind::kFence, .owner = owner, .epoch = epoch}, out);
}

// ---- progress ------------------------------------------------------------------------------------

void EncodeChangelogProgress(const ChangelogProgress& progress, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(kProgressVersion));
  PutFixed(out, progress.number);
  PutFixed(out, progress.epoch);
  PutFixed(out, progress.fence_epoch);
}

bool DecodeChangelogProgress(std::string_view bytes, ChangelogProgress& out) {
  if (bytes.empty() || static_cast<uint8_t>(bytes[0]) != kProgressVersion) return false;
  ByteReader r(bytes.substr(1));
  return r.Fixed(out.number) && r.Fixed(out.epoch) && r.Fixed(out.fence_epoch) && r.AtEnd();
}

absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> ReadChangelogProgress(StateStore& store) {
  std::map<SourcePartition, ChangelogProgress> progress;
  bool damaged = false;
  absl::Status s = store.Scan(Table::kMeta, kChangelogKeyPrefix, {}, [&](std::string_view key, std::string_view value) {
    ChangelogProgress one;
    damaged = key.size() != kChangelogKeyPrefix.size() + kOwnerKeyBytes || !DecodeChangelogProgress(value, one);
    if (!damaged) progress[ReadOwner(key.data() + kChangelogKeyPrefix.size())] = one;
    return !damaged;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a changelog progress record is damaged");
  return progress;
}

// ---- dropping an owner's state --------------------------------------------------------------------

namespace {

// The first key after every key that begins with `prefix`.
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return prefix;
}

// The days of `owner`'s counters and gross records, and those keys.
absl::Status FindOwnerDays(StateStore& store, SourcePartition owner, std::set<WindowDay>& days,
                           std::vector<std::string>& keys) {
  bool damaged = false;
  for (const std::string_view prefix : {kCountersKeyPrefix, kGrossKeyPrefix}) {
    absl::Status s = store.Scan(Table::kMeta, prefix, {}, [&](std::string_view key, std::string_view) {
      damaged = key.size() != prefix.size() + 4 + kOwnerKeyBytes;
      if (damaged) return false;
      if (ReadOwner(key.data() + prefix.size() + 4) == owner) {
        days.insert(WindowFromKeyBits(ReadBigEndian32(key.data() + prefix.size())));
        keys.emplace_back(key);
      }
      return true;
    });
    if (!s.ok()) return s;
    if (damaged) return absl::DataLossError(Cat("a ", prefix, " record is damaged"));
  }
  return absl::OkStatus();
}

// Takes `owner`'s applied records of `day` through its marker (`lines_through`) out of the day's
// checkpointed lines, in `write`: the share those lines hold of it.
absl::Status TakeShareOutOfLines(StateStore& store, const LineIds& line_ids, WindowDay day, SourcePartition owner,
                                 uint64_t lines_through, StateWriteBatch& write) {
  absl::StatusOr<std::vector<WindowLine>> checkpointed = ReadCheckpointedLines(store, day);
  if (!checkpointed.ok()) return checkpointed.status();
  if (checkpointed->empty()) return absl::OkStatus();
  std::map<std::string, LineTotals, std::less<>> lines;
  for (WindowLine& line : *checkpointed) lines.emplace(std::move(line.line_key), line.totals);
  std::map<std::string, LineTotals, std::less<>> share;
  absl::Status s = NetAppliedAfter(
      store, line_ids, day, owner, /*after_number=*/0,
      [&](const AppliedRecord& record) -> LineTotals& { return share[std::string(record.line_key)]; }, lines_through);
  if (!s.ok()) return s;
  std::string key, value;
  for (const auto& [line_key, part] : share) {
    LineTotals& totals = lines[line_key];
    if (!SubtractLineTotals(part, totals)) {
      return absl::DataLossError(Cat("netting line '", line_key, "' of window ", FormatWindowDay(day),
                                     " does not hold ", FormatOwner(owner), "'s applied records through its marker"));
    }
    LineStoreKey(day, line_key, key);
    if (totals == LineTotals{}) {
      write.Delete(Table::kLines, key);  // the owner's alone: it comes back with its restore
    } else {
      EncodeLineTotals(totals, value);
      write.Put(Table::kLines, key, value);
    }
  }
  return absl::OkStatus();
}

// The recent-record blobs that hold `owner`'s records, written again without them (deleted when
// nothing else is left).
absl::Status DropRecentRecords(StateStore& store, SourcePartition owner, StateWriteBatch& write) {
  bool damaged = false;
  std::string rewritten;
  absl::Status s = store.Scan(Table::kRecentTxn, {}, {}, [&](std::string_view key, std::string_view blob) {
    StartRecentTxnBlob(rewritten);
    const size_t empty_size = rewritten.size();
    bool dropped = false;
    size_t position = 0;
    std::string_view txn_key, record;
    while (NextRecentTxnEntry(blob, position, txn_key, record, damaged)) {
      if (HasOwner(txn_key, owner)) {
        dropped = true;
      } else {
        AppendRecentTxnEntry(txn_key, record, rewritten);
      }
    }
    if (damaged) return false;
    if (!dropped) return true;
    if (rewritten.size() == empty_size) {
      write.Delete(Table::kRecentTxn, key);
    } else {
      write.Put(Table::kRecentTxn, key, rewritten);
    }
    return true;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a recent transaction record blob is damaged");
  return absl::OkStatus();
}

}  // namespace

absl::Status DropOwnerState(StateStore& store, SourcePartition owner) {
  absl::StatusOr<LineIds> line_ids = LoadLineIds(store);
  if (!line_ids.ok()) return line_ids.status();
  absl::StatusOr<uint64_t> lines_through = ReadLinesThrough(store, owner);
  if (!lines_through.ok()) return lines_through.status();
  std::set<WindowDay> days;
  std::vector<std::string> day_keys;
  if (absl::Status s = FindOwnerDays(store, owner, days, day_keys); !s.ok()) return s;
  std::unique_ptr<StateWriteBatch> write = store.NewWriteBatch();
  std::string key;
  for (const WindowDay day : days) {
    if (absl::Status s = TakeShareOutOfLines(store, *line_ids, day, owner, *lines_through, *write); !s.ok()) return s;
    WindowOwnerKeyPrefix(day, owner, key);
    write->DeleteRange(Table::kApplied, key, PrefixEnd(key));
  }
  for (const std::string& day_key : day_keys) write->Delete(Table::kMeta, day_key);
  key.clear();
  AppendOwner(key, owner);
  write->DeleteRange(Table::kTxn, key, PrefixEnd(key));
  write->DeleteRange(Table::kExceptions, key, PrefixEnd(key));
  if (absl::Status s = DropRecentRecords(store, owner, *write); !s.ok()) return s;
  OffsetKey(owner.topic, owner.partition, key);
  write->Delete(Table::kMeta, key);
  LinesThroughKey(owner, key);
  write->Delete(Table::kMeta, key);
  ChangelogProgressKey(owner, key);
  write->Delete(Table::kMeta, key);
  absl::StatusOr<std::map<WindowDay, std::vector<SourcePartition>>> lacking = ReadLackingShares(store);
  if (!lacking.ok()) return lacking.status();
  for (const auto& [day, owners] : *lacking) {
    if (std::find(owners.begin(), owners.end(), owner) == owners.end()) continue;
    LackingShareKey(day, owner, key);
    write->Delete(Table::kMeta, key);
  }
  return store.Write(*write);
}

// ---- snapshots -----------------------------------------------------------------------------------

namespace {

// Cuts a snapshot into chunks of about `chunk_bytes` as its sections grow.
class SnapshotWriter {
 public:
  SnapshotWriter(const ChangelogHeader& header, size_t chunk_bytes, std::vector<std::string>& chunks)
      : header_(header), chunk_bytes_(chunk_bytes), chunks_(chunks) {
    builder_.Start(header_);
  }
  ChangelogRecordBuilder& builder() { return builder_; }
  // Called after each entry added.
  void Added() {
    if (builder_.size_bytes() >= chunk_bytes_) Cut(/*last=*/false);
  }
  void Finish() { Cut(/*last=*/true); }

 private:
  void Cut(bool last) {
    chunks_.emplace_back();
    builder_.FinishSnapshotChunk({.index = static_cast<uint32_t>(chunks_.size() - 1), .last = last}, chunks_.back());
    builder_.Start(header_);
  }
  ChangelogHeader header_;
  size_t chunk_bytes_;
  std::vector<std::string>& chunks_;
  ChangelogRecordBuilder builder_;
};

// The owner's window counters and gross of the days `carried` says, into `writer`; the days of
// the others into `not_carried`; every day the owner has counters or gross in into `days`.
// (`carried` is false for a retired day too, which is not named: no store keeps its records.)
absl::Status AddOwnerDays(StateStore& store, SourcePartition owner, const std::function<bool(WindowDay)>& carried,
                          const std::function<bool(WindowDay)>& retired, SnapshotWriter& writer,
                          std::set<WindowDay>& days, std::set<WindowDay>& not_carried) {
  bool damaged = false;
  absl::Status s = store.Scan(Table::kMeta, kCountersKeyPrefix, {}, [&](std::string_view key, std::string_view value) {
    WindowCounters counters;
    damaged = key.size() != kCountersKeyPrefix.size() + 4 + kOwnerKeyBytes || !DecodeWindowCounters(value, counters);
    if (damaged) return false;
    if (ReadOwner(key.data() + kCountersKeyPrefix.size() + 4) != owner) return true;
    const WindowDay day = WindowFromKeyBits(ReadBigEndian32(key.data() + kCountersKeyPrefix.size()));
    days.insert(day);
    if (!carried(day)) {
      if (!retired(day)) not_carried.insert(day);
    } else {
      writer.builder().AddCounters(day, counters);
      writer.Added();
    }
    return true;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a window counters record is damaged");
  s = store.Scan(Table::kMeta, kGrossKeyPrefix, {}, [&](std::string_view key, std::string_view value) {
    PartitionGross gross;
    damaged = !DecodeGross(key, value, gross);
    if (damaged) return false;
    if (SourcePartition{gross.topic, gross.partition} != owner) return true;
    days.insert(gross.day);
    if (!carried(gross.day)) {
      if (!retired(gross.day)) not_carried.insert(gross.day);
    } else {
      writer.builder().AddGross(gross.day, gross.gross_fen);
      writer.Added();
    }
    return true;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a partition gross record is damaged");
  return absl::OkStatus();
}

// The owner's transaction records, each as its newest version: a recent one (kRecentTxn, in
// commit order) over the sorted one (kTxn). The dedup index's sort may copy recent records into
// kTxn meanwhile; it deletes them from kRecentTxn only with a later commit, so reading the recent
// ones first misses none.
absl::Status AddOwnerTxnRecords(StateStore& store, SourcePartition owner, const LineIds& line_ids,
                                SnapshotWriter& writer) {
  std::map<std::string, std::string, std::less<>> recent;
  bool damaged = false;
  absl::Status s = store.Scan(Table::kRecentTxn, {}, {}, [&](std::string_view, std::string_view blob) {
    size_t position = 0;
    std::string_view txn_key, record;
    while (NextRecentTxnEntry(blob, position, txn_key, record, damaged)) {
      if (HasOwner(txn_key, owner)) recent.insert_or_assign(std::string(txn_key), std::string(record));
    }
    return !damaged;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a recent transaction record blob is damaged");
  auto add = [&](std::string_view txn_key, std::string_view value) {
    TxnRecord record;
    damaged = !DecodeTxnRecord(value, line_ids, record) || !writer.builder().AddTxnRecord(txn_key, record, line_ids);
    if (!damaged) writer.Added();
    return !damaged;
  };
  std::string prefix;
  AppendOwner(prefix, owner);
  s = store.Scan(Table::kTxn, prefix, {}, [&](std::string_view key, std::string_view value) {
    return recent.contains(key) || add(key, value);
  });
  if (!s.ok()) return s;
  for (const auto& [txn_key, value] : recent) {
    if (!add(txn_key, value)) break;
  }
  if (damaged) {
    return absl::DataLossError(Cat("a transaction record of ", FormatOwner(owner),
                                   " is damaged or names a line its store does not number"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status BuildOwnerSnapshot(StateStore& store, SourcePartition owner, uint64_t epoch, uint64_t number,
                                std::vector<std::string>& chunks, size_t chunk_bytes, SnapshotScope scope) {
  chunks.clear();
  absl::StatusOr<LineIds> line_ids = LoadLineIds(store);
  if (!line_ids.ok()) return line_ids.status();
  absl::StatusOr<std::map<WindowDay, WindowRecord>> windows = ReadWindowRecords(store);
  if (!windows.ok()) return windows.status();
  // What a restore needs to go on: the windows whose files are not written (a copy: every one
  // whose records are kept).
  auto carried = [&](WindowDay day) {
    const auto it = windows->find(day);
    if (it == windows->end()) return true;  // never closed
    if (it->second.retired_at_ms != 0) return false;
    return scope == SnapshotScope::kWindowsKept || it->second.files_written_at_ms == 0;
  };
  auto retired = [&](WindowDay day) {
    const auto it = windows->find(day);
    return it != windows->end() && it->second.retired_at_ms != 0;
  };
  std::string key, value;
  bool found = false;
  OffsetKey(owner.topic, owner.partition, key);
  if (absl::Status s = store.Get(Table::kMeta, key, value, found); !s.ok()) return s;
  if (found && value.size() != 8) return absl::DataLossError(Cat("the offset record of ", FormatOwner(owner), " is damaged"));
  SnapshotWriter writer({.kind = ChangelogKind::kSnapshot,
                         .owner = owner,
                         .epoch = epoch,
                         .number = number,
                         .next_offset = found ? static_cast<int64_t>(ReadBigEndian64(value.data())) : kNoNextOffset},
                        chunk_bytes, chunks);
  std::set<WindowDay> days, not_carried;
  if (absl::Status s = AddOwnerDays(store, owner, carried, retired, writer, days, not_carried); !s.ok()) return s;
  for (const auto& [day, record] : *windows) {
    if (record.closed_at_ms != 0 && carried(day)) writer.builder().AddWindowClosed(day, record.closed_at_ms);
  }
  bool damaged = false;
  for (const WindowDay day : days) {
    if (!carried(day)) continue;
    WindowOwnerKeyPrefix(day, owner, key);
    const size_t prefix_size = key.size();
    absl::Status s = store.Scan(Table::kApplied, key, {}, [&](std::string_view applied_key, std::string_view blob) {
      damaged = applied_key.size() != prefix_size + 8 ||
                !writer.builder().AddApplied(day, ReadBigEndian64(applied_key.data() + prefix_size), blob, *line_ids);
      if (!damaged) writer.Added();
      return !damaged;
    });
    if (!s.ok()) return s;
    if (damaged) {
      return absl::DataLossError(Cat("an applied record of ", FormatOwner(owner), " in window ", FormatWindowDay(day),
                                     " is damaged or names a line its store does not number"));
    }
  }
  key.clear();
  AppendOwner(key, owner);
  absl::Status s = store.Scan(Table::kExceptions, key, {}, [&](std::string_view exception_key, std::string_view bytes) {
    ExceptionRecord exception;
    damaged = !DecodeExceptionRecord(exception_key, bytes, exception);
    if (!damaged && carried(exception.window)) {
      writer.builder().AddException(exception_key, bytes);
      writer.Added();
    }
    return !damaged;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError(Cat("an exception record of ", FormatOwner(owner), " is damaged"));
  if (s = AddOwnerTxnRecords(store, owner, *line_ids, writer); !s.ok()) return s;
  for (const WindowDay day : not_carried) writer.builder().AddDayNotCarried(day);
  writer.Finish();
  return absl::OkStatus();
}

absl::Status RetireWindowRecords(StateStore& store, WindowDay day, int64_t retired_at_ms) {
  absl::StatusOr<std::optional<WindowRecord>> existing = ReadWindowRecord(store, day);
  if (!existing.ok()) return existing.status();
  WindowRecord record = existing->value_or(WindowRecord{});
  if (record.retired_at_ms != 0) return absl::OkStatus();
  record.retired_at_ms = retired_at_ms;
  std::unique_ptr<StateWriteBatch> write = store.NewWriteBatch();
  std::string key, value;
  WindowKeyPrefix(day, key);
  write->DeleteRange(Table::kApplied, key, PrefixEnd(key));
  write->DeleteRange(Table::kLines, key, PrefixEnd(key));
  bool damaged = false;
  absl::Status s = store.Scan(Table::kExceptions, {}, {}, [&](std::string_view exception_key, std::string_view bytes) {
    ExceptionRecord exception;
    damaged = !DecodeExceptionRecord(exception_key, bytes, exception);
    if (!damaged && exception.window == day) write->Delete(Table::kExceptions, exception_key);
    return !damaged;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("an exception record is damaged");
  WindowStateKey(day, key);
  EncodeWindowRecord(record, value);
  write->Put(Table::kMeta, key, value);
  return store.Write(*write);
}

absl::StatusOr<bool> CopyOwnerState(StateStore& from, StateStore& into, SourcePartition owner) {
  absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> from_progress = ReadChangelogProgress(from);
  if (!from_progress.ok()) return from_progress.status();
  const auto held = from_progress->find(owner);
  if (held == from_progress->end() || held->second.number == 0) return false;
  absl::StatusOr<std::unique_ptr<ChangelogRestore>> restore = ChangelogRestore::Open(into);
  if (!restore.ok()) return restore.status();
  if ((*restore)->progress(owner).number >= held->second.number) return false;
  std::vector<std::string> chunks;
  if (absl::Status s = BuildOwnerSnapshot(from, owner, held->second.epoch, held->second.number, chunks,
                                          kSnapshotChunkBytes, SnapshotScope::kWindowsKept);
      !s.ok()) {
    return s;
  }
  for (const std::string& chunk : chunks) {
    if (absl::StatusOr<RestoreStep> step = (*restore)->Apply(chunk); !step.ok()) return step.status();
  }
  // And the fences it saw: a claimer's epoch must pass them.
  std::string fence;
  EncodeChangelogFence(owner, held->second.fence_epoch, fence);
  if (absl::StatusOr<RestoreStep> step = (*restore)->Apply(fence); !step.ok()) return step.status();
  if (absl::Status s = (*restore)->Finish(); !s.ok()) return s;
  return true;
}

// ---- restoring -----------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<ChangelogRestore>> ChangelogRestore::Open(StateStore& store) {
  // A store of an earlier format is brought to this one first, as the ledger does (a new one gets
  // the format marker).
  if (absl::Status s = UpgradeStore(store); !s.ok()) return s;
  std::unique_ptr<ChangelogRestore> restore(new ChangelogRestore(store));
  absl::StatusOr<LineIds> line_ids = LoadLineIds(store);
  if (!line_ids.ok()) return line_ids.status();
  restore->line_ids_ = *std::move(line_ids);
  absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> progress = ReadChangelogProgress(store);
  if (!progress.ok()) return progress.status();
  restore->progress_ = *std::move(progress);
  absl::StatusOr<std::map<WindowDay, WindowRecord>> windows = ReadWindowRecords(store);
  if (!windows.ok()) return windows.status();
  for (const auto& [day, record] : *windows) {
    if (record.retired_at_ms != 0) restore->retired_.insert(day);
  }
  std::string value;
  bool found = false;
  if (absl::Status s = store.Get(Table::kMeta, kCommitSequenceKey, value, found); !s.ok()) return s;
  if (found) {
    if (value.size() != 8) return absl::DataLossError("commit_sequence record is damaged");
    restore->commit_sequence_ = ReadBigEndian64(value.data());
  }
  return restore;
}

ChangelogProgress ChangelogRestore::progress(SourcePartition owner) const {
  const auto it = progress_.find(owner);
  return it == progress_.end() ? ChangelogProgress{} : it->second;
}

absl::StatusOr<RestoreStep> ChangelogRestore::Apply(std::string_view record) {
  if (!failure_.ok()) return failure_;
  absl::StatusOr<RestoreStep> step = ApplyOne(record);
  if (!step.ok()) failure_ = step.status();
  return step;
}

absl::StatusOr<RestoreStep> ChangelogRestore::ApplyOne(std::string_view record) {
  ChangelogHeader header;
  if (!DecodeChangelogHeader(record, header)) return absl::DataLossError("a changelog record's header is damaged");
  ChangelogProgress& progress = progress_[header.owner];
  // Fences count from where this restore reads: what a former owner appended before a fence is
  // state, whatever fences this store saw on an earlier read of the same changelog.
  uint64_t& fence_read = fence_read_[header.owner];
  if (header.kind == ChangelogKind::kFence) {
    fence_read = std::max(fence_read, header.epoch);
    if (header.epoch > progress.fence_epoch) {
      progress.fence_epoch = header.epoch;
      pending_ = true;
    }
    return RestoreStep::kFence;
  }
  // A record of an earlier epoch than one read before it (the fence, or, when the broker dropped
  // the fence with the changelog's oldest records, a later owner's commit or snapshot), or than
  // the commit the store holds, comes from an owner that lost the partition and did not know yet
  // (a zombie): every record of an epoch follows its fence.
  const bool fenced_out =
      header.epoch < fence_read || (header.epoch < progress.epoch && header.number > progress.number);
  fence_read = std::max(fence_read, header.epoch);
  if (header.kind == ChangelogKind::kSnapshot) {
    if (fenced_out) return RestoreStep::kFencedOut;
    if (header.number <= progress.number) return RestoreStep::kRepeat;
    return ApplySnapshotChunk(header, record);
  }
  // This store holds commits the changelog's history does not: it applied them as a zombie (its
  // own commits after another owner's fence), or another owner went on from an earlier commit.
  if (header.number <= progress.number &&
      (header.epoch > progress.epoch || (fenced_out && header.epoch == progress.epoch))) {
    diverged_ = header.owner;
    return absl::FailedPreconditionError(Cat(
        "changelog_diverged: this store holds commits of ", FormatOwner(header.owner), " through ", progress.number,
        " (epoch ", progress.epoch, ") that are not the changelog's: commit ", header.number, " there is of epoch ",
        header.epoch, fenced_out ? ", fenced out" : "",
        "; the store applied commits after another instance took the partition, and its state of the partition "
        "must be rebuilt from the changelog"));
  }
  if (fenced_out) return RestoreStep::kFencedOut;
  if (header.number <= progress.number) return RestoreStep::kRepeat;
  // The changelog begins past what the store holds when this is the owner's first commit read.
  const bool first_read = !seen_[header.owner];
  seen_[header.owner] = true;
  if (header.number != progress.number + 1 || behind_.contains(header.owner)) {
    // The changelog no longer holds the commits this store needs next (the broker dropped them,
    // or they are missing): only a snapshot of a later commit can bring the owner back.
    behind_.try_emplace(header.owner, Behind{progress.number, header.number, first_read});
    return RestoreStep::kBehind;
  }
  return ApplyCommit(header, record, progress);
}

absl::StatusOr<RestoreStep> ChangelogRestore::ApplyCommit(const ChangelogHeader& header, std::string_view record,
                                                          ChangelogProgress& progress) {
  const size_t sections = static_cast<uint8_t>(record[0]) == kChangelogVersionFiveSections ? 5 : kSectionCount;
  if (absl::Status s = ReadSections(header, std::string_view(record).substr(kHeaderBytes), sections); !s.ok()) {
    return s;
  }
  // An owner that never consumed the partition has no next offset to give (kNoNextOffset).
  if (header.next_offset != kNoNextOffset) {
    OffsetKey(header.owner.topic, header.owner.partition, key_scratch_);
    value_scratch_.clear();
    AppendBigEndian64(value_scratch_, static_cast<uint64_t>(header.next_offset));
    write_->Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  for (std::vector<PendingPut>* puts : {&line_id_puts_, &puts_}) {
    for (const PendingPut& put : *puts) write_->Put(put.table, put.key, put.value);
  }
  for (const auto& [day, closed_at_ms] : closes_) {
    // Instances close a window at the same instant (the clock's cutoff plus grace, or the
    // operator's instant from the control topic); should two differ, the earliest stands.
    auto [it, added] = windows_closed_.try_emplace(day, closed_at_ms);
    if (!added) it->second = std::min(it->second, closed_at_ms);
    closed_by_owner_[header.owner].insert(day);
  }
  recent_blob_.append(recent_entries_);
  progress.number = header.number;
  progress.epoch = header.epoch;
  ++commits_applied_;
  pending_ = true;
  if (write_->size_bytes() >= kPendingBytesMax) {
    if (absl::Status s = WritePending(); !s.ok()) return s;
  }
  return RestoreStep::kApplied;
}

uint32_t ChangelogRestore::LocalLineId(std::string_view line_key) {
  bool added = false;
  const uint32_t id = line_ids_.IdOf(line_key, added);
  if (added) {
    LineIdKey(id, key_scratch_);
    line_id_puts_.push_back({Table::kMeta, key_scratch_, std::string(line_key)});
  }
  return id;
}

absl::Status ChangelogRestore::ReadSections(const ChangelogHeader& header, std::string_view body,
                                            size_t section_count) {
  // The sections are read whole before anything is put, so a damaged record changes nothing.
  std::array<Section, kSnapshotSectionCount> sections{};
  ByteReader sections_reader(body);
  for (size_t i = 0; i < section_count; ++i) {
    auto& [count, bytes] = sections[i];
    if (!sections_reader.Fixed(count) || !sections_reader.Bytes(bytes)) return Damaged(header, "truncated");
  }
  if (!sections_reader.AtEnd()) return Damaged(header, "bytes after its last section");
  if (header.next_offset < 0 && header.next_offset != kNoNextOffset) return Damaged(header, "a negative next offset");
  const SourcePartition owner = header.owner;
  puts_.clear();
  line_id_puts_.clear();
  recent_entries_.clear();
  closes_.clear();
  not_carried_.clear();
  if (!QueueTxnRecords(owner, sections[0], recent_entries_)) return Damaged(header, "its transaction records");
  if (!QueueCounters(owner, sections[1])) return Damaged(header, "its window counters");
  if (!QueueGross(owner, sections[2])) return Damaged(header, "its partition gross");
  if (!QueueAppliedRecords(owner, sections[3])) {
    return Damaged(header, "its applied records (or one of another partition)");
  }
  if (!QueueExceptions(owner, sections[4])) return Damaged(header, "its exceptions");
  const bool closes_ok = ForEachEntry(sections[5], [&](ByteReader& r) {
    WindowDay day = 0;
    int64_t closed_at_ms = 0;
    if (!r.Fixed(day) || !r.Fixed(closed_at_ms) || closed_at_ms <= 0) return false;
    closes_.emplace_back(day, closed_at_ms);
    return true;
  });
  if (!closes_ok) return Damaged(header, "its windows closed");
  const bool not_carried_ok = ForEachEntry(sections[6], [&](ByteReader& r) {
    WindowDay day = 0;
    if (!r.Fixed(day)) return false;
    not_carried_.push_back(day);
    return true;
  });
  if (!not_carried_ok) return Damaged(header, "its days not carried");
  return absl::OkStatus();
}

absl::StatusOr<RestoreStep> ChangelogRestore::ApplySnapshotChunk(const ChangelogHeader& header,
                                                                 std::string_view record) {
  SnapshotChunk chunk;
  if (!DecodeSnapshotChunk(record, chunk)) return Damaged(header, "its chunk header");
  const SourcePartition owner = header.owner;
  if (chunk.index == 0) {
    SnapshotRead& read = snapshots_[owner];
    read = SnapshotRead();
    read.number = header.number;
    read.epoch = header.epoch;
    read.next_offset = header.next_offset;
  }
  const auto it = snapshots_.find(owner);
  if (it == snapshots_.end() || it->second.number != header.number || it->second.epoch != header.epoch ||
      it->second.next_chunk != chunk.index) {
    // Its first chunks are not in the changelog any more, or its writer stopped before its last
    // (another snapshot began): not one to restore from.
    if (it != snapshots_.end()) snapshots_.erase(it);
    return RestoreStep::kSnapshotPart;
  }
  if (absl::Status s = ReadSections(header, record.substr(kHeaderBytes + kSnapshotChunkFieldBytes),
                                    kSnapshotSectionCount);
      !s.ok()) {
    return s;
  }
  // New line numbers are written whatever becomes of the snapshot: this restore gives them on.
  for (const PendingPut& put : line_id_puts_) write_->Put(put.table, put.key, put.value);
  pending_ = pending_ || !line_id_puts_.empty();
  SnapshotRead& read = it->second;
  std::move(puts_.begin(), puts_.end(), std::back_inserter(read.puts));
  read.recent_entries.append(recent_entries_);
  read.closes.insert(read.closes.end(), closes_.begin(), closes_.end());
  read.not_carried.insert(not_carried_.begin(), not_carried_.end());
  ++read.next_chunk;
  if (!chunk.last) return RestoreStep::kSnapshotPart;
  if (absl::Status s = ApplySnapshot(owner); !s.ok()) return s;
  return RestoreStep::kApplied;
}

absl::Status ChangelogRestore::ApplySnapshot(SourcePartition owner) {
  const SnapshotRead read = std::move(snapshots_.at(owner));
  snapshots_.erase(owner);
  // The snapshot is the whole of the owner's state: what the store held of it goes first.
  if (absl::Status s = WritePending(); !s.ok()) return s;
  if (absl::Status s = DropOwnerState(store_, owner); !s.ok()) return s;
  for (const PendingPut& put : read.puts) write_->Put(put.table, put.key, put.value);
  if (read.next_offset != kNoNextOffset) {
    OffsetKey(owner.topic, owner.partition, key_scratch_);
    value_scratch_.clear();
    AppendBigEndian64(value_scratch_, static_cast<uint64_t>(read.next_offset));
    write_->Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  for (const WindowDay day : read.not_carried) {
    LackingShareKey(day, owner, key_scratch_);
    write_->Put(Table::kMeta, key_scratch_, {});
  }
  closed_by_owner_.erase(owner);
  for (const auto& [day, closed_at_ms] : read.closes) {
    auto [it, added] = windows_closed_.try_emplace(day, closed_at_ms);
    if (!added) it->second = std::min(it->second, closed_at_ms);
    closed_by_owner_[owner].insert(day);
  }
  recent_blob_.append(read.recent_entries);
  ChangelogProgress& progress = progress_[owner];
  progress.number = read.number;
  progress.epoch = read.epoch;
  behind_.erase(owner);
  ++snapshots_applied_;
  pending_ = true;
  return WritePending();
}

bool ChangelogRestore::QueueTxnRecords(SourcePartition owner, const Section& section, std::string& recent_entries) {
  // Renumbered to this store's lines; they join the pending write's recent-record blob.
  return ForEachEntry(section, [&](ByteReader& r) {
    std::string_view key, value;
    TxnRecord record;
    if (!r.Bytes(key) || !r.Bytes(value) || !HasOwner(key, owner) || !DecodeTxnRecord(value, line_ids_, record)) {
      return false;
    }
    if (!record.line_key.empty()) record.line_id = LocalLineId(record.line_key);
    EncodeTxnRecord(record, value_scratch_);
    AppendRecentTxnEntry(key, value_scratch_, recent_entries);
    return true;
  });
}

bool ChangelogRestore::QueueCounters(SourcePartition owner, const Section& section) {
  return ForEachEntry(section, [&](ByteReader& r) {
    WindowDay day = 0;
    std::string_view value;
    WindowCounters counters;
    if (!r.Fixed(day) || !r.Bytes(value) || !DecodeWindowCounters(value, counters)) return false;
    CountersKey(day, owner, key_scratch_);
    Put(Table::kMeta, key_scratch_, value);
    return true;
  });
}

bool ChangelogRestore::QueueGross(SourcePartition owner, const Section& section) {
  return ForEachEntry(section, [&](ByteReader& r) {
    WindowDay day = 0;
    int64_t gross_fen = 0;
    if (!r.Fixed(day) || !r.Fixed(gross_fen) || gross_fen < 0) return false;
    GrossKey(day, owner.topic, owner.partition, key_scratch_);
    EncodeGross(gross_fen, value_scratch_);
    Put(Table::kMeta, key_scratch_, value_scratch_);
    return true;
  });
}

bool ChangelogRestore::QueueAppliedRecords(SourcePartition owner, const Section& section) {
  // Renumbered to this store's lines; each of them of the record's partition. A retired
  // window's are read (a damaged one is refused) but not put back.
  return ForEachEntry(section, [&](ByteReader& r) {
    WindowDay day = 0;
    uint64_t number = 0;
    std::string_view blob;
    if (!r.Fixed(day) || !r.Fixed(number) || !r.Bytes(blob)) return false;
    blob_scratch_.clear();
    size_t position = 0;
    AppliedRecord record;
    bool damaged = false;
    while (NextAppliedRecord(blob, position, line_ids_, record, damaged)) {
      if (record.partition != owner.partition) return false;
      if (!record.line_key.empty()) record.line_id = LocalLineId(record.line_key);
      AppendAppliedRecord(record, blob_scratch_);
    }
    if (damaged) return false;
    if (retired_.contains(day)) return true;
    AppliedKey(day, owner, number, key_scratch_);
    Put(Table::kApplied, key_scratch_, blob_scratch_);
    return true;
  });
}

bool ChangelogRestore::QueueExceptions(SourcePartition owner, const Section& section) {
  return ForEachEntry(section, [&](ByteReader& r) {
    std::string_view key, value;
    ExceptionRecord exception;
    if (!r.Bytes(key) || !r.Bytes(value) || !HasOwner(key, owner) || !DecodeExceptionRecord(key, value, exception)) {
      return false;
    }
    if (!retired_.contains(exception.window)) Put(Table::kExceptions, key, value);
    return true;
  });
}

void ChangelogRestore::Put(Table table, std::string_view key, std::string_view value) {
  puts_.push_back({table, std::string(key), std::string(value)});
}

absl::Status ChangelogRestore::Flush() { return WritePending(); }

absl::Status ChangelogRestore::Finish() {
  if (!failure_.ok()) return failure_;
  if (!behind_.empty()) {
    const auto& [owner, behind] = *behind_.begin();
    failure_ = absl::DataLossError(Cat(
        behind.first_read ? "changelog_truncated: the changelog of " : "changelog_gap: the changelog of ",
        FormatOwner(owner), behind.first_read ? " begins at commit " : " skips to commit ", behind.found,
        " but this store holds its commits through ", behind.held_through, ": commits ", behind.held_through + 1,
        " to ", behind.found - 1, " are missing and no complete snapshot of a later commit follows; its state is not restored"));
    return failure_;
  }
  return WritePending();
}

bool ChangelogRestore::AwaitingSnapshotChunks() const {
  return std::any_of(behind_.begin(), behind_.end(),
                     [&](const auto& entry) { return snapshots_.contains(entry.first); });
}

absl::Status ChangelogRestore::WritePending() {
  if (!failure_.ok()) return failure_;
  if (!pending_) return absl::OkStatus();
  for (const auto& [owner, progress] : progress_) {
    ChangelogProgressKey(owner, key_scratch_);
    EncodeChangelogProgress(progress, value_scratch_);
    write_->Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  if (!recent_blob_.empty()) {
    // The restored transaction records go in as one commit of this store: newer than what its
    // sorted table and its earlier recent records hold of them.
    std::string blob;
    StartRecentTxnBlob(blob);
    blob.append(recent_blob_);
    RecentTxnKey(++commit_sequence_, key_scratch_);
    write_->Put(Table::kRecentTxn, key_scratch_, blob);
    value_scratch_.clear();
    AppendBigEndian64(value_scratch_, commit_sequence_);
    write_->Put(Table::kMeta, kCommitSequenceKey, value_scratch_);
  }
  absl::Status s = store_.Write(*write_);
  write_->Clear();
  recent_blob_.clear();
  pending_ = false;
  if (!s.ok()) failure_ = s;
  return s;
}

}  // namespace yrd
