// Messages that would take a total past int64, through the real programs: each is rejected as
// amount_invalid with what was wrong, the messages around it are applied, the store's reports do
// not abort, and the day closes with files that verify; a restart goes on instead of looping.
#include <limits>
#include <string>

#include "engine/base/money.h"
#include "engine/registry/registry.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/scenario.h"
#include "tests/support/events.h"

namespace yrd::testing {
namespace {

constexpr int64_t kFiveTimesTenToTheEighteen = 5'000'000'000'000'000'000;

// Participants of the generated registry for hand-made events.
struct Parties {
  const Bank* bank = nullptr;
  const Merchant* merchant = nullptr;
  const Merchant* other_merchant = nullptr;
  const Merchant* hospital = nullptr;
  const Fund* fund = nullptr;
};

Parties PickParties(const Registry& registry) {
  Parties parties;
  parties.bank = &registry.banks().front();
  parties.fund = &registry.funds().front();
  for (const Merchant& merchant : registry.merchants()) {
    if (IsMedical(merchant.category)) {
      if (parties.hospital == nullptr) parties.hospital = &merchant;
    } else if (parties.merchant == nullptr) {
      parties.merchant = &merchant;
    } else if (parties.other_merchant == nullptr) {
      parties.other_merchant = &merchant;
    }
  }
  return parties;
}

TEST(Poison, TotalsThatWouldPassInt64AreRejectedAndClearingGoesOn) {
  Scenario scenario;
  scenario.StartBroker(2);
  // The per-event ceiling as high as it goes, so the window bound itself is reached.
  scenario.Prepare(/*merchants=*/60, /*seed=*/41,
                   "[clearing]\namount_fen_max = " + std::to_string(kPartitionWindowGrossFenMax) + "\n");
  absl::StatusOr<std::shared_ptr<const Registry>> registry = Registry::FromFile(scenario.dir() / "registry.toml");
  ASSERT_TRUE(registry.ok()) << registry.status();
  const Parties parties = PickParties(**registry);
  ASSERT_TRUE(parties.merchant && parties.other_merchant && parties.hospital);
  const int64_t occurred_ms = kDayClockMs - 3'600'000;
  auto tap = [&](const std::string& id, int64_t amount_fen, const Merchant& merchant) {
    test::TapFields fields;
    fields.txn_id = id;
    fields.issuer_province = parties.bank->province;
    fields.issuer_bank_id = parties.bank->bank_id;
    fields.merchant_id = merchant.merchant_id;
    fields.amount_fen = amount_fen;
    fields.occurred_at_ms = occurred_ms;
    return test::TapBytes(fields);
  };
  auto settlement = [&](const std::string& id, int64_t total_fen) {
    test::SettlementFields fields;
    fields.txn_id = id;
    fields.insured_fund_id = parties.fund->fund_id;
    fields.institution_id = parties.hospital->merchant_id;
    fields.total_fen = fields.fund_pay_fen = total_fen;
    fields.account_pay_fen = fields.cash_pay_fen = 0;
    fields.occurred_at_ms = occurred_ms;
    return test::SettlementBytes(fields);
  };
  const Merchant& merchant = *parties.merchant;
  // Partition 0 of the taps: an ordinary tap, two of 5e18, one that fills the bound exactly, one
  // fen past it, a free entry.
  scenario.ProduceTo("yrd.taps", 0, "A", tap("A", 300, merchant));
  scenario.ProduceTo("yrd.taps", 0, "T5A", tap("T5A", kFiveTimesTenToTheEighteen, merchant));
  scenario.ProduceTo("yrd.taps", 0, "T5B", tap("T5B", kFiveTimesTenToTheEighteen, merchant));
  scenario.ProduceTo("yrd.taps", 0, "G1", tap("G1", kPartitionWindowGrossFenMax - 300, merchant));
  scenario.ProduceTo("yrd.taps", 0, "G2", tap("G2", 1, merchant));
  scenario.ProduceTo("yrd.taps", 0, "B", tap("B", 0, merchant));
  // Partition 1: INT64_MAX - 10 and then 100 by the same bank on another line.
  scenario.ProduceTo("yrd.taps", 1, "C", tap("C", 250, merchant));
  scenario.ProduceTo("yrd.taps", 1, "TMAX", tap("TMAX", std::numeric_limits<int64_t>::max() - 10, *parties.other_merchant));
  scenario.ProduceTo("yrd.taps", 1, "T100", tap("T100", 100, *parties.other_merchant));
  // Medical: a settlement at the bound, one of 5e18, one fen more, the first one's cancellation
  // (its total counts again), and an ordinary one elsewhere.
  scenario.ProduceTo("yrd.medical", 0, "S1", settlement("S1", kPartitionWindowGrossFenMax));
  scenario.ProduceTo("yrd.medical", 0, "S2", settlement("S2", kFiveTimesTenToTheEighteen));
  scenario.ProduceTo("yrd.medical", 0, "S3", settlement("S3", 1));
  test::CancellationFields cancellation;
  cancellation.txn_id = "X1";
  cancellation.original_txn_id = "S1";
  cancellation.occurred_at_ms = occurred_ms;
  scenario.ProduceTo("yrd.medical", 0, "S1", test::CancellationBytes(cancellation));
  scenario.ProduceTo("yrd.medical", 1, "S4", settlement("S4", 10'000));
  // Not a poison, but a message to find by its key: its id breaks the rule, and one that does
  // not decode at all.
  const std::string long_id(65, 'L');
  scenario.ProduceTo("yrd.taps", 1, long_id, tap(long_id, 100, merchant));
  scenario.ProduceTo("yrd.taps", 1, "GARBLED-KEY", "not a flatbuffer at all");

  auto daemon = scenario.StartDaemon();
  ASSERT_NO_FATAL_FAILURE(scenario.CatchUpThenStop(*daemon));
  const nlohmann::json outcome = scenario.Report({"outcome", "--registry", scenario.dir() / "registry.toml"});
  ASSERT_TRUE(outcome.is_object()) << "clearing-report outcome failed";
  const nlohmann::json& counts = outcome.at("windows").at("20261127").at("counts");
  EXPECT_EQ(counts.at("applied"), 7);  // A, G1, B, C, T100, S1, S4
  EXPECT_EQ(counts.at("exceptions").at("amount_invalid"), 7);
  const nlohmann::json exceptions = scenario.Report({"exceptions", "--reason", "amount_invalid", "--limit", "0"});
  ASSERT_TRUE(exceptions.is_array());
  std::map<std::string, std::string> details;
  for (const nlohmann::json& row : exceptions) details[row.at("txn_id")] = row.at("detail");
  EXPECT_EQ(details.at("T5A"), "amount_fen 5000000000000000000: is above clearing.amount_fen_max");
  EXPECT_EQ(details.at("G2"), "amount_fen 1: would take this source partition's gross of the window past 2^48 - 1 fen");
  EXPECT_EQ(details.at("S3"), "total_fen 1: would take this source partition's gross of the window past 2^48 - 1 fen");
  EXPECT_TRUE(details.contains("TMAX") && details.contains("S2") && details.contains("X1"));
  // The messages whose id could not be used are found by their Kafka keys, with what was wrong.
  const nlohmann::json by_key = scenario.Report({"txn", long_id});
  ASSERT_TRUE(by_key.is_array() && by_key.size() == 1u) << by_key;
  EXPECT_EQ(by_key[0].at("fate"), "rejected:invalid_field");
  EXPECT_EQ(by_key[0].at("txn_id"), nullptr);
  EXPECT_NE(by_key[0].at("detail").get<std::string>().find("is not 1 to 64 characters"), std::string::npos);
  const nlohmann::json garbled = scenario.Report({"txn", "GARBLED-KEY"});
  ASSERT_TRUE(garbled.is_array() && garbled.size() == 1u) << garbled;
  EXPECT_EQ(garbled[0].at("fate"), "rejected:malformed");

  // The next day the window closes, its files verify, and the positions are whole.
  ASSERT_TRUE(scenario.CloseDayAndWriteFiles(std::chrono::minutes(2))) << ReadFile(scenario.daemon_log());
  EXPECT_EQ(scenario.VerifyFiles(), "");
  const std::string bank_file = ReadFile(scenario.files_dir() + "/banks/" + parties.bank->bank_id + ".txt");
  const int64_t debit_fen = 300 + (kPartitionWindowGrossFenMax - 300) + 0 + 250 + 100;
  EXPECT_NE(bank_file.find("total_debit_fen=" + std::to_string(debit_fen)), std::string::npos) << bank_file;
  // A third life starts and stops cleanly: nothing loops on the poison.
  auto again = scenario.StartDaemon();
  ASSERT_NO_FATAL_FAILURE(scenario.CatchUpThenStop(*again));
}

}  // namespace
}  // namespace yrd::testing
