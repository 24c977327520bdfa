#include "tests/support/store_answers.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "engine/base/strings.h"
#include "engine/readers/store_readers.h"
#include "gtest/gtest.h"

namespace yrd::test {

std::vector<std::string> StoreAnswers(StateStore& store, const std::vector<std::string>& txn_ids) {
  constexpr WindowDay kNov26 = 20783;  // 2026-11-26 to 28: the days the tests use
  std::vector<std::string> out;
  absl::StatusOr<LineIds> line_ids = LoadLineIds(store);
  EXPECT_TRUE(line_ids.ok()) << line_ids.status();
  if (!line_ids.ok()) return out;
  for (const WindowDay day : {kNov26, kNov26 + 1, kNov26 + 2}) {
    absl::StatusOr<std::vector<WindowLine>> lines = ReadWindowLines(store, day);
    EXPECT_TRUE(lines.ok()) << lines.status();
    if (lines.ok()) {
      std::sort(lines->begin(), lines->end(), [](const auto& a, const auto& b) { return a.line_key < b.line_key; });
      for (const WindowLine& line : *lines) {
        const LineTotals& t = line.totals;
        out.push_back(Cat("line ", day, " ", line.line_key, " ", t.count, " ", t.amount_fen, " ", t.fund_pay_fen, " ",
                          t.account_pay_fen, " ", t.cash_pay_fen, " ", t.reversal_count, " ", t.reversed_amount_fen,
                          " ", t.reversed_fund_pay_fen));
      }
    }
    absl::StatusOr<WindowCounters> counters = ReadWindowCounters(store, day);
    EXPECT_TRUE(counters.ok()) << counters.status();
    if (counters.ok()) {
      std::string exceptions;
      for (const int64_t count : counters->exception_counts) exceptions += Cat(" ", count);
      out.push_back(Cat("counters ", day, " ", counters->applied_count, " ", counters->exact_duplicate_count, " ",
                        counters->late_count, exceptions));
    }
    EXPECT_TRUE(VisitAppliedRecords(store, day, *line_ids, [&](SourcePartition owner, const AppliedRecord& r) {
                  out.push_back(Cat("applied ", day, " ", FormatOwner(owner), " ", r.offset, " ",
                                    static_cast<int>(r.kind), " ", r.late, " ", r.amount_fen, " ", r.txn_id, " ",
                                    r.original_txn_id, " ", r.line_key, " ", r.card_masked));
                  return true;
                }).ok());
  }
  EXPECT_TRUE(store.Scan(Table::kExceptions, {}, {}, [&](std::string_view k, std::string_view v) {
                    ExceptionRecord e;
                    EXPECT_TRUE(DecodeExceptionRecord(k, v, e));
                    out.push_back(Cat("exception ", static_cast<int>(e.topic), "/", e.partition, "@", e.offset, " ",
                                      ReasonName(e.reason), " ", e.window, " ", e.txn_id, " ", e.detail));
                    return true;
                  }).ok());
  for (const std::string_view prefix : {kOffsetKeyPrefix, kGrossKeyPrefix}) {
    EXPECT_TRUE(store.Scan(Table::kMeta, prefix, {}, [&](std::string_view k, std::string_view v) {
                      out.push_back(Cat("meta ", absl::BytesToHexString(absl::string_view(k.data(), k.size())), " = ",
                                        absl::BytesToHexString(absl::string_view(v.data(), v.size()))));
                      return true;
                    }).ok());
  }
  for (const std::string& id : txn_ids) {
    for (const Family family : {Family::kTaps, Family::kMedical}) {
      absl::StatusOr<std::vector<OwnedTxnRecord>> found = FindTxnRecordsOfId(store, family, id);
      EXPECT_TRUE(found.ok()) << found.status();
      if (!found.ok()) continue;
      for (const OwnedTxnRecord& owned : *found) {
        TxnRecord t;
        EXPECT_TRUE(DecodeTxnRecord(owned.value, *line_ids, t));
        out.push_back(Cat("txn ", id, " ", FormatOwner(owned.owner), " ", static_cast<int>(t.kind), " ", t.window,
                          " ", t.offset, " ", t.amount_fen, " ", t.refunded_fen, " ", t.cancelled, " ",
                          t.duplicate_count, " ", t.line_key, " ", t.original_txn_id));
      }
    }
  }
  return out;
}

}  // namespace yrd::test
