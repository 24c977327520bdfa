// Positions: who owes whom (SPEC section 4) computed from a window's netting lines, checked
// against figures worked out by hand, plus the zero-sum checks run before any file is written.
#include "engine/clearing/positions.h"

#include <memory>
#include <string>
#include <vector>

#include "adapters/crypto/hmac.h"
#include "adapters/rocksdb/rocks_store.h"
#include "engine/batch/batch.h"
#include "engine/ledger/ledger.h"
#include "engine/readers/store_readers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/events.h"

namespace yrd {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

// Fees as in the test registry: metro 100 bp, the fee account at B3101.
FeeSchedule TestFees() { return FeeSchedule::FromRegistry(*test::TestRegistry()); }

LineTotals TapTotals(int64_t count, int64_t amount_fen, int64_t reversal_count = 0, int64_t reversed_fen = 0) {
  LineTotals t;
  t.count = count;
  t.amount_fen = amount_fen;
  t.reversal_count = reversal_count;
  t.reversed_amount_fen = reversed_fen;
  return t;
}

LineTotals SettlementTotals(int64_t count, int64_t fund_fen, int64_t account_fen, int64_t cash_fen) {
  LineTotals t;
  t.count = count;
  t.amount_fen = fund_fen + account_fen + cash_fen;
  t.fund_pay_fen = fund_fen;
  t.account_pay_fen = account_fen;
  t.cash_pay_fen = cash_fen;
  return t;
}

// A small window, worked out by hand:
//  taps
//   L1 Hangzhou cards (B3301) on the Shanghai metro: 1050 gross, 50 refunded -> net 1000
//   L2 Shanghai cards (B3101) on the Shanghai metro: 250                      -> net 250
//   L3 Shanghai cards (B3101) on the Hangzhou bus:   400                      -> net 400
//   metro net 1250 at 100 bp = 12.5 fen -> fee 13 (half up); bus fee 0
//   banks:     B3101 = -250 - 400 + (1250 - 13) + 13 = 600;  B3301 = -1000 + 400 = -600
//   provinces: 310000 = +1000 - 400 = 600 (L2 nets to 0);    330000 = -1000 + 400 = -600
//   merchants: M_SH_METRO 1237, M_HZ_BUS 400
//  settlements (cleared = fund + account)
//   S1 Shanghai insured at the Hangzhou hospital: 6000 + 1000 (cash 3000), one cancellation of
//      1200 + 300 (cash 500)                                                   -> net 5500
//   S2 Hangzhou insured at the Hangzhou hospital (its own fund): 500 + 100     -> net 600
//   funds: 310100 -5500, 330100 -600 (it passes S1 through); institution H_HZ_1 +6100
//   provinces: 310000 -5500, 330000 +5500 (S2 nets to 0 inside Zhejiang)
std::vector<WindowLine> SmallWindow() {
  LineTotals s1 = SettlementTotals(2, 6000, 1000, 3000);
  s1.reversal_count = 1;
  s1.reversed_fund_pay_fen = 1200;
  s1.reversed_account_pay_fen = 300;
  s1.reversed_cash_pay_fen = 500;
  s1.reversed_amount_fen = 2000;
  return {
      {"T|B3301|330000|M_SH_METRO|B3101|310000|metro", TapTotals(3, 1050, 1, 50)},
      {"T|B3101|310000|M_SH_METRO|B3101|310000|metro", TapTotals(1, 250)},
      {"T|B3101|310000|M_HZ_BUS|B3301|330000|bus", TapTotals(2, 400)},
      {"M|310100|310000|H_HZ_1|330100|330000", s1},
      {"M|330100|330000|H_HZ_1|330100|330000", SettlementTotals(1, 500, 100, 200)},
  };
}

TEST(Positions, SmallWindowGivesTheHandComputedPositions) {
  WindowCounters counters;
  counters.applied_count = 9;
  counters.exact_duplicate_count = 2;
  counters.late_count = 1;
  counters.exception_counts[static_cast<size_t>(Reason::kMalformed)] = 3;
  const absl::StatusOr<WindowOutcome> outcome = ComputeWindowOutcome(SmallWindow(), counters, TestFees());
  ASSERT_TRUE(outcome.ok()) << outcome.status();

  EXPECT_EQ(outcome->bank_scheme_bank, (PositionMap{{"B3101", 600}, {"B3301", -600}}));
  EXPECT_EQ(outcome->bank_scheme_province, (PositionMap{{"310000", 600}, {"330000", -600}}));
  EXPECT_EQ(outcome->bank_scheme_merchant, (PositionMap{{"M_HZ_BUS", 400}, {"M_SH_METRO", 1237}}));
  EXPECT_EQ(outcome->fund_scheme_fund, (PositionMap{{"310100", -5500}, {"330100", -600}}));
  EXPECT_EQ(outcome->fund_scheme_institution, (PositionMap{{"H_HZ_1", 6100}}));
  EXPECT_EQ(outcome->fund_scheme_province, (PositionMap{{"310000", -5500}, {"330000", 5500}}));

  EXPECT_EQ(outcome->applied_count, 9);
  EXPECT_EQ(outcome->exact_duplicate_count, 2);
  EXPECT_EQ(outcome->late_count, 1);
  EXPECT_EQ(outcome->exception_counts[static_cast<size_t>(Reason::kMalformed)], 3);
  EXPECT_THAT(CheckZeroSums(*outcome), SizeIs(0));
}

TEST(Positions, FeeAccountAtAnotherBankIsCreditedThere) {
  FeeSchedule fees = TestFees();
  fees.fee_bank_id = "B3201";
  const absl::StatusOr<WindowOutcome> outcome = ComputeWindowOutcome(SmallWindow(), WindowCounters{}, fees);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->bank_scheme_bank, (PositionMap{{"B3101", 587}, {"B3201", 13}, {"B3301", -600}}));
  EXPECT_THAT(CheckZeroSums(*outcome), SizeIs(0));
}

