#include "engine/store/records.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#include "engine/base/assert.h"
#include "engine/base/money.h"

namespace yrd {
namespace {

constexpr uint8_t kFormatVersion = 1;
// The per-event records (transaction, applied) are written once per event, so their integers
// are variable-length: version 2. Every other record stays at kFormatVersion.
constexpr uint8_t kCompactFormatVersion = 2;
// Version 3 of the per-event records names the line by its number (LineIds), not its text.
constexpr uint8_t kLineIdFormatVersion = 3;
// A 64-bit integer in zigzag LEB128 takes at most 10 bytes.
constexpr size_t kVarintBytesMax = 10;

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void Byte(uint8_t value) { out_.push_back(static_cast<char>(value)); }
  template <typename T>
  void Fixed(T value) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    out_.append(bytes, sizeof(T));
  }
  void Text(std::string_view text) {
    YRD_ASSERT(text.size() <= 255);
    Byte(static_cast<uint8_t>(text.size()));
    out_.append(text);
  }
  // Zigzag LEB128: small magnitudes of either sign take few bytes (a zero amount takes one).
  void Varint(int64_t value) {
    uint64_t bits = (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63);
    char bytes[kVarintBytesMax];
    size_t size = 0;
    while (bits >= 0x80) {
      bytes[size++] = static_cast<char>((bits & 0x7F) | 0x80);
      bits >>= 7;
    }
    bytes[size++] = static_cast<char>(bits);
    out_.append(bytes, size);
  }
  // A line number: 0 for none, else the number plus one.
  void LineRef(uint32_t id) { Varint(id == kNoLineId ? 0 : static_cast<int64_t>(id) + 1); }

 private:
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  bool Byte(uint8_t& value) {
    if (position_ + 1 > bytes_.size()) return false;
    value = static_cast<uint8_t>(bytes_[position_++]);
    return true;
  }
  template <typename T>
  bool Fixed(T& value) {
    if (position_ + sizeof(T) > bytes_.size()) return false;
    std::memcpy(&value, bytes_.data() + position_, sizeof(T));
    position_ += sizeof(T);
    return true;
  }
  bool Text(std::string_view& text) {
    uint8_t size = 0;
    if (!Byte(size) || position_ + size > bytes_.size()) return false;
    text = bytes_.substr(position_, size);
    position_ += size;
    return true;
  }
  template <typename T>
  bool Varint(T& value) {
    uint64_t bits = 0;
    for (size_t i = 0; i < kVarintBytesMax; ++i) {
      if (position_ >= bytes_.size()) return false;
      const auto byte = static_cast<uint8_t>(bytes_[position_++]);
      // The tenth byte holds bit 63 only; a last byte of zero after the first is a longer
      // spelling than Writer::Varint ever writes. Either means the bytes are not ours.
      if (i == kVarintBytesMax - 1 && byte > 1) return false;
      if (i > 0 && byte == 0) return false;
      bits |= static_cast<uint64_t>(byte & 0x7F) << (7 * i);
      if ((byte & 0x80) == 0) {
        const auto decoded = static_cast<int64_t>((bits >> 1) ^ (~(bits & 1) + 1));
        if (decoded < std::numeric_limits<T>::min() || decoded > std::numeric_limits<T>::max()) return false;
        value = static_cast<T>(decoded);
        return true;
      }
    }
    return false;  // more than ten bytes: not a varint this code wrote
  }
  bool View(size_t size, std::string_view& out) {
    if (size > bytes_.size() - position_) return false;
    out = bytes_.substr(position_, size);
    position_ += size;
    return true;
  }
  bool Raw(void* out, size_t size) {
    if (position_ + size > bytes_.size()) return false;
    std::memcpy(out, bytes_.data() + position_, size);
    position_ += size;
    return true;
  }
  // A line number and, from `line_ids`, its key; false when the number is not known.
  bool LineRef(const LineIds& line_ids, uint32_t& id, std::string_view& key) {
    int64_t stored = 0;
    if (!Varint(stored) || stored < 0 || stored > static_cast<int64_t>(kNoLineId)) return false;
    if (stored == 0) {
      id = kNoLineId;
      key = {};
      return true;
    }
    id = static_cast<uint32_t>(stored - 1);
    const std::optional<std::string_view> known = line_ids.KeyOf(id);
    if (!known) return false;
    key = *known;
    return true;
  }
  [[nodiscard]] size_t position() const { return position_; }
  [[nodiscard]] bool AtEnd() const { return position_ == bytes_.size(); }

 private:
  std::string_view bytes_;
  size_t position_ = 0;
};

void AppendLinePart(std::string& out, std::string_view part) {
  out.push_back('|');
  out.append(part);
}

