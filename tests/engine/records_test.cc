// Store records: what is encoded decodes to the same values, at the edges of every field, and
// a record that was cut short or is not one of ours is refused rather than misread.
#include "engine/store/records.h"

#include <cstdint>
#include <limits>
#include <string>

#include "engine/readers/store_readers.h"
#include "gtest/gtest.h"
#include "tests/support/events.h"

namespace yrd {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

constexpr std::string_view kSettlementLine = "M|FUND31|31|H0001|outpatient";
constexpr std::string_view kTapLine = "T|B1|31|M1|B2|31|metro";

// The line ids the records of these tests name: the settlement line is 0, the tap line 1.
const LineIds& TestLineIds() {
  static const LineIds* ids = [] {
    auto* made = new LineIds();
    bool added = false;
    made->IdOf(kSettlementLine, added);
    made->IdOf(kTapLine, added);
    return made;
  }();
  return *ids;
}

TxnRecord SomeTxn() {
  TxnRecord t;
  t.kind = EventKind::kMedicalSettlement;
  t.late = true;
  t.cancelled = true;
  t.window = 20261127;
  t.partition = 15;
  t.offset = 123'456'789;
  t.occurred_at_ms = 1'795'795'140'000;
  t.digest = Digest{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  t.amount_fen = 12'345;
  t.fund_pay_fen = 10'000;
  t.account_pay_fen = 2'000;
  t.cash_pay_fen = 345;
  t.refunded_fen = 0;
  t.duplicate_count = 2;
  t.line_id = 0;
  t.line_key = kSettlementLine;
  t.original_txn_id = "";
  return t;
}

void ExpectSameTxn(const TxnRecord& a, const TxnRecord& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.late, b.late);
  EXPECT_EQ(a.cancelled, b.cancelled);
  EXPECT_EQ(a.window, b.window);
  EXPECT_EQ(a.partition, b.partition);
  EXPECT_EQ(a.offset, b.offset);
  EXPECT_EQ(a.occurred_at_ms, b.occurred_at_ms);
  EXPECT_EQ(a.digest.high, b.digest.high);
  EXPECT_EQ(a.digest.low, b.digest.low);
  EXPECT_EQ(a.amount_fen, b.amount_fen);
  EXPECT_EQ(a.fund_pay_fen, b.fund_pay_fen);
  EXPECT_EQ(a.account_pay_fen, b.account_pay_fen);
  EXPECT_EQ(a.cash_pay_fen, b.cash_pay_fen);
  EXPECT_EQ(a.refunded_fen, b.refunded_fen);
  EXPECT_EQ(a.duplicate_count, b.duplicate_count);
  EXPECT_EQ(a.line_key, b.line_key);
  EXPECT_EQ(a.original_txn_id, b.original_txn_id);
}

TEST(TxnRecord, RoundTripsAnOrdinaryRecord) {
  const TxnRecord record = SomeTxn();
  std::string bytes;
  EncodeTxnRecord(record, bytes);
  TxnRecord decoded;
  ASSERT_TRUE(DecodeTxnRecord(bytes, TestLineIds(), decoded));
  ExpectSameTxn(record, decoded);
}

TEST(TxnRecord, RoundTripsTheExtremesOfEveryIntegerField) {
  for (const int64_t value : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{63}, int64_t{-64}, int64_t{64},
                              int64_t{127}, int64_t{128}, kMax, kMin, kMax - 1, kMin + 1}) {
    TxnRecord record = SomeTxn();
    record.offset = record.amount_fen = record.fund_pay_fen = record.account_pay_fen = record.cash_pay_fen =
        record.refunded_fen = record.duplicate_count = record.occurred_at_ms = value;
    record.window = static_cast<WindowDay>(value);
    record.partition = static_cast<int32_t>(value);
    std::string bytes;
    EncodeTxnRecord(record, bytes);
    TxnRecord decoded;
    ASSERT_TRUE(DecodeTxnRecord(bytes, TestLineIds(), decoded)) << value;
    ExpectSameTxn(record, decoded);
  }
}

