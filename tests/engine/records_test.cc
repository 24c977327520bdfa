// Store records: what is encoded decodes to the same values, at the edges of every field, and
// a record that was cut short or is not one of ours is refused rather than misread.
#include "engine/records.h"

#include <cstdint>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace yrd {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

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
  t.line_key = "M|FUND31|31|H0001|outpatient";
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
  ASSERT_TRUE(DecodeTxnRecord(bytes, decoded));
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
    ASSERT_TRUE(DecodeTxnRecord(bytes, decoded)) << value;
    ExpectSameTxn(record, decoded);
  }
}

TEST(TxnRecord, SmallValuesTakeFewBytes) {
  TxnRecord record = SomeTxn();
  record.line_key = "";
  std::string bytes;
  EncodeTxnRecord(record, bytes);
  // version, kind, flags, occurred (8), digest (16): 27 fixed bytes; the nine integers of an
  // ordinary record fit in 21 more, and two empty strings take one byte each.
  EXPECT_LE(bytes.size(), 27u + 21u + 2u);
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
    EXPECT_FALSE(DecodeTxnRecord(bytes.substr(0, size), decoded)) << size;
  }
  TxnRecord decoded;
  EXPECT_FALSE(DecodeTxnRecord(bytes + "x", decoded)) << "trailing bytes";
}

TEST(TxnRecord, OtherVersionIsRefused) {
  std::string bytes;
  EncodeTxnRecord(SomeTxn(), bytes);
  bytes[0] = 1;  // the fixed-width layout of earlier builds
  TxnRecord decoded;
  EXPECT_FALSE(DecodeTxnRecord(bytes, decoded));
  EXPECT_FALSE(TxnRecordOccurredAt(bytes).has_value());
}

TEST(TxnRecord, PartitionOutOfRangeIsRefused) {
  TxnRecord record = SomeTxn();
  std::string good;
  EncodeTxnRecord(record, good);
  // The same record with a partition varint of 2^31, which no int32 holds.
  TxnRecord wide = record;
  wide.partition = 0;
  std::string bytes;
  EncodeTxnRecord(wide, bytes);
  const size_t partition_at = 3 + 8 + 16 + 4;  // after the window varint of 20261127 (4 bytes)
  ASSERT_EQ(bytes[partition_at], 0);
  bytes.replace(partition_at, 1, std::string("\x80\x80\x80\x80\x10", 5));  // zigzag(2^31)
  TxnRecord decoded;
  EXPECT_FALSE(DecodeTxnRecord(bytes, decoded));
}

TEST(AppliedRecord, RoundTripsInABlobAndReportsTheEnd) {
  AppliedRecord first;
  first.kind = EventKind::kTap;
  first.occurred_at_ms = 1'795'795'140'000;
  first.partition = 7;
  first.offset = kMax;
  first.amount_fen = kMax;
  first.txn_id = "T11270000000001";
  first.line_key = "T|B1|31|M1|B2|31|metro";
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
  ASSERT_TRUE(NextAppliedRecord(blob, position, out, damaged));
  EXPECT_EQ(out.kind, EventKind::kTap);
  EXPECT_EQ(out.offset, kMax);
  EXPECT_EQ(out.amount_fen, kMax);
  EXPECT_EQ(out.partition, 7);
  EXPECT_EQ(out.card_token[0], 0xAB);
  EXPECT_EQ(out.card_masked, "621700******1234");
  ASSERT_TRUE(NextAppliedRecord(blob, position, out, damaged));
  EXPECT_EQ(out.kind, EventKind::kMedicalCancellation);
  EXPECT_TRUE(out.late);
  EXPECT_EQ(out.amount_fen, kMin);
  EXPECT_EQ(out.fund_pay_fen, -1);
  EXPECT_EQ(out.original_txn_id, "S1");
  EXPECT_FALSE(NextAppliedRecord(blob, position, out, damaged));
  EXPECT_FALSE(damaged);
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
    EXPECT_FALSE(NextAppliedRecord(std::string_view(blob).substr(0, size), position, out, damaged));
    EXPECT_TRUE(damaged) << size;
  }
}

}  // namespace
}  // namespace yrd