// Splits "X|a|b|..." into exactly `count` parts after the tag.
template <size_t N>
bool SplitLineKey(std::string_view key, char tag, std::array<std::string_view, N>& parts) {
  if (key.size() < 2 || key[0] != tag || key[1] != '|') return false;
  key.remove_prefix(2);
  for (size_t i = 0; i < N; ++i) {
    const size_t bar = key.find('|');
    if (i + 1 < N) {
      if (bar == std::string_view::npos) return false;
      parts[i] = key.substr(0, bar);
      key.remove_prefix(bar + 1);
    } else {
      if (bar != std::string_view::npos) return false;
      parts[i] = key;
    }
  }
  return true;
}

}  // namespace

void AppendBigEndian32(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((value >> shift) & 0xFF));
}
void AppendBigEndian64(std::string& out, uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((value >> shift) & 0xFF));
}
uint32_t ReadBigEndian32(const char* data) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value = (value << 8) | static_cast<uint8_t>(data[i]);
  return value;
}
uint64_t ReadBigEndian64(const char* data) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | static_cast<uint8_t>(data[i]);
  return value;
}

void AppendOwner(std::string& out, SourcePartition owner) {
  out.push_back(static_cast<char>(owner.topic));
  AppendBigEndian32(out, static_cast<uint32_t>(owner.partition));
}
SourcePartition ReadOwner(const char* data) {
  return {static_cast<SourceTopic>(data[0]), static_cast<int32_t>(ReadBigEndian32(data + 1))};
}
std::string FormatOwner(SourcePartition owner) {
  return Cat(owner.topic == SourceTopic::kTaps ? kTapsTopic : kMedicalTopic, "/", owner.partition);
}

void TxnKey(SourcePartition owner, Family family, std::string_view txn_id, std::string& out) {
  out.clear();
  AppendOwner(out, owner);
  out.push_back(static_cast<char>('0' + static_cast<int>(family)));
  out.append(txn_id);
}
void OffsetKey(SourceTopic topic, int32_t partition, std::string& out) {
  out.assign(kOffsetKeyPrefix);
  out.push_back(static_cast<char>(topic));
  AppendBigEndian32(out, static_cast<uint32_t>(partition));
}
void DeadLetterKey(uint64_t commit_sequence, SourceTopic topic, int32_t partition, int64_t offset, std::string& out) {
  out.assign(kDeadLetterKeyPrefix);
  AppendBigEndian64(out, commit_sequence);
  out.push_back(static_cast<char>(topic));
  AppendBigEndian32(out, static_cast<uint32_t>(partition));
  AppendBigEndian64(out, static_cast<uint64_t>(offset));
}
void DeadLetterKeyLimit(uint64_t commit_sequence, std::string& out) {
  out.assign(kDeadLetterKeyPrefix);
  AppendBigEndian64(out, commit_sequence + 1);
}
void LineIdKey(uint32_t id, std::string& out) {
  out.assign(kLineIdKeyPrefix);
  AppendBigEndian32(out, id);
}
void LinesThroughKey(SourcePartition owner, std::string& out) {
  out.assign(kLinesThroughKeyPrefix);
  AppendOwner(out, owner);
}
void ChangelogProgressKey(SourcePartition owner, std::string& out) {
  out.assign(kChangelogKeyPrefix);
  AppendOwner(out, owner);
}
void LackingShareKey(WindowDay day, SourcePartition owner, std::string& out) {
  out.assign(kLackingShareKeyPrefix);
  AppendBigEndian32(out, WindowKeyBits(day));
  AppendOwner(out, owner);
}
void GrossKey(WindowDay day, SourceTopic topic, int32_t partition, std::string& out) {
  out.assign(kGrossKeyPrefix);
  AppendBigEndian32(out, WindowKeyBits(day));
  out.push_back(static_cast<char>(topic));
  AppendBigEndian32(out, static_cast<uint32_t>(partition));
}
void CountersKey(WindowDay day, SourcePartition owner, std::string& out) {
  out.assign(kCountersKeyPrefix);
  AppendBigEndian32(out, WindowKeyBits(day));
  AppendOwner(out, owner);
}
void WindowStateKey(WindowDay day, std::string& out) {
  out.assign(kWindowKeyPrefix);
  AppendBigEndian32(out, WindowKeyBits(day));
}
void WindowKeyPrefix(WindowDay day, std::string& out) {
  out.clear();
  AppendBigEndian32(out, WindowKeyBits(day));
}
void WindowOwnerKeyPrefix(WindowDay day, SourcePartition owner, std::string& out) {
  WindowKeyPrefix(day, out);
  AppendOwner(out, owner);
}
void LineStoreKey(WindowDay day, std::string_view line_key, std::string& out) {
  WindowKeyPrefix(day, out);
  out.append(line_key);
}
void AppliedKey(WindowDay day, SourcePartition owner, uint64_t number, std::string& out) {
  WindowOwnerKeyPrefix(day, owner, out);
  AppendBigEndian64(out, number);
}
void RecentTxnKey(uint64_t commit_sequence, std::string& out) {
  out.clear();
  AppendBigEndian64(out, commit_sequence);
}
void ExceptionKey(SourceTopic topic, int32_t partition, int64_t offset, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(topic));
  AppendBigEndian32(out, static_cast<uint32_t>(partition));
  AppendBigEndian64(out, static_cast<uint64_t>(offset));
}