TEST(Positions, MerchantWithMoreRefundsThanSalesGetsTheMirroredFee) {
  // 50 sold, 1300 refunded (refunds of earlier days' taps): net -1250, fee -13.
  const std::vector<WindowLine> lines = {
      {"T|B3301|330000|M_SH_METRO|B3101|310000|metro", TapTotals(1, 50, 2, 1300)}};
  const absl::StatusOr<WindowOutcome> outcome = ComputeWindowOutcome(lines, WindowCounters{}, TestFees());
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->bank_scheme_merchant, (PositionMap{{"M_SH_METRO", -1237}}));
  // B3101: merchant -1237 and fee -13; B3301 gets its cardholders' 1250 back.
  EXPECT_EQ(outcome->bank_scheme_bank, (PositionMap{{"B3101", -1250}, {"B3301", 1250}}));
  EXPECT_THAT(CheckZeroSums(*outcome), SizeIs(0));
}

TEST(Positions, MerchantFeeIsChargedOnTheNetOfTheWholeWindowNotPerLine) {
  // Two lines of 50 fen each: per line the fee would be 1 + 1, on the net of 100 it is 1.
  const std::vector<WindowLine> lines = {
      {"T|B3301|330000|M_SH_METRO|B3101|310000|metro", TapTotals(1, 50)},
      {"T|B3201|320000|M_SH_METRO|B3101|310000|metro", TapTotals(1, 50)},
  };
  const absl::StatusOr<WindowOutcome> outcome = ComputeWindowOutcome(lines, WindowCounters{}, TestFees());
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->bank_scheme_merchant, (PositionMap{{"M_SH_METRO", 99}}));
}

TEST(Positions, MerchantWhoseSettlementBankChangedIsCreditedAtTheBankOfEachLine) {
  // The registry moved M_HZ_BUS from B3301 to B3201 during the window. The line keys keep the
  // bank each tap was applied with, so past money stays where it was cleared (records.h).
  const std::vector<WindowLine> lines = {
      {"T|B3101|310000|M_HZ_BUS|B3301|330000|bus", TapTotals(1, 1000)},
      {"T|B3101|310000|M_HZ_BUS|B3201|330000|bus", TapTotals(1, 500)},
  };
  const absl::StatusOr<WindowOutcome> outcome = ComputeWindowOutcome(lines, WindowCounters{}, TestFees());
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->bank_scheme_bank, (PositionMap{{"B3101", -1500}, {"B3201", 500}, {"B3301", 1000}}));
  EXPECT_EQ(outcome->bank_scheme_merchant, (PositionMap{{"M_HZ_BUS", 1500}}));
}