TEST(TxnRecord, SmallValuesTakeFewBytes) {
  TxnRecord record = SomeTxn();
  record.line_id = kNoLineId;
  std::string bytes;
  EncodeTxnRecord(record, bytes);
  // version, kind, flags, occurred (8), digest (16): 27 fixed bytes; the nine integers of an
  // ordinary record fit in 21 more, and no line and an empty original take one byte each.
  EXPECT_LE(bytes.size(), 27u + 21u + 2u);
  // A line is its number, whatever its key's length: three bytes up to about a million lines.
  const size_t without_line = bytes.size();
  record.line_id = 1'000'000;
  EncodeTxnRecord(record, bytes);
  EXPECT_LE(bytes.size(), without_line + 2);
}

TEST(TxnRecord, LineNumberNotKnownIsRefused) {
  TxnRecord record = SomeTxn();
  record.line_id = 2;  // TestLineIds knows 0 and 1
  std::string bytes;
  EncodeTxnRecord(record, bytes);
  TxnRecord decoded;
  EXPECT_FALSE(DecodeTxnRecord(bytes, TestLineIds(), decoded));
  record.line_id = 1;
  EncodeTxnRecord(record, bytes);
  ASSERT_TRUE(DecodeTxnRecord(bytes, TestLineIds(), decoded));
  EXPECT_EQ(decoded.line_id, 1u);
  EXPECT_EQ(decoded.line_key, kTapLine);
  EXPECT_FALSE(DecodeTxnRecord(bytes, LineIds(), decoded)) << "read without the store's line ids";
}

TEST(TxnRecord, OccurredAtIsReadWithoutDecodingTheRest) {
  const TxnRecord record = SomeTxn();
  std::string bytes;
  EncodeTxnRecord(record, bytes);
  EXPECT_EQ(TxnRecordOccurredAt(bytes), record.occurred_at_ms);
  EXPECT_FALSE(TxnRecordOccurredAt(bytes.substr(0, 10)).has_value());
  EXPECT_FALSE(TxnRecordOccurredAt("not a record at all").has_value());
}

TEST(TxnRecord, EveryTruncationIsRefused) {
  std::string bytes;
  EncodeTxnRecord(SomeTxn(), bytes);
  for (size_t size = 0; size < bytes.size(); ++size) {
    TxnRecord decoded;
    EXPECT_FALSE(DecodeTxnRecord(bytes.substr(0, size), TestLineIds(), decoded)) << size;
  }
  TxnRecord decoded;
  EXPECT_FALSE(DecodeTxnRecord(bytes + "x", TestLineIds(), decoded)) << "trailing bytes";
}