void TapLineKey(const DecodedEvent& tap, std::string& out) {
  out.assign("T");
  AppendLinePart(out, tap.issuer_bank->bank_id);
  AppendLinePart(out, tap.issuer_bank->province);
  AppendLinePart(out, tap.merchant->merchant_id);
  AppendLinePart(out, tap.merchant_bank->bank_id);
  AppendLinePart(out, tap.merchant->province);
  AppendLinePart(out, CategoryName(tap.merchant->category));
}
void SettlementLineKey(const DecodedEvent& settlement, std::string& out) {
  out.assign("M");
  AppendLinePart(out, settlement.insured_fund->fund_id);
  AppendLinePart(out, settlement.insured_fund->province);
  AppendLinePart(out, settlement.merchant->merchant_id);
  AppendLinePart(out, settlement.institution_fund->fund_id);
  AppendLinePart(out, settlement.institution_fund->province);
}
std::optional<TapLineParts> ParseTapLineKey(std::string_view line_key) {
  std::array<std::string_view, 6> p;
  if (!SplitLineKey(line_key, 'T', p)) return std::nullopt;
  return TapLineParts{p[0], p[1], p[2], p[3], p[4], p[5]};
}
std::optional<SettlementLineParts> ParseSettlementLineKey(std::string_view line_key) {
  std::array<std::string_view, 5> p;
  if (!SplitLineKey(line_key, 'M', p)) return std::nullopt;
  return SettlementLineParts{p[0], p[1], p[2], p[3], p[4]};
}

bool NetIntoLine(EventKind kind, int64_t amount_fen, int64_t fund_pay_fen, int64_t account_pay_fen,
                 int64_t cash_pay_fen, LineTotals& line) {
  LineTotals next = line;
  auto add = [](int64_t& total, int64_t delta) {
    const std::optional<int64_t> sum = CheckedAddFen(total, delta);
    if (sum) total = *sum;
    return sum.has_value();
  };
  bool ok = true;
  switch (kind) {
    case EventKind::kTap:
      ok = add(next.count, 1) && add(next.amount_fen, amount_fen);
      break;
    case EventKind::kMedicalSettlement:
      ok = add(next.count, 1) && add(next.amount_fen, amount_fen) && add(next.fund_pay_fen, fund_pay_fen) &&
           add(next.account_pay_fen, account_pay_fen) && add(next.cash_pay_fen, cash_pay_fen);
      break;
    case EventKind::kTapRefund:
      ok = add(next.reversal_count, 1) && add(next.reversed_amount_fen, amount_fen);
      break;
    case EventKind::kMedicalCancellation:
      ok = add(next.reversal_count, 1) && add(next.reversed_amount_fen, amount_fen) &&
           add(next.reversed_fund_pay_fen, fund_pay_fen) && add(next.reversed_account_pay_fen, account_pay_fen) &&
           add(next.reversed_cash_pay_fen, cash_pay_fen);
      break;
  }
  if (ok) line = next;
  return ok;
}

void EncodeLineTotals(const LineTotals& t, std::string& out) {
  out.clear();
  Writer w(out);
  w.Byte(kFormatVersion);
  for (int64_t v : {t.count, t.amount_fen, t.fund_pay_fen, t.account_pay_fen, t.cash_pay_fen, t.reversal_count,
                    t.reversed_amount_fen, t.reversed_fund_pay_fen, t.reversed_account_pay_fen,
                    t.reversed_cash_pay_fen}) {
    w.Fixed(v);
  }
}
bool DecodeLineTotals(std::string_view bytes, LineTotals& t) {
  Reader r(bytes);
  uint8_t version = 0;
  if (!r.Byte(version) || version != kFormatVersion) return false;
  for (int64_t* v : {&t.count, &t.amount_fen, &t.fund_pay_fen, &t.account_pay_fen, &t.cash_pay_fen,
                     &t.reversal_count, &t.reversed_amount_fen, &t.reversed_fund_pay_fen,
                     &t.reversed_account_pay_fen, &t.reversed_cash_pay_fen}) {
    if (!r.Fixed(*v)) return false;
  }
  return r.AtEnd();
}

namespace {

// Every total of a line, for the field-by-field rules below.
constexpr std::array<int64_t LineTotals::*, 10> kLineTotalsFields = {
    &LineTotals::count,           &LineTotals::amount_fen,          &LineTotals::fund_pay_fen,
    &LineTotals::account_pay_fen, &LineTotals::cash_pay_fen,        &LineTotals::reversal_count,
    &LineTotals::reversed_amount_fen,   &LineTotals::reversed_fund_pay_fen,
    &LineTotals::reversed_account_pay_fen, &LineTotals::reversed_cash_pay_fen};
static_assert(sizeof(LineTotals) == kLineTotalsFields.size() * sizeof(int64_t), "a total missing from the list");

}  // namespace

