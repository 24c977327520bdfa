#include "tools/clearing-gen/registry_gen.h"

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/base/strings.h"
#include "fmt/format.h"
#include "tools/clearing-gen/rng.h"

namespace yrd::gen {
namespace {

struct ProvinceSeed {
  std::string_view code;
  std::string_view name;
  // Share of merchants placed in the province, in percent.
  int32_t merchant_percent;
  std::array<std::string_view, 4> bank_names;
  std::array<std::string_view, 6> cities;
};

constexpr std::array<ProvinceSeed, 4> kProvinces = {{
    {"310000", "Shanghai", 30,
     {"Bank of Shanghai", "Shanghai Rural Commercial Bank", "ICBC Shanghai Branch", "Bank of Communications"},
     {"Shanghai", "Pudong", "Minhang", "Songjiang", "Jiading", "Qingpu"}},
    {"320000", "Jiangsu", 30,
     {"Bank of Jiangsu", "Bank of Nanjing", "Bank of Suzhou", "Jiangsu Rural Credit Union"},
     {"Nanjing", "Suzhou", "Wuxi", "Changzhou", "Nantong", "Yangzhou"}},
    {"330000", "Zhejiang", 25,
     {"Bank of Hangzhou", "Bank of Ningbo", "Zhejiang Tailong Commercial Bank", "Zhejiang Rural Credit Union"},
     {"Hangzhou", "Ningbo", "Wenzhou", "Jiaxing", "Shaoxing", "Jinhua"}},
    {"340000", "Anhui", 15,
     {"Huishang Bank", "Anhui Rural Credit Union", "Hefei Science and Technology Rural Bank", "Ma'anshan Rural Bank"},
     {"Hefei", "Wuhu", "Bengbu", "Anqing", "Huangshan", "Ma'anshan"}},
}};

struct FundSeed {
  std::string_view fund_id;  // GB/T 2260 prefecture code of the pooling region
  std::string_view city;
};

// Pooling regions, interleaved over the provinces so that the first few cover all four.
constexpr std::array<FundSeed, kFundCountMax> kFunds = {{
    {"310100", "Shanghai"},     {"320100", "Nanjing"},       {"320500", "Suzhou"},     {"330100", "Hangzhou"},
    {"330200", "Ningbo"},       {"340100", "Hefei"},         {"320200", "Wuxi"},       {"330300", "Wenzhou"},
    {"340200", "Wuhu"},         {"330400", "Jiaxing"},       {"320400", "Changzhou"},  {"340300", "Bengbu"},
    {"320600", "Nantong"},      {"330500", "Huzhou"},        {"340800", "Anqing"},     {"330600", "Shaoxing"},
    {"321000", "Yangzhou"},     {"341000", "Huangshan"},     {"330700", "Jinhua"},     {"321100", "Zhenjiang"},
    {"340500", "Ma'anshan"},    {"331000", "Taizhou (Zhejiang)"}, {"321200", "Taizhou (Jiangsu)"},
    {"340700", "Tongling"},     {"330900", "Zhoushan"},      {"320300", "Xuzhou"},     {"341100", "Chuzhou"},
    {"331100", "Lishui"},       {"320900", "Yancheng"},      {"341200", "Fuyang"},     {"330800", "Quzhou"},
    {"320800", "Huai'an"},      {"341500", "Lu'an"},         {"320700", "Lianyungang"}, {"341300", "Suzhou (Anhui)"},
    {"321300", "Suqian"},       {"340400", "Huainan"},       {"341600", "Bozhou"},     {"340600", "Huaibei"},
    {"341700", "Chizhou"},      {"341800", "Xuancheng"},
}};

// Share of merchants per category, per mille, in Category order: mostly transit, a few percent
// hospitals and pharmacies.
constexpr std::array<int32_t, kCategoryCount> kCategoryPerMille = {430, 250, 30, 50, 50, 120, 45, 25};

constexpr std::array<std::string_view, kCategoryCount> kCategoryTitles = {
    "Bus Company", "Metro Station", "Ferry Pier", "Public Library", "Museum", "Scenic Area", "Hospital", "Pharmacy"};

size_t ProvinceSeedIndex(std::string_view code) {
  for (size_t i = 0; i < kProvinces.size(); ++i) {
    if (kProvinces[i].code == code) return i;
  }
  return 0;
}

}  // namespace

std::array<int32_t, kCategoryCount> GeneratedFeeBps() {
  std::array<int32_t, kCategoryCount> fee_bps{};
  fee_bps[static_cast<size_t>(Category::kMetro)] = 5;
  fee_bps[static_cast<size_t>(Category::kScenic)] = 60;
  fee_bps[static_cast<size_t>(Category::kPharmacy)] = 30;
  return fee_bps;
}

absl::StatusOr<std::shared_ptr<const Registry>> GenerateRegistry(const RegistryOptions& options) {
  if (options.bank_count < 1 || options.bank_count > kBankCountMax) {
    return absl::InvalidArgumentError(Cat("--banks must be from 1 to ", kBankCountMax));
  }
  if (options.merchant_count < 0 || options.merchant_count > kMerchantCountMax) {
    return absl::InvalidArgumentError(Cat("--merchants must be from 0 to ", kMerchantCountMax));
  }
  if (options.fund_count < 0 || options.fund_count > kFundCountMax) {
    return absl::InvalidArgumentError(Cat("--funds must be from 0 to ", kFundCountMax));
  }
  Rng rng(options.seed);

  std::vector<Province> provinces;
  for (const ProvinceSeed& seed : kProvinces) provinces.push_back({std::string(seed.code), std::string(seed.name)});

  // Banks round-robin over the provinces; bank 0 (Shanghai) holds the fee account.
  std::vector<Bank> banks;
  std::array<std::vector<size_t>, kProvinces.size()> banks_of_province;
  for (int32_t i = 0; i < options.bank_count; ++i) {
    const size_t province = static_cast<size_t>(i) % kProvinces.size();
    const size_t ordinal = static_cast<size_t>(i) / kProvinces.size();
    const ProvinceSeed& seed = kProvinces[province];
    Bank bank;
    bank.bank_id = fmt::format("B{}{:03d}", seed.code.substr(0, 2), ordinal + 1);
    bank.name = ordinal < seed.bank_names.size()
                    ? std::string(seed.bank_names[ordinal])
                    : fmt::format("{} Village Bank {}", seed.cities[ordinal % seed.cities.size()], ordinal + 1);
    bank.province = std::string(seed.code);
    bank.fee_account = i == 0;
    banks_of_province[province].push_back(banks.size());
    banks.push_back(std::move(bank));
  }

  std::vector<Fund> funds;
  std::array<std::vector<size_t>, kProvinces.size()> funds_of_province;
  for (int32_t i = 0; i < options.fund_count; ++i) {
    const FundSeed& seed = kFunds[static_cast<size_t>(i)];
    const std::string province_code = fmt::format("{}0000", seed.fund_id.substr(0, 2));
    funds_of_province[ProvinceSeedIndex(province_code)].push_back(funds.size());
    funds.push_back({std::string(seed.fund_id), fmt::format("{} Medical Insurance Fund", seed.city), province_code});
  }

  std::vector<Merchant> merchants;
  merchants.reserve(static_cast<size_t>(options.merchant_count));
  for (int32_t i = 0; i < options.merchant_count; ++i) {
    // The first eight merchants cover every category once, so a small registry still
    // exercises every rule; the rest follow the category shares.
    Category category = Category::kBus;
    if (static_cast<size_t>(i) < kCategoryCount) {
      category = static_cast<Category>(i);
    } else {
      int64_t draw = rng.Between(0, 999);
      for (size_t c = 0; c < kCategoryCount; ++c) {
        draw -= kCategoryPerMille[c];
        if (draw < 0) {
          category = static_cast<Category>(c);
          break;
        }
      }
    }
    if (IsMedical(category) && funds.empty()) category = Category::kBus;

    size_t province = 0;
    int64_t draw = rng.Between(0, 99);
    for (size_t p = 0; p < kProvinces.size(); ++p) {
      draw -= kProvinces[p].merchant_percent;
      if (draw < 0) {
        province = p;
        break;
      }
    }
    Merchant merchant;
    merchant.category = category;
    std::string_view city = kProvinces[province].cities[rng.Below(kProvinces[province].cities.size())];
    if (IsMedical(category)) {
      // A hospital or pharmacy belongs to a pooling region of its own province.
      if (funds_of_province[province].empty()) {
        province = ProvinceSeedIndex(funds[rng.Below(funds.size())].province);
      }
      const std::vector<size_t>& candidates = funds_of_province[province];
      const Fund& fund = funds[candidates[rng.Below(candidates.size())]];
      merchant.fund_id = fund.fund_id;
      city = kFunds[static_cast<size_t>(&fund - funds.data())].city;
    }
    const ProvinceSeed& seed = kProvinces[province];
    merchant.merchant_id = fmt::format("M{}{:07d}", seed.code.substr(0, 2), i + 1);
    merchant.name = fmt::format("{} {} {}", city, kCategoryTitles[static_cast<size_t>(category)], i + 1);
    merchant.province = std::string(seed.code);
    const std::vector<size_t>& local_banks = banks_of_province[province];
    merchant.bank_id = local_banks.empty() ? banks[rng.Below(banks.size())].bank_id
                                           : banks[local_banks[rng.Below(local_banks.size())]].bank_id;
    merchants.push_back(std::move(merchant));
  }

  return Registry::FromParts(std::move(provinces), std::move(banks), std::move(funds), std::move(merchants),
                             GeneratedFeeBps());
}

}  // namespace yrd::gen