TEST(Positions, ZeroPositionsAreLeftOut) {
  // A tap fully refunded in the same window leaves nobody owing anything.
  const std::vector<WindowLine> lines = {
      {"T|B3301|330000|M_SH_METRO|B3101|310000|metro", TapTotals(1, 300, 1, 300)}};
  const absl::StatusOr<WindowOutcome> outcome = ComputeWindowOutcome(lines, WindowCounters{}, TestFees());
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_TRUE(outcome->bank_scheme_bank.empty());
  EXPECT_TRUE(outcome->bank_scheme_province.empty());
  EXPECT_TRUE(outcome->bank_scheme_merchant.empty());
}

TEST(Positions, DamagedLineKeyIsDataLoss) {
  for (const char* key : {"T|B3301|330000|M_SH_METRO|B3101|310000", "T|B3301|330000|M_SH_METRO|B3101|310000|casino",
                          "M|310100|310000|H_HZ_1|330100", "X|whatever", ""}) {
    const std::vector<WindowLine> lines = {{key, TapTotals(1, 100)}};
    const absl::StatusOr<WindowOutcome> outcome = ComputeWindowOutcome(lines, WindowCounters{}, TestFees());
    EXPECT_EQ(outcome.status().code(), absl::StatusCode::kDataLoss) << key;
  }
}

TEST(CheckZeroSums, ReportsEachBrokenScheme) {
  absl::StatusOr<WindowOutcome> outcome = ComputeWindowOutcome(SmallWindow(), WindowCounters{}, TestFees());
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  WindowOutcome broken = *outcome;
  broken.bank_scheme_bank["B3101"] += 1;
  std::vector<std::string> violations = CheckZeroSums(broken);
  ASSERT_THAT(violations, SizeIs(1));
  EXPECT_THAT(violations[0], HasSubstr("bank-scheme bank"));
  EXPECT_THAT(violations[0], HasSubstr("1 fen"));

  broken = *outcome;
  broken.fund_scheme_institution["H_HZ_1"] -= 7;
  broken.fund_scheme_province["330000"] += 2;
  violations = CheckZeroSums(broken);
  ASSERT_THAT(violations, SizeIs(2));
  EXPECT_THAT(violations[0], HasSubstr("fund-scheme province"));
  EXPECT_THAT(violations[1], HasSubstr("fund-scheme fund and institution"));
  EXPECT_THAT(violations[1], HasSubstr("-7 fen"));

  broken = *outcome;
  broken.bank_scheme_province.erase("330000");
  violations = CheckZeroSums(broken);
  ASSERT_THAT(violations, SizeIs(1));
  EXPECT_THAT(violations[0], HasSubstr("bank-scheme province"));
}