bool AddLineTotals(const LineTotals& add, LineTotals& into) {
  LineTotals next = into;
  for (int64_t LineTotals::*field : kLineTotalsFields) {
    const std::optional<int64_t> sum = CheckedAddFen(next.*field, add.*field);
    if (!sum) return false;
    next.*field = *sum;
  }
  into = next;
  return true;
}

bool SubtractLineTotals(const LineTotals& part, LineTotals& line) {
  LineTotals next = line;
  for (int64_t LineTotals::*field : kLineTotalsFields) {
    const std::optional<int64_t> rest = CheckedSubFen(next.*field, part.*field);
    if (!rest || *rest < 0) return false;
    next.*field = *rest;
  }
  line = next;
  return true;
}

bool AddWindowCounters(const WindowCounters& add, WindowCounters& into) {
  WindowCounters next = into;
  auto add_one = [](int64_t& total, int64_t delta) {
    const std::optional<int64_t> sum = CheckedAddFen(total, delta);
    if (sum) total = *sum;
    return sum.has_value();
  };
  bool ok = add_one(next.applied_count, add.applied_count) &&
            add_one(next.exact_duplicate_count, add.exact_duplicate_count) && add_one(next.late_count, add.late_count);
  for (size_t i = 0; ok && i < kReasonCount; ++i) ok = add_one(next.exception_counts[i], add.exception_counts[i]);
  if (ok) into = next;
  return ok;
}

void EncodeWindowCounters(const WindowCounters& c, std::string& out) {
  out.clear();
  Writer w(out);
  w.Byte(kFormatVersion);
  w.Fixed(c.applied_count);
  w.Fixed(c.exact_duplicate_count);
  w.Fixed(c.late_count);
  w.Byte(static_cast<uint8_t>(kReasonCount));
  for (int64_t v : c.exception_counts) w.Fixed(v);
}
bool DecodeWindowCounters(std::string_view bytes, WindowCounters& c) {
  Reader r(bytes);
  uint8_t version = 0, reasons = 0;
  if (!r.Byte(version) || version != kFormatVersion) return false;
  if (!r.Fixed(c.applied_count) || !r.Fixed(c.exact_duplicate_count) || !r.Fixed(c.late_count)) return false;
  if (!r.Byte(reasons) || reasons > kReasonCount) return false;
  c.exception_counts = {};
  for (size_t i = 0; i < reasons; ++i) {
    if (!r.Fixed(c.exception_counts[i])) return false;
  }
  return r.AtEnd();
}

void EncodeGross(int64_t gross_fen, std::string& out) {
  out.clear();
  Writer w(out);
  w.Byte(kFormatVersion);
  w.Fixed(gross_fen);
}
bool DecodeGross(std::string_view key, std::string_view value, PartitionGross& out) {
  if (key.size() != kGrossKeyPrefix.size() + 9 || !key.starts_with(kGrossKeyPrefix)) return false;
  const char* bits = key.data() + kGrossKeyPrefix.size();
  out.day = WindowFromKeyBits(ReadBigEndian32(bits));
  const auto topic = static_cast<uint8_t>(bits[4]);
  out.topic = static_cast<SourceTopic>(topic);
  out.partition = static_cast<int32_t>(ReadBigEndian32(bits + 5));
  Reader r(value);
  uint8_t version = 0;
  return topic < kSourceTopicsMax && out.partition >= 0 && r.Byte(version) && version == kFormatVersion &&
         r.Fixed(out.gross_fen) && out.gross_fen >= 0 && r.AtEnd();
}

