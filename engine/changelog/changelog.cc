#include "engine/changelog/changelog.h"

#include <algorithm>
#include <array>
#include <cstring>
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
//   length u32 before its entries.
constexpr uint8_t kChangelogVersion = 2;
constexpr uint8_t kChangelogVersionFiveSections = 1;
constexpr uint8_t kProgressVersion = 1;
constexpr size_t kHeaderBytes = 2 + kOwnerKeyBytes + 8 + 8 + 8;
constexpr size_t kSectionCount = 6;

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
  if (kind != static_cast<uint8_t>(ChangelogKind::kCommit) && kind != static_cast<uint8_t>(ChangelogKind::kFence)) {
    return false;
  }
  out.kind = static_cast<ChangelogKind>(kind);
  const auto topic = static_cast<uint8_t>(record[2]);
  if (topic > static_cast<uint8_t>(SourceTopic::kMedical)) return false;
  out.owner = ReadOwner(record.data() + 2);
  if (out.owner.partition < 0 || out.owner.partition >= kSourcePartitionsPerTopicMax) return false;
  ByteReader r(record.substr(2 + kOwnerKeyBytes));
  return r.Fixed(out.epoch) && r.Fixed(out.number) && r.Fixed(out.next_offset);
}

// ---- building ------------------------------------------------------------------------------------

void ChangelogRecordBuilder::Start(const ChangelogHeader& header) {
  header_ = header;
  for (Section* section : {&txn_, &counters_, &gross_, &applied_, &exceptions_, &closes_}) {
    section->count = 0;
    section->bytes.clear();
  }
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

void ChangelogRecordBuilder::Finish(std::string& out) {
  EncodeHeader(header_, out);
  for (Section* section : {&txn_, &counters_, &gross_, &applied_, &exceptions_, &closes_}) {
    PutFixed(out, section->count);
    PutBytes(out, section->bytes);
    section->count = 0;
    section->bytes.clear();
  }
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
  return store.Write(*write);
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
  const bool first_read = !seen_[header.owner];
  seen_[header.owner] = true;
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
  // A commit of an earlier epoch than a fence before it comes from an owner that lost the
  // partition and did not know yet (a zombie).
  const bool fenced_out = header.epoch < fence_read;
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
  if (header.number != progress.number + 1) {
    return absl::DataLossError(Cat(first_read ? "changelog_truncated: the changelog of " : "changelog_gap: the changelog of ",
                                   FormatOwner(header.owner), first_read ? " begins at commit " : " skips to commit ",
                                   header.number, " but this store holds its commits through ", progress.number,
                                   ": commits ", progress.number + 1, " to ", header.number - 1,
                                   " are missing; its state is not restored"));
  }
  const size_t sections = static_cast<uint8_t>(record[0]) == kChangelogVersionFiveSections ? 5 : kSectionCount;
  if (absl::Status s = ApplyCommit(header, std::string_view(record).substr(kHeaderBytes), sections); !s.ok()) {
    return s;
  }
  progress.number = header.number;
  progress.epoch = header.epoch;
  ++commits_applied_;
  pending_ = true;
  if (write_->size_bytes() >= kPendingBytesMax) {
    if (absl::Status s = Flush(); !s.ok()) return s;
  }
  return RestoreStep::kApplied;
}

uint32_t ChangelogRestore::LocalLineId(std::string_view line_key) {
  bool added = false;
  const uint32_t id = line_ids_.IdOf(line_key, added);
  if (added) {
    LineIdKey(id, key_scratch_);
    Put(Table::kMeta, key_scratch_, line_key);
  }
  return id;
}

absl::Status ChangelogRestore::ApplyCommit(const ChangelogHeader& header, std::string_view body,
                                           size_t section_count) {
  // The sections are read whole before anything is put, so a damaged record changes nothing.
  std::array<Section, kSectionCount> sections{};
  ByteReader sections_reader(body);
  for (size_t i = 0; i < section_count; ++i) {
    auto& [count, bytes] = sections[i];
    if (!sections_reader.Fixed(count) || !sections_reader.Bytes(bytes)) return Damaged(header, "truncated");
  }
  if (!sections_reader.AtEnd()) return Damaged(header, "bytes after its last section");
  const SourcePartition owner = header.owner;
  puts_.clear();
  std::string recent_entries;
  if (!QueueTxnRecords(owner, sections[0], recent_entries)) return Damaged(header, "its transaction records");
  if (!QueueCounters(owner, sections[1])) return Damaged(header, "its window counters");
  if (!QueueGross(owner, sections[2])) return Damaged(header, "its partition gross");
  if (!QueueAppliedRecords(owner, sections[3])) {
    return Damaged(header, "its applied records (or one of another partition)");
  }
  if (!QueueExceptions(owner, sections[4])) return Damaged(header, "its exceptions");
  std::vector<std::pair<WindowDay, int64_t>> closes;
  const bool closes_ok = ForEachEntry(sections[5], [&](ByteReader& r) {
    WindowDay day = 0;
    int64_t closed_at_ms = 0;
    if (!r.Fixed(day) || !r.Fixed(closed_at_ms) || closed_at_ms <= 0) return false;
    closes.emplace_back(day, closed_at_ms);
    return true;
  });
  if (!closes_ok) return Damaged(header, "its windows closed");

  // An owner that never consumed the partition has no next offset to give (kNoNextOffset).
  if (header.next_offset != kNoNextOffset) {
    if (header.next_offset < 0) return Damaged(header, "a negative next offset");
    OffsetKey(owner.topic, owner.partition, key_scratch_);
    value_scratch_.clear();
    AppendBigEndian64(value_scratch_, static_cast<uint64_t>(header.next_offset));
    Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  for (const PendingPut& put : puts_) write_->Put(put.table, put.key, put.value);
  for (const auto& [day, closed_at_ms] : closes) {
    // Instances close a window at the same instant (the clock's cutoff plus grace, or the
    // operator's instant from the control topic); should two differ, the earliest stands.
    auto [it, added] = windows_closed_.try_emplace(day, closed_at_ms);
    if (!added) it->second = std::min(it->second, closed_at_ms);
    closed_by_owner_[owner].insert(day);
  }
  recent_blob_.append(recent_entries);
  return absl::OkStatus();
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

absl::Status ChangelogRestore::Flush() {
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
