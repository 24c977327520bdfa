// LineBook: a line is found by its route (the places of its participants in the registry) and
// by its number, never by key text, and whichever way it is found it is the same line.
#include "engine/netting/line_book.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "tests/support/events.h"

namespace yrd {
namespace {

constexpr WindowDay kNov27 = 20261127;
constexpr WindowDay kNov28 = 20261128;

// Keeps what is put, in order.
class RecordingWriteBatch final : public StateWriteBatch {
 public:
  void Put(Table table, std::string_view key, std::string_view value) override {
    puts.emplace_back(table, std::string(key), std::string(value));
  }
  void Delete(Table, std::string_view) override {}
  void DeleteRange(Table, std::string_view, std::string_view) override {}
  void Clear() override { puts.clear(); }
  [[nodiscard]] size_t size_bytes() const override { return 0; }
  std::vector<std::tuple<Table, std::string, std::string>> puts;
};

class LineBookTest : public ::testing::Test {
 protected:
  // A tap of `merchant_id` by a card of `issuer_bank_id`, resolved in `registry`.
  static DecodedEvent TapOf(const Registry& registry, std::string_view issuer_bank_id, std::string_view merchant_id) {
    DecodedEvent tap;
    tap.kind = EventKind::kTap;
    tap.issuer_bank = registry.FindBank(issuer_bank_id);
    tap.merchant = registry.FindMerchant(merchant_id);
    tap.merchant_bank = registry.FindBank(tap.merchant->bank_id);
    return tap;
  }
  static DecodedEvent SettlementOf(const Registry& registry, std::string_view insured_fund_id,
                                   std::string_view institution_id) {
    DecodedEvent settlement;
    settlement.kind = EventKind::kMedicalSettlement;
    settlement.insured_fund = registry.FindFund(insured_fund_id);
    settlement.merchant = registry.FindMerchant(institution_id);
    settlement.institution_fund = registry.FindFund(settlement.merchant->fund_id);
    return settlement;
  }
  std::string KeyOf(uint32_t line) { return std::string(*book_.line_ids().KeyOf(book_.line_id(line))); }