std::string_view WindowStateName(WindowState state) {
  switch (state) {
    case WindowState::kOpen: return "open";
    case WindowState::kClosing: return "closing";
    case WindowState::kClosed: return "closed";
    case WindowState::kFilesWritten: return "files_written";
  }
  return "unknown";
}
void EncodeWindowRecord(const WindowRecord& record, std::string& out) {
  out.clear();
  Writer w(out);
  w.Byte(kFormatVersion);
  w.Byte(static_cast<uint8_t>(record.state));
  w.Fixed(record.closed_at_ms);
  w.Byte(static_cast<uint8_t>(kCategoryCount));
  for (const int32_t bps : record.fee_basis_points) w.Fixed(bps);
  w.Text(record.fee_bank_id);
  for (const std::vector<std::string>* ids :
       {&record.registered_bank_ids, &record.registered_fund_ids, &record.registered_province_codes}) {
    w.Varint(static_cast<int64_t>(ids->size()));
    for (const std::string& id : *ids) w.Text(id);
  }
  w.Varint(record.files_written_at_ms);
  w.Varint(record.retired_at_ms);
}
bool DecodeWindowRecord(std::string_view bytes, WindowRecord& out) {
  Reader r(bytes);
  uint8_t version = 0, state = 0;
  if (!r.Byte(version) || version != kFormatVersion || !r.Byte(state) || state > 3) return false;
  out.state = static_cast<WindowState>(state);
  uint8_t categories = 0;
  if (!r.Fixed(out.closed_at_ms) || !r.Byte(categories) || categories > kCategoryCount) return false;
  out.fee_basis_points = {};
  for (size_t i = 0; i < categories; ++i) {
    if (!r.Fixed(out.fee_basis_points[i])) return false;
  }
  std::string_view fee_bank_id;
  if (!r.Text(fee_bank_id)) return false;
  out.fee_bank_id.assign(fee_bank_id);
  for (std::vector<std::string>* ids :
       {&out.registered_bank_ids, &out.registered_fund_ids, &out.registered_province_codes}) {
    ids->clear();
  }
  out.files_written_at_ms = 0;
  out.retired_at_ms = 0;
  if (r.AtEnd()) return true;  // written before the participants were frozen with the window
  for (std::vector<std::string>* ids :
       {&out.registered_bank_ids, &out.registered_fund_ids, &out.registered_province_codes}) {
    int64_t count = 0;
    if (!r.Varint(count) || count < 0 || static_cast<size_t>(count) > bytes.size()) return false;
    for (int64_t i = 0; i < count; ++i) {
      std::string_view id;
      if (!r.Text(id)) return false;
      ids->emplace_back(id);
    }
  }
  if (r.AtEnd()) return true;  // written before files and retirement were dated
  return r.Varint(out.files_written_at_ms) && out.files_written_at_ms >= 0 && r.Varint(out.retired_at_ms) &&
         out.retired_at_ms >= 0 && r.AtEnd();
}

// TxnRecord layout: version, kind, flags, occurred (fixed 8, read alone by the horizon
// filter), digest (16), then varints: window, partition, offset, amount, fund, account, cash,
// refunded, duplicates; then line_key, original_txn_id.
constexpr size_t kTxnOccurredAtPosition = 3;

namespace {
// Versions 2 and 3 differ only in how the line is named: its key in text or its number.
void EncodeTxnRecordAs(const TxnRecord& t, bool line_in_text, std::string& out) {
  out.clear();
  Writer w(out);
  w.Byte(line_in_text ? kCompactFormatVersion : kLineIdFormatVersion);
  w.Byte(static_cast<uint8_t>(t.kind));
  w.Byte(static_cast<uint8_t>((t.late ? 1 : 0) | (t.cancelled ? 2 : 0)));
  w.Fixed(t.occurred_at_ms);
  w.Fixed(t.digest.high);
  w.Fixed(t.digest.low);
  w.Varint(t.window);
  w.Varint(t.partition);
  w.Varint(t.offset);
  w.Varint(t.amount_fen);
  w.Varint(t.fund_pay_fen);
  w.Varint(t.account_pay_fen);
  w.Varint(t.cash_pay_fen);
  w.Varint(t.refunded_fen);
  w.Varint(t.duplicate_count);
  if (line_in_text) {
    w.Text(t.line_key);
  } else {
    w.LineRef(t.line_id);
  }
  w.Text(t.original_txn_id);
}
}  // namespace

void EncodeTxnRecord(const TxnRecord& t, std::string& out) { EncodeTxnRecordAs(t, false, out); }
void EncodeTxnRecordWithLineKey(const TxnRecord& t, std::string& out) { EncodeTxnRecordAs(t, true, out); }
bool DecodeTxnRecord(std::string_view bytes, const LineIds& line_ids, TxnRecord& t) {
  Reader r(bytes);
  uint8_t version = 0, kind = 0, flags = 0;
  if (!r.Byte(version) ||
      (version != kLineIdFormatVersion && version != kCompactFormatVersion && version != kFormatVersion) ||
      !r.Byte(kind) || kind > 3 || !r.Byte(flags)) {
    return false;
  }
  t.kind = static_cast<EventKind>(kind);
  t.late = (flags & 1) != 0;
  t.cancelled = (flags & 2) != 0;
  t.line_id = kNoLineId;
  if (version == kFormatVersion) {
    // Stores written before the compact layout: window, partition, offset, occurred, digest,
    // then every integer at its full width.
    return r.Fixed(t.window) && r.Fixed(t.partition) && r.Fixed(t.offset) && r.Fixed(t.occurred_at_ms) &&
           r.Fixed(t.digest.high) && r.Fixed(t.digest.low) && r.Fixed(t.amount_fen) && r.Fixed(t.fund_pay_fen) &&
           r.Fixed(t.account_pay_fen) && r.Fixed(t.cash_pay_fen) && r.Fixed(t.refunded_fen) &&
           r.Fixed(t.duplicate_count) && r.Text(t.line_key) && r.Text(t.original_txn_id) && r.AtEnd();
  }
  const bool ok = r.Fixed(t.occurred_at_ms) && r.Fixed(t.digest.high) && r.Fixed(t.digest.low) &&
                  r.Varint(t.window) && r.Varint(t.partition) && r.Varint(t.offset) && r.Varint(t.amount_fen) &&
                  r.Varint(t.fund_pay_fen) && r.Varint(t.account_pay_fen) && r.Varint(t.cash_pay_fen) &&
                  r.Varint(t.refunded_fen) && r.Varint(t.duplicate_count);
  if (!ok) return false;
  const bool line_ok = version == kLineIdFormatVersion ? r.LineRef(line_ids, t.line_id, t.line_key) : r.Text(t.line_key);
  return line_ok && r.Text(t.original_txn_id) && r.AtEnd();
}
std::optional<int64_t> TxnRecordOccurredAt(std::string_view bytes) {
  // Version 1 kept window (4), partition (4) and offset (8) before the occurrence time.
  constexpr size_t kVersion1OccurredAtPosition = 3 + 4 + 4 + 8;
  if (bytes.empty()) return std::nullopt;
  const auto version = static_cast<uint8_t>(bytes[0]);
  size_t position = 0;
  if (version == kLineIdFormatVersion || version == kCompactFormatVersion) {
    position = kTxnOccurredAtPosition;
  } else if (version == kFormatVersion) {
    position = kVersion1OccurredAtPosition;
  } else {
    return std::nullopt;
  }
  if (bytes.size() < position + 8) return std::nullopt;
  int64_t occurred_at_ms = 0;
  std::memcpy(&occurred_at_ms, bytes.data() + position, sizeof occurred_at_ms);
  return occurred_at_ms;
}

