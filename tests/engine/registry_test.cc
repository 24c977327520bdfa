// Registry: the reference data file. A refused file must tell the operator which file, which
// line and which key to fix (Registry::FromToml's contract), and every reference must resolve.
#include "engine/registry/registry.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/events.h"

namespace yrd {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;

// Line numbers matter below: the [[merchant]] table starts on line 16, its fund_id is line 22.
constexpr char kSmallRegistry[] =
    R"toml([[province]]
code = "310000"
name = "Shanghai"

[[bank]]
bank_id = "B3101"
name = "Bank of Shanghai"
province = "310000"
fee_account = true

[[fund]]
fund_id = "310100"
name = "Shanghai fund"
province = "310000"

[[merchant]]
merchant_id = "H1"
name = "Hospital"
province = "310000"
category = "hospital"
bank_id = "B3101"
fund_id = "310100"
)toml";

// The status message as a std::string (Debian's abseil has its own string_view type).
std::string Message(const absl::Status& status) { return std::string(status.message()); }

template <typename T>
std::string Message(const absl::StatusOr<T>& result) {
  return Message(result.status());
}

std::string Replace(std::string text, std::string_view from, std::string_view to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(Registry, SmallRegistryIsAccepted) {
  auto registry = Registry::FromToml(kSmallRegistry, "reg.toml");
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_EQ((*registry)->fee_bank().bank_id, "B3101");
  const Merchant* hospital = (*registry)->FindMerchant("H1");
  ASSERT_NE(hospital, nullptr);
  EXPECT_EQ(hospital->category, Category::kHospital);
  EXPECT_EQ(hospital->fund_id, "310100");
  EXPECT_EQ((*registry)->FindMerchant("H2"), nullptr);
  EXPECT_EQ((*registry)->fee_bps(Category::kHospital), 0);
}

TEST(Registry, TestFixtureRegistryResolvesEveryParticipant) {
  const auto registry = test::TestRegistry();
  EXPECT_EQ(registry->provinces().size(), 3u);
  EXPECT_EQ(registry->banks().size(), 3u);
  EXPECT_EQ(registry->funds().size(), 2u);
  EXPECT_EQ(registry->merchants().size(), 5u);
  EXPECT_EQ(registry->fee_bank().bank_id, test::kBankShanghai);
  EXPECT_EQ(registry->fee_bps(Category::kMetro), test::kMetroFeeBps);
  EXPECT_EQ(registry->fee_bps(Category::kBus), 0);
  ASSERT_NE(registry->FindMerchant(test::kPharmacyShanghai), nullptr);
  EXPECT_EQ(registry->FindMerchant(test::kPharmacyShanghai)->fund_id, test::kFundShanghai);
}

TEST(Registry, UnknownKeyIsRefusedWithLineAndKey) {
  const std::string text = Replace(kSmallRegistry, "B3101\"\nfund_id = \"310100\"\n", "B3101\"\ncolour = \"red\"\n");
  // colour is on line 22 now, in the [[merchant]] table.
  auto registry = Registry::FromToml(Replace(text, "category = \"hospital\"", "category = \"bus\""), "reg.toml");
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(Message(registry), HasSubstr("reg.toml:22"));
  EXPECT_THAT(Message(registry), HasSubstr("colour"));
}

TEST(Registry, UnknownTopLevelSectionIsRefusedWithLineAndKey) {
  const std::string text = std::string(kSmallRegistry) + "\n[[terminal]]\nterminal_id = \"T1\"\n";
  auto registry = Registry::FromToml(text, "reg.toml");
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(Message(registry), HasSubstr("terminal"));
  EXPECT_THAT(Message(registry), ContainsRegex("reg\\.toml:2[45]"));
}

TEST(Registry, MissingFeeAccountIsRefusedNamingFileAndKey) {
  auto registry = Registry::FromToml(Replace(kSmallRegistry, "fee_account = true\n", ""), "reg.toml");
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(Message(registry), HasSubstr("reg.toml"));
  EXPECT_THAT(Message(registry), HasSubstr("fee_account"));
}

TEST(Registry, TwoFeeAccountsAreRefused) {
  const std::string text = std::string(kSmallRegistry) +
                           "\n[[bank]]\nbank_id = \"B2\"\nname = \"Second\"\nprovince = \"310000\"\n"
                           "fee_account = true\n";
  auto registry = Registry::FromToml(text, "reg.toml");
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(Message(registry), HasSubstr("fee_account"));
}

TEST(Registry, MissingRequiredKeyIsRefusedWithLineAndKey) {
  auto registry = Registry::FromToml(Replace(kSmallRegistry, "bank_id = \"B3101\"\nfund_id", "fund_id"), "reg.toml");
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(Message(registry), HasSubstr("bank_id"));
  EXPECT_THAT(Message(registry), ContainsRegex("reg\\.toml:1[67]"));
}

TEST(Registry, HospitalWithoutFundIsRefusedWithLineAndKey) {
  auto registry = Registry::FromToml(Replace(kSmallRegistry, "B3101\"\nfund_id = \"310100\"\n", "B3101\"\n"), "reg.toml");
  ASSERT_FALSE(registry.ok());
  const std::string message = Message(registry);
  EXPECT_THAT(message, HasSubstr("H1"));
  EXPECT_THAT(message, HasSubstr("fund_id"));
  // The operator must be sent to the [[merchant]] table that starts on line 16.
  EXPECT_THAT(message, ContainsRegex("reg\\.toml:1[67]")) << message;
}

TEST(Registry, HospitalOfUnregisteredFundIsRefused) {
  auto registry = Registry::FromToml(Replace(kSmallRegistry, "B3101\"\nfund_id = \"310100\"\n", "B3101\"\nfund_id = \"999999\"\n"),
                                     "reg.toml");
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(Message(registry), HasSubstr("H1"));
  EXPECT_THAT(Message(registry), HasSubstr("fund_id"));
}

TEST(Registry, FundIdOnANonMedicalMerchantIsRefused) {
  auto registry = Registry::FromToml(Replace(kSmallRegistry, "category = \"hospital\"", "category = \"metro\""),
                                     "reg.toml");
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(Message(registry), HasSubstr("fund_id"));
}

TEST(Registry, MerchantOfUnregisteredBankIsRefused) {
  auto registry =
      Registry::FromToml(Replace(kSmallRegistry, "bank_id = \"B3101\"\nfund_id", "bank_id = \"B9\"\nfund_id"),
                         "reg.toml");
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(Message(registry), HasSubstr("B9"));
}

TEST(Registry, UnknownCategoryIsRefusedWithLine) {
  auto registry = Registry::FromToml(Replace(kSmallRegistry, "category = \"hospital\"", "category = \"casino\""),
                                     "reg.toml");
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(Message(registry), HasSubstr("casino"));
  EXPECT_THAT(Message(registry), ContainsRegex("reg\\.toml:1[67]"));
}

TEST(Registry, FeeRateAboveTenThousandIsRefusedWithLine) {
  auto accepted = Registry::FromToml(std::string(kSmallRegistry) + "\n[fee_bps]\nhospital = 10000\n", "reg.toml");
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ((*accepted)->fee_bps(Category::kHospital), 10000);
  auto refused = Registry::FromToml(std::string(kSmallRegistry) + "\n[fee_bps]\nhospital = 10001\n", "reg.toml");
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(Message(refused), HasSubstr("reg.toml:25"));
  EXPECT_THAT(Message(refused), HasSubstr("hospital"));
}

TEST(Registry, IdWithFieldSeparatorIsRefused) {
  auto registry = Registry::FromToml(Replace(kSmallRegistry, "merchant_id = \"H1\"", "merchant_id = \"H|1\""),
                                     "reg.toml");
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(Message(registry), HasSubstr("H|1"));
}

TEST(Registry, IdRegisteredTwiceIsRefused) {
  const std::string text = std::string(kSmallRegistry) + "\n[[fund]]\nfund_id = \"310100\"\nname = \"Again\"\n" +
                           "province = \"310000\"\n";
  auto registry = Registry::FromToml(text, "reg.toml");
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(Message(registry), HasSubstr("310100"));
  EXPECT_THAT(Message(registry), HasSubstr("twice"));
}

TEST(Registry, TomlSyntaxErrorNamesFileAndLine) {
  auto registry = Registry::FromToml(Replace(kSmallRegistry, "name = \"Shanghai fund\"", "name = "), "reg.toml");
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(Message(registry), HasSubstr("reg.toml:13"));
}

TEST(Registry, ToTomlReadsBackToTheSameRegistry) {
  const auto original = test::TestRegistry();
  auto again = Registry::FromToml(original->ToToml(), "again.toml");
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ((*again)->merchants().size(), original->merchants().size());
  for (size_t i = 0; i < original->merchants().size(); ++i) {
    const Merchant& a = original->merchants()[i];
    const Merchant& b = (*again)->merchants()[i];
    EXPECT_EQ(a.merchant_id, b.merchant_id);
    EXPECT_EQ(a.bank_id, b.bank_id);
    EXPECT_EQ(a.fund_id, b.fund_id);
    EXPECT_EQ(a.category, b.category);
    EXPECT_EQ(a.province, b.province);
  }
  EXPECT_EQ((*again)->fee_bank().bank_id, original->fee_bank().bank_id);
  for (size_t i = 0; i < kCategoryCount; ++i) {
    EXPECT_EQ((*again)->fee_bps(static_cast<Category>(i)), original->fee_bps(static_cast<Category>(i)));
  }
}

}  // namespace
}  // namespace yrd