  std::shared_ptr<const Registry> registry_ = test::TestRegistry();
  LineBook book_{1'000};
};

TEST_F(LineBookTest, ARouteGivesTheSameLineAsItsKeyTextAndItsNumber) {
  book_.BeginBatch(registry_);
  const DecodedEvent tap = TapOf(*registry_, test::kBankShanghai, test::kMetroShanghai);
  const uint32_t line = book_.RouteLine(kNov27, tap);
  std::string key;
  TapLineKey(tap, key);
  EXPECT_EQ(KeyOf(line), key);
  EXPECT_EQ(book_.RouteLine(kNov27, tap), line);
  EXPECT_EQ(book_.LineOfId(kNov27, book_.line_id(line)), line);
  // The same participants without a registry held (by key text) find the same line.
  book_.BeginBatch(nullptr);
  EXPECT_EQ(book_.RouteLine(kNov27, tap), line);
  EXPECT_EQ(book_.lines_held(), 1u);
  EXPECT_EQ(book_.new_line_ids().size(), 1u);
}

TEST_F(LineBookTest, EveryParticipantAndKindMakesItsOwnLine) {
  book_.BeginBatch(registry_);
  const uint32_t metro = book_.RouteLine(kNov27, TapOf(*registry_, test::kBankShanghai, test::kMetroShanghai));
  const uint32_t other_issuer = book_.RouteLine(kNov27, TapOf(*registry_, test::kBankHangzhou, test::kMetroShanghai));
  const uint32_t other_merchant = book_.RouteLine(kNov27, TapOf(*registry_, test::kBankShanghai, test::kBusHangzhou));
  // A settlement whose institution and insured fund sit at the same places as a tap's merchant
  // and issuing bank is still a settlement's line.
  const uint32_t settlement =
      book_.RouteLine(kNov27, SettlementOf(*registry_, test::kFundShanghai, test::kHospitalHangzhou));
  const uint32_t other_fund =
      book_.RouteLine(kNov27, SettlementOf(*registry_, test::kFundHangzhou, test::kHospitalHangzhou));
  const std::vector<uint32_t> lines = {metro, other_issuer, other_merchant, settlement, other_fund};
  EXPECT_EQ(std::set<uint32_t>(lines.begin(), lines.end()).size(), lines.size());
  EXPECT_EQ(book_.lines_held(), lines.size());
  EXPECT_EQ(KeyOf(settlement).front(), 'M');
  EXPECT_EQ(KeyOf(other_issuer).front(), 'T');
}

TEST_F(LineBookTest, AnotherWindowHasItsOwnLineUnderTheSameNumber) {
  book_.BeginBatch(registry_);
  const DecodedEvent tap = TapOf(*registry_, test::kBankShanghai, test::kMetroShanghai);
  const uint32_t first = book_.RouteLine(kNov27, tap);
  book_.Touch(first).count = 7;
  const uint32_t second = book_.RouteLine(kNov28, tap);
  EXPECT_NE(second, first);
  EXPECT_EQ(book_.line_id(second), book_.line_id(first));
  EXPECT_EQ(book_.Touch(second).count, 0);
  EXPECT_EQ(book_.LineOfId(kNov27, book_.line_id(first)), first);
}

// A checkpoint writes each changed line under its window and key text, and forgetting a closed
// window keeps every line of the open ones where its route and number find it.
TEST_F(LineBookTest, AfterAClosedWindowIsForgottenTheOpenWindowsLinesAreFoundAsBefore) {
  book_.BeginBatch(registry_);
  const DecodedEvent metro = TapOf(*registry_, test::kBankShanghai, test::kMetroShanghai);
  const DecodedEvent bus = TapOf(*registry_, test::kBankHangzhou, test::kBusHangzhou);
  book_.Touch(book_.RouteLine(kNov27, metro)).count = 1;
  book_.Touch(book_.RouteLine(kNov28, bus)).count = 2;
  book_.Touch(book_.RouteLine(kNov28, metro)).count = 3;
  RecordingWriteBatch write;
  EXPECT_TRUE(book_.AppendWrites(3, /*window_closed=*/true, {}, write));
  std::vector<std::string> line_keys;
  for (const auto& [table, key, value] : write.puts) {
    if (table == Table::kLines) line_keys.push_back(key);
  }
  std::string nov27_metro, nov28_bus, nov28_metro;
  LineStoreKey(kNov27, *book_.line_ids().KeyOf(book_.line_id(book_.RouteLine(kNov27, metro))), nov27_metro);
  LineStoreKey(kNov28, *book_.line_ids().KeyOf(book_.line_id(book_.RouteLine(kNov28, bus))), nov28_bus);
  LineStoreKey(kNov28, *book_.line_ids().KeyOf(book_.line_id(book_.RouteLine(kNov28, metro))), nov28_metro);
  std::vector<std::string> expected = {nov27_metro, nov28_bus, nov28_metro};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(line_keys, expected) << "every changed line, in key order";

  book_.ForgetClosed([](WindowDay day) { return day == kNov28; });
  EXPECT_EQ(book_.lines_held(), 2u);
  EXPECT_EQ(book_.Touch(book_.RouteLine(kNov28, bus)).count, 2);
  EXPECT_EQ(book_.Touch(book_.RouteLine(kNov28, metro)).count, 3);
  EXPECT_EQ(book_.lines_held(), 2u);
  EXPECT_EQ(book_.Touch(book_.RouteLine(kNov27, metro)).count, 0) << "a closed window's line starts again";
}

// The routes belong to one registry: under another, where a merchant moved to another bank, its
// taps go to the line of its new bank.
TEST_F(LineBookTest, AnotherRegistryRoutesAfresh) {
  book_.BeginBatch(registry_);
  const uint32_t before = book_.RouteLine(kNov27, TapOf(*registry_, test::kBankShanghai, test::kMetroShanghai));
  std::string toml = test::TestRegistryToml();
  const std::string moved_from = "merchant_id = \"M_SH_METRO\"";
  ASSERT_NE(toml.find(moved_from), std::string::npos);
  absl::StatusOr<std::shared_ptr<const Registry>> parsed = Registry::FromToml(toml, "same.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  // The same text makes the same lines under the new registry object.
  book_.BeginBatch(*parsed);
  EXPECT_EQ(book_.RouteLine(kNov27, TapOf(**parsed, test::kBankShanghai, test::kMetroShanghai)), before);

  std::vector<Merchant> merchants = (*parsed)->merchants();
  for (Merchant& merchant : merchants) {
    if (merchant.merchant_id == test::kMetroShanghai) merchant.bank_id = std::string(test::kBankHangzhou);
  }
  std::array<int32_t, kCategoryCount> fee_bps{};
  for (size_t i = 0; i < kCategoryCount; ++i) fee_bps[i] = (*parsed)->fee_bps(static_cast<Category>(i));
  absl::StatusOr<std::shared_ptr<const Registry>> moved =
      Registry::FromParts((*parsed)->provinces(), (*parsed)->banks(), (*parsed)->funds(), merchants, fee_bps);
  ASSERT_TRUE(moved.ok()) << moved.status();
  book_.BeginBatch(*moved);
  const uint32_t after = book_.RouteLine(kNov27, TapOf(**moved, test::kBankShanghai, test::kMetroShanghai));
  EXPECT_NE(after, before);
  EXPECT_NE(KeyOf(after).find(test::kBankHangzhou), std::string::npos);
}

// An event whose participants are not entries of the held registry (none of the routes could be
// its) is found by its key text.
TEST_F(LineBookTest, AnEventOfAnotherRegistryIsFoundByItsKeyText) {
  const std::shared_ptr<const Registry> other = test::TestRegistry();
  ASSERT_NE(other.get(), registry_.get());
  book_.BeginBatch(registry_);
  const uint32_t line = book_.RouteLine(kNov27, TapOf(*registry_, test::kBankShanghai, test::kMetroShanghai));
  EXPECT_EQ(book_.RouteLine(kNov27, TapOf(*other, test::kBankShanghai, test::kMetroShanghai)), line);
  EXPECT_EQ(book_.lines_held(), 1u);
}

}  // namespace
}  // namespace yrd