// Recent transaction records: version, then per entry the key as text and the record as a
// varint length and its bytes.
void EncodeOwnership(const Ownership& ownership, std::string& out) {
  out.clear();
  Writer w(out);
  w.Byte(kFormatVersion);
  for (const uint32_t count : ownership.partition_counts) w.Fixed(count);
  w.Fixed(static_cast<uint32_t>(ownership.owned.size()));
  for (const SourcePartition owner : ownership.owned) {
    w.Byte(static_cast<uint8_t>(owner.topic));
    w.Fixed(owner.partition);
  }
}
bool DecodeOwnership(std::string_view bytes, Ownership& out) {
  Reader r(bytes);
  uint8_t version = 0;
  uint32_t count = 0;
  if (!r.Byte(version) || version != kFormatVersion || !r.Fixed(out.partition_counts[0]) ||
      !r.Fixed(out.partition_counts[1]) || !r.Fixed(count)) {
    return false;
  }
  if (count > static_cast<uint32_t>(kSourcePartitionsMax)) return false;
  out.owned.clear();
  for (uint32_t i = 0; i < count; ++i) {
    uint8_t topic = 0;
    int32_t partition = 0;
    if (!r.Byte(topic) || !r.Fixed(partition) || topic >= kSourceTopicsMax) return false;
    out.owned.push_back({static_cast<SourceTopic>(topic), partition});
  }
  return r.AtEnd();
}

void StartRecentTxnBlob(std::string& blob) {
  blob.clear();
  Writer(blob).Byte(kFormatVersion);
}
void AppendRecentTxnEntry(std::string_view txn_key, std::string_view record, std::string& blob) {
  Writer w(blob);
  w.Text(txn_key);
  w.Varint(static_cast<int64_t>(record.size()));
  blob.append(record);
}
bool NextRecentTxnEntry(std::string_view blob, size_t& position, std::string_view& txn_key, std::string_view& record,
                        bool& damaged) {
  damaged = false;
  if (position == 0) {
    if (blob.empty() || static_cast<uint8_t>(blob[0]) != kFormatVersion) {
      damaged = true;
      return false;
    }
    position = 1;
  }
  if (position == blob.size()) return false;
  Reader r(blob.substr(position));
  int64_t size = 0;
  if (!r.Text(txn_key) || txn_key.empty() || !r.Varint(size) || size <= 0 ||
      !r.View(static_cast<size_t>(size), record)) {
    damaged = true;
    return false;
  }
  position += r.position();
  return true;
}

// AppliedRecord: u16 length, then version, kind, late, occurred (fixed 8), varints: partition,
// offset, amounts; then the token and the strings.
namespace {
void AppendAppliedRecordAs(const AppliedRecord& a, bool line_in_text, std::string& blob) {
  const size_t start = blob.size();
  blob.append(2, '\0');
  Writer w(blob);
  w.Byte(line_in_text ? kCompactFormatVersion : kLineIdFormatVersion);
  w.Byte(static_cast<uint8_t>(a.kind));
  w.Byte(a.late ? 1 : 0);
  w.Fixed(a.occurred_at_ms);
  w.Varint(a.partition);
  w.Varint(a.offset);
  w.Varint(a.amount_fen);
  w.Varint(a.fund_pay_fen);
  w.Varint(a.account_pay_fen);
  w.Varint(a.cash_pay_fen);
  blob.append(reinterpret_cast<const char*>(a.card_token.data()), a.card_token.size());
  w.Text(a.txn_id);
  w.Text(a.original_txn_id);
  if (line_in_text) {
    w.Text(a.line_key);
  } else {
    w.LineRef(a.line_id);
  }
  w.Text(a.terminal_id);
  w.Text(a.card_masked);
  const size_t length = blob.size() - start - 2;
  YRD_ASSERT(length <= 0xFFFF);
  blob[start] = static_cast<char>(length & 0xFF);
  blob[start + 1] = static_cast<char>(length >> 8);
}
}  // namespace