// The same small window, but produced by the ledger from events: the line keys the ledger
// writes are the ones the positions read.
TEST(Positions, LinesWrittenByTheLedgerGiveTheHandComputedPositions) {
  test::TempDir dir;
  auto store = RocksStore::Open(dir.path() + "/state");
  ASSERT_TRUE(store.ok()) << store.status();
  auto hmac = HmacSha256::Create("positions-test-key");
  ASSERT_TRUE(hmac.ok());
  const WindowCalendar calendar;
  Ledger ledger(**store, LedgerOptions{calendar});
  const int64_t now_ms = test::ChinaTimeMs(2026, 11, 27, 12, 0);
  ASSERT_TRUE(ledger.Load(now_ms).ok());

  Batch batch(BatchLimits{.messages_max = 64, .arena_bytes_max = 1 << 20});
  batch.now_ms = now_ms;
  batch.registry = test::TestRegistry();
  int64_t offset = 0;
  auto add = [&](SourceTopic topic, const std::string& payload) {
    batch.Add(topic, 0, offset++, "key", payload, 65'536);
  };
  auto tap = [&](std::string id, std::string bank, std::string province, std::string merchant, int64_t fen) {
    test::TapFields t;
    t.txn_id = std::move(id);
    t.issuer_bank_id = std::move(bank);
    t.issuer_province = std::move(province);
    t.merchant_id = std::move(merchant);
    t.amount_fen = fen;
    t.occurred_at_ms = now_ms - 3'600'000;
    add(SourceTopic::kTaps, test::TapBytes(t));
  };
  tap("L1A", "B3301", "330000", "M_SH_METRO", 500);
  tap("L1B", "B3301", "330000", "M_SH_METRO", 500);
  tap("L1C", "B3301", "330000", "M_SH_METRO", 50);
  tap("L2A", "B3101", "310000", "M_SH_METRO", 250);
  tap("L3A", "B3101", "310000", "M_HZ_BUS", 150);
  tap("L3B", "B3101", "310000", "M_HZ_BUS", 250);
  test::RefundFields refund;
  refund.txn_id = "L1C_REFUND";
  refund.original_txn_id = "L1C";
  refund.amount_fen = 50;
  refund.occurred_at_ms = now_ms - 60'000;
  add(SourceTopic::kTaps, test::RefundBytes(refund));
  auto settle = [&](std::string id, std::string fund, int64_t fund_fen, int64_t account_fen, int64_t cash_fen) {
    test::SettlementFields s;
    s.txn_id = std::move(id);
    s.insured_fund_id = std::move(fund);
    s.fund_pay_fen = fund_fen;
    s.account_pay_fen = account_fen;
    s.cash_pay_fen = cash_fen;
    s.total_fen = fund_fen + account_fen + cash_fen;
    s.occurred_at_ms = now_ms - 3'600'000;
    add(SourceTopic::kMedical, test::SettlementBytes(s));
  };
  settle("S1A", "310100", 4800, 700, 2500);
  settle("S1B", "310100", 1200, 300, 500);
  settle("S2A", "330100", 500, 100, 200);
  test::CancellationFields cancellation;
  cancellation.txn_id = "S1B_CANCEL";
  cancellation.original_txn_id = "S1B";
  cancellation.occurred_at_ms = now_ms - 60'000;
  add(SourceTopic::kMedical, test::CancellationBytes(cancellation));

  test::DecodeBatch(batch, **hmac);
  BatchResult result;
  ASSERT_TRUE(ledger.Apply(batch, result).ok());
  ASSERT_EQ(result.applied_count, batch.size());

  constexpr WindowDay kNov27 = 20784;
  absl::StatusOr<std::vector<WindowLine>> read = ReadWindowLines(**store, kNov27);
  ASSERT_TRUE(read.ok()) << read.status();
  const std::vector<WindowLine>& lines = *read;
  ASSERT_THAT(lines, SizeIs(5));
  const absl::StatusOr<WindowCounters> read_counters = ReadWindowCounters(**store, kNov27);
  ASSERT_TRUE(read_counters.ok()) << read_counters.status();
  const WindowCounters& counters = *read_counters;

  const absl::StatusOr<WindowOutcome> outcome = ComputeWindowOutcome(lines, counters, TestFees());
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->bank_scheme_bank, (PositionMap{{"B3101", 600}, {"B3301", -600}}));
  EXPECT_EQ(outcome->bank_scheme_province, (PositionMap{{"310000", 600}, {"330000", -600}}));
  EXPECT_EQ(outcome->bank_scheme_merchant, (PositionMap{{"M_HZ_BUS", 400}, {"M_SH_METRO", 1237}}));
  EXPECT_EQ(outcome->fund_scheme_fund, (PositionMap{{"310100", -5500}, {"330100", -600}}));
  EXPECT_EQ(outcome->fund_scheme_institution, (PositionMap{{"H_HZ_1", 6100}}));
  EXPECT_EQ(outcome->fund_scheme_province, (PositionMap{{"310000", -5500}, {"330000", 5500}}));
  EXPECT_EQ(outcome->applied_count, 11);
  EXPECT_THAT(CheckZeroSums(*outcome), SizeIs(0));
}

}  // namespace
}  // namespace yrd