template <typename T>
void AppendFixed(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

// The fixed-width layout (version 1) of stores written before the compact one.
std::string Version1Txn(const TxnRecord& t) {
  std::string out;
  out.push_back(1);
  out.push_back(static_cast<char>(t.kind));
  out.push_back(static_cast<char>((t.late ? 1 : 0) | (t.cancelled ? 2 : 0)));
  AppendFixed(out, t.window);
  AppendFixed(out, t.partition);
  AppendFixed(out, t.offset);
  AppendFixed(out, t.occurred_at_ms);
  AppendFixed(out, t.digest.high);
  AppendFixed(out, t.digest.low);
  for (const int64_t value : {t.amount_fen, t.fund_pay_fen, t.account_pay_fen, t.cash_pay_fen, t.refunded_fen,
                              t.duplicate_count}) {
    AppendFixed(out, value);
  }
  for (const std::string_view text : {t.line_key, t.original_txn_id}) {
    out.push_back(static_cast<char>(text.size()));
    out.append(text);
  }
  return out;
}

TEST(TxnRecord, RecordOfTheEarlierLayoutIsStillRead) {
  const TxnRecord record = SomeTxn();
  const std::string bytes = Version1Txn(record);
  TxnRecord decoded;
  ASSERT_TRUE(DecodeTxnRecord(bytes, TestLineIds(), decoded));
  ExpectSameTxn(record, decoded);
  EXPECT_EQ(TxnRecordOccurredAt(bytes), record.occurred_at_ms);
}

TEST(TxnRecord, RecordWithTheLineKeyInTextIsStillRead) {
  TxnRecord record = SomeTxn();
  record.original_txn_id = "S0001";
  const std::string bytes = test::Version2TxnRecord(record);
  TxnRecord decoded;
  ASSERT_TRUE(DecodeTxnRecord(bytes, LineIds(), decoded));
  ExpectSameTxn(record, decoded);
  EXPECT_EQ(decoded.line_id, kNoLineId);
  EXPECT_EQ(TxnRecordOccurredAt(bytes), record.occurred_at_ms);
}

TEST(TxnRecord, UnknownVersionIsRefused) {
  std::string bytes;
  EncodeTxnRecord(SomeTxn(), bytes);
  bytes[0] = 4;
  TxnRecord decoded;
  EXPECT_FALSE(DecodeTxnRecord(bytes, TestLineIds(), decoded));
  EXPECT_FALSE(TxnRecordOccurredAt(bytes).has_value());
}

// The partition varint of SomeTxn (0) sits after version, kind, flags, occurred, digest and the
// window's 4-byte varint.
constexpr size_t kPartitionAt = 3 + 8 + 16 + 4;

std::string WithPartitionBytes(std::string_view partition_bytes) {
  TxnRecord record = SomeTxn();
  record.partition = 0;
  std::string bytes;
  EncodeTxnRecord(record, bytes);
  EXPECT_EQ(bytes[kPartitionAt], 0);
  bytes.replace(kPartitionAt, 1, partition_bytes);
  return bytes;
}

TEST(TxnRecord, LongerSpellingOfAVarintIsRefused) {
  TxnRecord decoded;
  EXPECT_TRUE(DecodeTxnRecord(WithPartitionBytes(std::string("\x00", 1)), TestLineIds(), decoded));
  EXPECT_FALSE(DecodeTxnRecord(WithPartitionBytes(std::string("\x80\x00", 2)), TestLineIds(), decoded));
}

TEST(TxnRecord, VarintPastSixtyFourBitsIsRefused) {
  TxnRecord decoded;
  // Ten bytes whose last carries more than bit 63.
  EXPECT_FALSE(DecodeTxnRecord(WithPartitionBytes(std::string(9, '\xFF') + "\x7F"), TestLineIds(), decoded));
  // Eleven bytes.
  EXPECT_FALSE(DecodeTxnRecord(WithPartitionBytes(std::string(10, '\x80') + "\x01"), TestLineIds(), decoded));
}

TEST(TxnRecord, PartitionOutOfRangeIsRefused) {
  TxnRecord decoded;
  EXPECT_TRUE(DecodeTxnRecord(WithPartitionBytes("\xFE\xFF\xFF\xFF\x0F"), TestLineIds(), decoded));  // zigzag(2^31 - 1)
  EXPECT_EQ(decoded.partition, 2147483647);
  EXPECT_FALSE(DecodeTxnRecord(WithPartitionBytes("\x80\x80\x80\x80\x10"), TestLineIds(), decoded));  // zigzag(2^31)
}

TEST(WindowRecord, RoundTripsTheFrozenFeesAndParticipants) {
  WindowRecord record;
  record.state = WindowState::kClosed;
  record.closed_at_ms = 1'795'796'100'000;
  record.fee_basis_points[0] = 15;
  record.fee_bank_id = "B3101";
  record.registered_bank_ids = {"B3101", "B3201"};
  record.registered_fund_ids = {"310100"};
  record.registered_province_codes = {"310000", "320000", "330000", "340000"};
  record.files_written_at_ms = 1'795'796'200'000;
  record.retired_at_ms = 1'803'000'000'000;
  std::string bytes;
  EncodeWindowRecord(record, bytes);
  WindowRecord decoded;
  ASSERT_TRUE(DecodeWindowRecord(bytes, decoded));
  EXPECT_EQ(decoded.state, WindowState::kClosed);
  EXPECT_EQ(decoded.closed_at_ms, record.closed_at_ms);
  EXPECT_EQ(decoded.fee_basis_points, record.fee_basis_points);
  EXPECT_EQ(decoded.fee_bank_id, "B3101");
  EXPECT_EQ(decoded.registered_bank_ids, record.registered_bank_ids);
  EXPECT_EQ(decoded.registered_fund_ids, record.registered_fund_ids);
  EXPECT_EQ(decoded.registered_province_codes, record.registered_province_codes);
  EXPECT_EQ(decoded.files_written_at_ms, record.files_written_at_ms);
  EXPECT_EQ(decoded.retired_at_ms, record.retired_at_ms);
  // The two instants take 6 bytes each as varints.
  const size_t before_instants = bytes.size() - 12;
  for (size_t size = 0; size < bytes.size(); ++size) {
    WindowRecord cut;
    // A cut at the end of the fee bank, or of the participants, is an earlier layout, read on
    // purpose.
    const bool earlier_layout = size == 2 + 8 + 1 + 4 * kCategoryCount + 1 + 5 || size == before_instants;
    EXPECT_EQ(DecodeWindowRecord(bytes.substr(0, size), cut), earlier_layout) << size;
  }
}

TEST(WindowRecord, RecordWithoutFrozenParticipantsIsReadWithNone) {
  WindowRecord record;
  record.state = WindowState::kFilesWritten;
  record.fee_bank_id = "B3101";
  std::string bytes;
  EncodeWindowRecord(record, bytes);
  bytes.resize(bytes.size() - 5);  // three empty lists, two instants: the layout before them
  WindowRecord decoded;
  decoded.registered_bank_ids = {"stale"};
  ASSERT_TRUE(DecodeWindowRecord(bytes, decoded));
  EXPECT_EQ(decoded.fee_bank_id, "B3101");
  EXPECT_TRUE(decoded.registered_bank_ids.empty());
}

TEST(AppliedRecord, RoundTripsInABlobAndReportsTheEnd) {
  AppliedRecord first;
  first.kind = EventKind::kTap;
  first.occurred_at_ms = 1'795'795'140'000;
  first.partition = 7;
  first.offset = kMax;
  first.amount_fen = kMax;
  first.txn_id = "T11270000000001";
  first.line_id = 1;
  first.terminal_id = "TERM1";
  first.card_masked = "621700******1234";
  first.card_token[0] = 0xAB;
  AppliedRecord second;
  second.kind = EventKind::kMedicalCancellation;
  second.late = true;
  second.amount_fen = kMin;
  second.fund_pay_fen = -1;
  second.txn_id = "C1";
  second.original_txn_id = "S1";
  std::string blob;
  AppendAppliedRecord(first, blob);
  AppendAppliedRecord(second, blob);

  size_t position = 0;
  bool damaged = false;
  AppliedRecord out;
  ASSERT_TRUE(NextAppliedRecord(blob, position, TestLineIds(), out, damaged));
  EXPECT_EQ(out.kind, EventKind::kTap);
  EXPECT_EQ(out.offset, kMax);
  EXPECT_EQ(out.amount_fen, kMax);
  EXPECT_EQ(out.partition, 7);
  EXPECT_EQ(out.card_token[0], 0xAB);
  EXPECT_EQ(out.card_masked, "621700******1234");
  EXPECT_EQ(out.line_id, 1u);
  EXPECT_EQ(out.line_key, kTapLine);
  ASSERT_TRUE(NextAppliedRecord(blob, position, TestLineIds(), out, damaged));
  EXPECT_EQ(out.kind, EventKind::kMedicalCancellation);
  EXPECT_TRUE(out.late);
  EXPECT_EQ(out.amount_fen, kMin);
  EXPECT_EQ(out.fund_pay_fen, -1);
  EXPECT_EQ(out.original_txn_id, "S1");
  EXPECT_EQ(out.line_id, kNoLineId);
  EXPECT_EQ(out.line_key, "");
  EXPECT_FALSE(NextAppliedRecord(blob, position, TestLineIds(), out, damaged));
  EXPECT_FALSE(damaged);
}

TEST(AppliedRecord, RecordOfTheEarlierLayoutIsStillRead) {
  std::string record;
  record.push_back(1);  // version 1: every integer at its full width
  record.push_back(static_cast<char>(EventKind::kTap));
  record.push_back(1);  // late
  AppendFixed(record, int64_t{1'795'795'140'000});
  AppendFixed(record, int32_t{9});
  AppendFixed(record, int64_t{123});
  for (const int64_t amount : {int64_t{300}, int64_t{0}, int64_t{0}, int64_t{0}}) AppendFixed(record, amount);
  record.append(32, '\x07');  // card token
  for (const std::string_view text : {"T1", "", "T|line", "TERM", "6217**1234"}) {
    record.push_back(static_cast<char>(text.size()));
    record.append(text);
  }
  std::string blob;
  blob.push_back(static_cast<char>(record.size() & 0xFF));
  blob.push_back(static_cast<char>(record.size() >> 8));
  blob += record;
  size_t position = 0;
  bool damaged = false;
  AppliedRecord out;
  ASSERT_TRUE(NextAppliedRecord(blob, position, TestLineIds(), out, damaged));
  EXPECT_TRUE(out.late);
  EXPECT_EQ(out.partition, 9);
  EXPECT_EQ(out.offset, 123);
  EXPECT_EQ(out.amount_fen, 300);
  EXPECT_EQ(out.card_token[31], 7);
  EXPECT_EQ(out.card_masked, "6217**1234");
  EXPECT_EQ(out.line_key, "T|line");
  EXPECT_EQ(out.line_id, kNoLineId);
  EXPECT_FALSE(NextAppliedRecord(blob, position, TestLineIds(), out, damaged));
  EXPECT_FALSE(damaged);
}

TEST(AppliedRecord, LineNumberNotKnownIsDamage) {
  AppliedRecord record;
  record.txn_id = "T1";
  record.line_id = 2;  // TestLineIds knows 0 and 1
  std::string blob;
  AppendAppliedRecord(record, blob);
  size_t position = 0;
  bool damaged = false;
  AppliedRecord out;
  EXPECT_FALSE(NextAppliedRecord(blob, position, TestLineIds(), out, damaged));
  EXPECT_TRUE(damaged);
}

TEST(LineIds, NumbersAreGivenInOrderAndStoredOnesMustFollowThem) {
  LineIds ids;
  bool added = false;
  EXPECT_EQ(ids.IdOf("T|a", added), 0u);
  EXPECT_TRUE(added);
  EXPECT_EQ(ids.IdOf("T|b", added), 1u);
  EXPECT_EQ(ids.IdOf("T|a", added), 0u);
  EXPECT_FALSE(added);
  EXPECT_EQ(ids.KeyOf(1), "T|b");
  EXPECT_FALSE(ids.KeyOf(2).has_value());
  EXPECT_FALSE(ids.Add(3, "T|c")) << "a gap";
  EXPECT_FALSE(ids.Add(2, "T|a")) << "a key that already has a number";
  EXPECT_TRUE(ids.Add(2, "T|c"));
  // The keys stay where they are as more are added and when the set moves.
  const std::string_view first = *ids.KeyOf(0);
  for (uint32_t i = 3; i < 5'000; ++i) EXPECT_TRUE(ids.Add(i, Cat("T|", i)));
  LineIds moved = std::move(ids);
  EXPECT_EQ(moved.KeyOf(0)->data(), first.data());
  EXPECT_EQ(moved.IdOf("T|c", added), 2u);
  EXPECT_FALSE(added);
  EXPECT_EQ(moved.IdOf("T|4999", added), 4999u);
}

// Keys are kept in blocks: one longer than a block gets a block of its own, an empty one is a
// key too, and none moves as blocks are added.
TEST(LineIds, KeysOfAnyLengthKeepTheirPlaceAcrossBlocks) {
  LineIds ids;
  bool added = false;
  const std::string long_key(LineIds::kKeyBlockBytes + 10, 'x');
  EXPECT_EQ(ids.IdOf("T|first", added), 0u);
  EXPECT_EQ(ids.IdOf(long_key, added), 1u);
  EXPECT_EQ(ids.IdOf("", added), 2u);
  EXPECT_TRUE(added);
  const std::string_view first = *ids.KeyOf(0);
  std::vector<std::string> keys;
  for (uint32_t i = 0; i < 3 * LineIds::kKeyBlockBytes / 20; ++i) keys.push_back(Cat("T|", i, "|filler"));
  for (const std::string& key : keys) ids.IdOf(key, added);
  EXPECT_EQ(ids.KeyOf(0)->data(), first.data());
  EXPECT_EQ(*ids.KeyOf(1), long_key);
  EXPECT_EQ(*ids.KeyOf(2), "");
  for (size_t i = 0; i < keys.size(); ++i) ASSERT_EQ(*ids.KeyOf(static_cast<uint32_t>(i + 3)), keys[i]);
  EXPECT_EQ(ids.IdOf(long_key, added), 1u);
  EXPECT_FALSE(added);
  EXPECT_EQ(ids.IdOf("", added), 2u);
  EXPECT_FALSE(added);
}

TEST(AppliedRecord, CutBlobIsDamagedNotEnded) {
  AppliedRecord record;
  record.txn_id = "T1";
  std::string blob;
  AppendAppliedRecord(record, blob);
  for (size_t size = 1; size < blob.size(); ++size) {
    size_t position = 0;
    bool damaged = false;
    AppliedRecord out;
    EXPECT_FALSE(NextAppliedRecord(std::string_view(blob).substr(0, size), position, TestLineIds(), out, damaged));
    EXPECT_TRUE(damaged) << size;
  }
}

// A recent-records blob read to its end or to the first damage.
struct RecentTxnRead {
  std::vector<std::pair<std::string, std::string>> entries;
  bool damaged = false;
};
RecentTxnRead ReadRecentTxn(std::string_view blob) {
  RecentTxnRead read;
  size_t position = 0;
  std::string_view key, record;
  while (NextRecentTxnEntry(blob, position, key, record, read.damaged)) read.entries.emplace_back(key, record);
  return read;
}

TEST(RecentTxnBlob, RoundTripsEntriesInOrderAndReportsTheEnd) {
  std::string blob = "left over";
  StartRecentTxnBlob(blob);
  const std::string big(300, 'x');  // longer than a one-byte length
  AppendRecentTxnEntry("1TAP1", "first", blob);
  AppendRecentTxnEntry("0SETTLE1", big, blob);
  AppendRecentTxnEntry("1TAP1", std::string("\0second", 7), blob);
  const RecentTxnRead read = ReadRecentTxn(blob);
  EXPECT_FALSE(read.damaged);
  EXPECT_EQ(read.entries, (std::vector<std::pair<std::string, std::string>>{
                              {"1TAP1", "first"}, {"0SETTLE1", big}, {"1TAP1", std::string("\0second", 7)}}));
}

TEST(RecentTxnBlob, EmptyBlobHasNoEntries) {
  std::string blob;
  StartRecentTxnBlob(blob);
  const RecentTxnRead read = ReadRecentTxn(blob);
  EXPECT_TRUE(read.entries.empty());
  EXPECT_FALSE(read.damaged);
}

TEST(RecentTxnBlob, EveryCutAndAnUnknownVersionAreDamaged) {
  std::string blob;
  StartRecentTxnBlob(blob);
  AppendRecentTxnEntry("1TAP1", "record", blob);
  for (size_t size = 0; size < blob.size(); ++size) {
    if (size == 1) continue;  // the version alone is an empty blob
    EXPECT_TRUE(ReadRecentTxn(blob.substr(0, size)).damaged) << "cut at " << size;
  }
  std::string other = blob;
  other[0] = 9;
  const RecentTxnRead read = ReadRecentTxn(other);
  EXPECT_TRUE(read.entries.empty());
  EXPECT_TRUE(read.damaged);
}

TEST(DeadLetterCopy, RoundTripsWithKeyAndPayloadOfAnyBytes) {
  DeadLetterCopy copy;
  copy.commit_sequence = 0x0102030405060708ULL;
  copy.topic = SourceTopic::kMedical;
  copy.partition = 63;
  copy.offset = kMax;
  copy.reason = Reason::kDuplicateConflict;
  copy.window = -3;
  copy.digest = Digest{1, 2};
  const std::string payload(70'000, '\0');  // longer than any one-byte length
  copy.key = std::string_view("\x00key\xFF", 5);
  copy.payload = payload;
  copy.payload_form = DeadLetterPayload::kRedacted;
  copy.detail = "merchant_id 'M9' (2 bytes): is not in the registry";
  std::string key, value;
  DeadLetterKey(copy.commit_sequence, copy.topic, copy.partition, copy.offset, key);
  EncodeDeadLetterCopy(copy, value);
  DeadLetterCopy decoded;
  bool sealed = false;
  ASSERT_TRUE(DecodeDeadLetterCopy(key, value, decoded, sealed));
  EXPECT_TRUE(sealed);
  EXPECT_EQ(decoded.payload_form, DeadLetterPayload::kRedacted);
  EXPECT_EQ(decoded.detail, copy.detail);
  EXPECT_EQ(decoded.commit_sequence, copy.commit_sequence);
  EXPECT_EQ(decoded.topic, SourceTopic::kMedical);
  EXPECT_EQ(decoded.partition, 63);
  EXPECT_EQ(decoded.offset, kMax);
  EXPECT_EQ(decoded.reason, Reason::kDuplicateConflict);
  EXPECT_EQ(decoded.window, -3);
  EXPECT_EQ(decoded.digest.low, 2u);
  EXPECT_EQ(decoded.key, copy.key);
  EXPECT_EQ(decoded.payload, payload);
  for (const size_t size : {size_t{0}, size_t{1}, size_t{20}, value.size() - 1}) {
    EXPECT_FALSE(DecodeDeadLetterCopy(key, value.substr(0, size), decoded, sealed)) << size;
  }
  EXPECT_FALSE(DecodeDeadLetterCopy(key.substr(1), value, decoded, sealed));
}

TEST(DeadLetterCopy, ACopyOfTheEarlierLayoutIsReadAsUnsealed) {
  // Version 2: reason, window, digest, key and payload in clear, nothing after.
  std::string value;
  value.push_back(2);
  value.push_back(static_cast<char>(Reason::kMalformed));
  value.push_back(0);  // window 0 as a zigzag varint
  value.append(16, '\0');
  value.push_back(4);  // key "k1": its length 2 as a zigzag varint
  value.append("k1");
  value.push_back(8);  // payload "abcd"
  value.append("abcd");
  std::string key;
  DeadLetterKey(3, SourceTopic::kTaps, 1, 7, key);
  DeadLetterCopy decoded;
  bool sealed = true;
  ASSERT_TRUE(DecodeDeadLetterCopy(key, value, decoded, sealed));
  EXPECT_FALSE(sealed);
  EXPECT_EQ(decoded.payload, "abcd");
  EXPECT_EQ(decoded.payload_form, DeadLetterPayload::kOriginal);
  EXPECT_EQ(decoded.detail, "");
}

TEST(DeadLetterCopy, KeysSortByCommitAndTheLimitEndsACommitsCopies) {
  std::string first, later, limit;
  DeadLetterKey(5, SourceTopic::kTaps, 9, 1'000, first);
  DeadLetterKey(6, SourceTopic::kTaps, 0, 0, later);
  DeadLetterKeyLimit(5, limit);
  EXPECT_LT(first, limit);
  EXPECT_LE(limit, later);
  EXPECT_TRUE(first.starts_with(kDeadLetterKeyPrefix));
}

TEST(Ownership, RoundTripsAndRefusesDamage) {
  Ownership ownership;
  ownership.partition_counts = {8, 4};
  ownership.owned = {{SourceTopic::kTaps, 0}, {SourceTopic::kTaps, 7}, {SourceTopic::kMedical, 3}};
  std::string bytes;
  EncodeOwnership(ownership, bytes);
  Ownership decoded;
  ASSERT_TRUE(DecodeOwnership(bytes, decoded));
  EXPECT_EQ(decoded.partition_counts, ownership.partition_counts);
  EXPECT_EQ(decoded.owned, ownership.owned);
  for (size_t size = 0; size < bytes.size(); ++size) EXPECT_FALSE(DecodeOwnership(bytes.substr(0, size), decoded)) << size;
  EXPECT_FALSE(DecodeOwnership(bytes + "x", decoded));
}

TEST(Ownership, SaysWhichPartitionsAnAnswerLacks) {
  Ownership all;
  all.partition_counts = {2, 1};
  all.owned = {{SourceTopic::kTaps, 0}, {SourceTopic::kTaps, 1}, {SourceTopic::kMedical, 0}};
  EXPECT_EQ(DescribeMissingPartitions(all), "");
  Ownership share;
  share.partition_counts = {8, 4};
  share.owned = {{SourceTopic::kTaps, 0}, {SourceTopic::kTaps, 1}, {SourceTopic::kTaps, 2}, {SourceTopic::kTaps, 3},
                 {SourceTopic::kMedical, 1}, {SourceTopic::kMedical, 3}};
  EXPECT_EQ(DescribeMissingPartitions(share),
            "this store's instance consumes 6 of the 12 partitions; answers lack yrd.taps 4-7, yrd.medical 0,2");
}

}  // namespace
}  // namespace yrd