void AppendAppliedRecord(const AppliedRecord& a, std::string& blob) { AppendAppliedRecordAs(a, false, blob); }
void AppendAppliedRecordWithLineKey(const AppliedRecord& a, std::string& blob) {
  AppendAppliedRecordAs(a, true, blob);
}

bool NextAppliedRecord(std::string_view blob, size_t& position, const LineIds& line_ids, AppliedRecord& a,
                       bool& damaged) {
  damaged = false;
  if (position == blob.size()) return false;
  if (position + 2 > blob.size()) {
    damaged = true;
    return false;
  }
  const size_t length = static_cast<uint8_t>(blob[position]) | (static_cast<size_t>(static_cast<uint8_t>(blob[position + 1])) << 8);
  if (position + 2 + length > blob.size()) {
    damaged = true;
    return false;
  }
  Reader r(blob.substr(position + 2, length));
  uint8_t version = 0, kind = 0, late = 0;
  bool ok = r.Byte(version) &&
            (version == kLineIdFormatVersion || version == kCompactFormatVersion || version == kFormatVersion) &&
            r.Byte(kind) && kind <= 3 && r.Byte(late) && r.Fixed(a.occurred_at_ms);
  if (version == kFormatVersion) {  // stores written before the compact layout
    ok = ok && r.Fixed(a.partition) && r.Fixed(a.offset) && r.Fixed(a.amount_fen) && r.Fixed(a.fund_pay_fen) &&
         r.Fixed(a.account_pay_fen) && r.Fixed(a.cash_pay_fen);
  } else {
    ok = ok && r.Varint(a.partition) && r.Varint(a.offset) && r.Varint(a.amount_fen) && r.Varint(a.fund_pay_fen) &&
         r.Varint(a.account_pay_fen) && r.Varint(a.cash_pay_fen);
  }
  ok = ok && r.Raw(a.card_token.data(), a.card_token.size()) && r.Text(a.txn_id) && r.Text(a.original_txn_id);
  a.line_id = kNoLineId;
  ok = ok && (version == kLineIdFormatVersion ? r.LineRef(line_ids, a.line_id, a.line_key) : r.Text(a.line_key));
  ok = ok && r.Text(a.terminal_id) && r.Text(a.card_masked) && r.AtEnd();
  if (!ok) {
    damaged = true;
    return false;
  }
  a.kind = static_cast<EventKind>(kind);
  a.late = late != 0;
  position += 2 + length;
  return true;
}

// Version 2 of an exception record adds the detail and the message key.
constexpr uint8_t kExceptionDetailFormatVersion = 2;

void EncodeExceptionRecord(const ExceptionRecord& e, std::string& out) {
  out.clear();
  Writer w(out);
  w.Byte(kExceptionDetailFormatVersion);
  w.Byte(static_cast<uint8_t>(e.reason));
  w.Fixed(e.window);
  w.Fixed(e.message_digest.high);
  w.Fixed(e.message_digest.low);
  w.Fixed(e.first_digest.high);
  w.Fixed(e.first_digest.low);
  w.Text(e.txn_id);
  w.Text(e.original_txn_id);
  w.Text(e.detail.substr(0, kExceptionTextBytesMax));
  w.Text(e.message_key.substr(0, kExceptionTextBytesMax));
}
bool DecodeExceptionRecord(std::string_view key, std::string_view bytes, ExceptionRecord& e) {
  if (key.size() != 13) return false;
  e.topic = static_cast<SourceTopic>(key[0]);
  e.partition = static_cast<int32_t>(ReadBigEndian32(key.data() + 1));
  e.offset = static_cast<int64_t>(ReadBigEndian64(key.data() + 5));
  Reader r(bytes);
  uint8_t version = 0, reason = 0;
  if (!r.Byte(version) || (version != kFormatVersion && version != kExceptionDetailFormatVersion) ||
      !r.Byte(reason) || reason >= kReasonCount) {
    return false;
  }
  e.reason = static_cast<Reason>(reason);
  e.detail = {};
  e.message_key = {};
  const bool ok = r.Fixed(e.window) && r.Fixed(e.message_digest.high) && r.Fixed(e.message_digest.low) &&
                  r.Fixed(e.first_digest.high) && r.Fixed(e.first_digest.low) && r.Text(e.txn_id) &&
                  r.Text(e.original_txn_id);
  if (!ok) return false;
  if (version == kExceptionDetailFormatVersion && !(r.Text(e.detail) && r.Text(e.message_key))) return false;
  return r.AtEnd();
}

std::string_view DeadLetterPayloadName(DeadLetterPayload form) {
  switch (form) {
    case DeadLetterPayload::kOriginal: return "original";
    case DeadLetterPayload::kRedacted: return "redacted";
    case DeadLetterPayload::kWithheld: return "withheld";
  }
  return "unknown";
}

// DeadLetterCopy value: version, reason, window (varint), digest (16), key and payload each
// with a varint length; version 3 adds the payload's form and the detail, and seals the payload.
constexpr uint8_t kSealedDeadLetterFormatVersion = 3;

void EncodeDeadLetterCopy(const DeadLetterCopy& copy, std::string& out) {
  out.clear();
  Writer w(out);
  w.Byte(kSealedDeadLetterFormatVersion);
  w.Byte(static_cast<uint8_t>(copy.reason));
  w.Varint(copy.window);
  w.Fixed(copy.digest.high);
  w.Fixed(copy.digest.low);
  w.Varint(static_cast<int64_t>(copy.key.size()));
  out.append(copy.key);
  w.Varint(static_cast<int64_t>(copy.payload.size()));
  out.append(copy.payload);
  w.Byte(static_cast<uint8_t>(copy.payload_form));
  w.Varint(static_cast<int64_t>(copy.detail.size()));
  out.append(copy.detail);
}
bool DecodeDeadLetterCopy(std::string_view key, std::string_view value, DeadLetterCopy& out, bool& sealed) {
  constexpr size_t kKeySize = 4 + 8 + 1 + 4 + 8;  // "dlq|", sequence, topic, partition, offset
  if (key.size() != kKeySize || !key.starts_with(kDeadLetterKeyPrefix)) return false;
  out.commit_sequence = ReadBigEndian64(key.data() + 4);
  out.topic = static_cast<SourceTopic>(key[12]);
  out.partition = static_cast<int32_t>(ReadBigEndian32(key.data() + 13));
  out.offset = static_cast<int64_t>(ReadBigEndian64(key.data() + 17));
  Reader r(value);
  uint8_t version = 0, reason = 0;
  int64_t key_size = 0, payload_size = 0;
  if (!r.Byte(version) || (version != kCompactFormatVersion && version != kSealedDeadLetterFormatVersion) ||
      !r.Byte(reason) || reason >= kReasonCount || !r.Varint(out.window) || !r.Fixed(out.digest.high) ||
      !r.Fixed(out.digest.low) || !r.Varint(key_size) || key_size < 0 ||
      !r.View(static_cast<size_t>(key_size), out.key) || !r.Varint(payload_size) || payload_size < 0 ||
      !r.View(static_cast<size_t>(payload_size), out.payload)) {
    return false;
  }
  out.reason = static_cast<Reason>(reason);
  sealed = version == kSealedDeadLetterFormatVersion;
  out.payload_form = DeadLetterPayload::kOriginal;
  out.detail = {};
  if (sealed) {
    uint8_t form = 0;
    int64_t detail_size = 0;
    if (!r.Byte(form) || form > static_cast<uint8_t>(DeadLetterPayload::kWithheld) || !r.Varint(detail_size) ||
        detail_size < 0 || !r.View(static_cast<size_t>(detail_size), out.detail)) {
      return false;
    }
    out.payload_form = static_cast<DeadLetterPayload>(form);
  }
  return r.AtEnd();
}

// ---- line ids --------------------------------------------------------------------------------

std::string_view LineIds::Keep(std::string_view key) {
  if (key_blocks_.empty() || key.size() > kKeyBlockBytes - key_block_used_) {
    key_blocks_.push_back(std::make_unique<char[]>(std::max(key.size(), kKeyBlockBytes)));
    key_block_used_ = 0;
  }
  char* const at = key_blocks_.back().get() + key_block_used_;
  std::copy(key.begin(), key.end(), at);
  key_block_used_ = key.size() > kKeyBlockBytes ? kKeyBlockBytes : key_block_used_ + key.size();
  return {at, key.size()};
}

uint32_t LineIds::Insert(std::string_view key, size_t hash) {
  YRD_ASSERT(keys_.size() < kNoLineId);
  const auto id = static_cast<uint32_t>(keys_.size());
  const std::string_view kept = Keep(key);
  keys_.push_back(kept);
  ids_.emplace(HashedKey{kept, hash}, id);
  return id;
}

uint32_t LineIds::IdOf(std::string_view key, bool& added) {
  const size_t hash = StringHash{}(key);
  if (const auto it = ids_.find(HashedKey{key, hash}); it != ids_.end()) {
    added = false;
    return it->second;
  }
  added = true;
  return Insert(key, hash);
}

std::optional<uint32_t> LineIds::Find(std::string_view key) const {
  const auto it = ids_.find(HashedKey{key, StringHash{}(key)});
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

bool LineIds::Add(uint32_t id, std::string_view key) {
  const size_t hash = StringHash{}(key);
  if (id != keys_.size() || id == kNoLineId || ids_.contains(HashedKey{key, hash})) return false;
  Insert(key, hash);
  return true;
}

}  // namespace yrd
