#include "engine/registry/registry.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/status/status.h"
#include "engine/base/money.h"
#include "engine/base/strings.h"
#include "toml++/toml.h"

namespace yrd {
namespace {

std::string Where(std::string_view source_name, const toml::node& node) {
  return Cat(source_name, ":", node.source().begin.line);
}

// Reads a required string key of `table`; on failure names the file, line and key.
absl::StatusOr<std::string> RequiredString(const toml::table& table, std::string_view key,
                                           std::string_view section, std::string_view source_name) {
  const toml::node* node = table.get(key);
  if (node == nullptr) {
    return absl::InvalidArgumentError(
        Cat(Where(source_name, table), ": [[", section, "]] is missing key '", key, "'"));
  }
  const auto* value = node->as_string();
  if (value == nullptr) {
    return absl::InvalidArgumentError(
        Cat(Where(source_name, *node), ": ", section, ".", key, " must be a string"));
  }
  return value->get();
}

absl::Status CheckKnownKeys(const toml::table& table, std::initializer_list<std::string_view> known,
                            std::string_view section, std::string_view source_name) {
  for (const auto& [key, node] : table) {
    if (std::find(known.begin(), known.end(), key.str()) == known.end()) {
      return absl::InvalidArgumentError(Cat(Where(source_name, node), ": unknown key '",
                                                     key.str(), "' in ", section));
    }
  }
  return absl::OkStatus();
}

template <typename Fn>
absl::Status ForEachTable(const toml::table& root, std::string_view section, std::string_view source_name,
                          Fn&& fn) {
  const toml::node* node = root.get(section);
  if (node == nullptr) return absl::OkStatus();
  const auto* array = node->as_array();
  if (array == nullptr) {
    return absl::InvalidArgumentError(
        Cat(Where(source_name, *node), ": '", section, "' must be an array of tables [[", section, "]]"));
  }
  for (const auto& element : *array) {
    const auto* table = element.as_table();
    if (table == nullptr) {
      return absl::InvalidArgumentError(
          Cat(Where(source_name, element), ": each '", section, "' entry must be a table"));
    }
    if (absl::Status status = fn(*table); !status.ok()) return status;
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status BuildIndex(const std::vector<T>& items, std::string T::*id_member, std::string_view what,
                        StringMap<uint32_t>& index, std::string& offending) {
  index.clear();
  index.reserve(items.size());
  for (uint32_t i = 0; i < items.size(); ++i) {
    const std::string& id = items[i].*id_member;
    if (!IsValidId(id)) {
      offending = Cat(what, ":", id);
      return absl::InvalidArgumentError(Cat(what, " id '", id, "' is not 1 to 64 characters of [A-Za-z0-9_-]"));
    }
    if (!index.emplace(id, i).second) {
      offending = Cat(what, ":", id);
      return absl::InvalidArgumentError(Cat(what, " id '", id, "' is registered twice"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<Category> CategoryFromName(std::string_view name) {
  for (size_t i = 0; i < kCategoryCount; ++i) {
    if (kCategoryNames[i] == name) return static_cast<Category>(i);
  }
  return std::nullopt;
}

absl::StatusOr<std::shared_ptr<const Registry>> Registry::FromToml(std::string_view text,
                                                                   std::string_view source_name) {
  toml::table root;
  try {
    root = toml::parse(text, std::string(source_name));
  } catch (const toml::parse_error& error) {
    return absl::InvalidArgumentError(Cat(source_name, ":", error.source().begin.line, ": ",
                                                   error.description()));
  }
  if (absl::Status status = CheckKnownKeys(root, {"province", "bank", "fund", "merchant", "fee_bps"},
                                           "the registry", source_name);
      !status.ok()) {
    return status;
  }

  // Where each participant was defined, to name the line of a reference that does not resolve.
  std::map<std::string, int64_t> line_of;
  std::vector<Province> provinces;
  std::vector<Bank> banks;
  std::vector<Fund> funds;
  std::vector<Merchant> merchants;
  std::array<int32_t, kCategoryCount> fee_bps{};

  absl::Status status = ForEachTable(root, "province", source_name, [&](const toml::table& t) -> absl::Status {
    if (auto s = CheckKnownKeys(t, {"code", "name"}, "[[province]]", source_name); !s.ok()) return s;
    Province p;
    auto code = RequiredString(t, "code", "province", source_name);
    if (!code.ok()) return code.status();
    auto name = RequiredString(t, "name", "province", source_name);
    if (!name.ok()) return name.status();
    line_of[Cat("province:", *code)] = t.source().begin.line;
    p.code = *std::move(code);
    p.name = *std::move(name);
    provinces.push_back(std::move(p));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;

  status = ForEachTable(root, "bank", source_name, [&](const toml::table& t) -> absl::Status {
    if (auto s = CheckKnownKeys(t, {"bank_id", "name", "province", "fee_account"}, "[[bank]]", source_name); !s.ok()) {
      return s;
    }
    Bank b;
    auto id = RequiredString(t, "bank_id", "bank", source_name);
    if (!id.ok()) return id.status();
    auto name = RequiredString(t, "name", "bank", source_name);
    if (!name.ok()) return name.status();
    auto province = RequiredString(t, "province", "bank", source_name);
    if (!province.ok()) return province.status();
    line_of[Cat("bank:", *id)] = t.source().begin.line;
    b.bank_id = *std::move(id);
    b.name = *std::move(name);
    b.province = *std::move(province);
    if (const toml::node* fee = t.get("fee_account")) {
      const auto* flag = fee->as_boolean();
      if (flag == nullptr) {
        return absl::InvalidArgumentError(Cat(Where(source_name, *fee), ": bank.fee_account must be true or false"));
      }
      b.fee_account = flag->get();
    }
    banks.push_back(std::move(b));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;

  status = ForEachTable(root, "fund", source_name, [&](const toml::table& t) -> absl::Status {
    if (auto s = CheckKnownKeys(t, {"fund_id", "name", "province"}, "[[fund]]", source_name); !s.ok()) return s;
    Fund f;
    auto id = RequiredString(t, "fund_id", "fund", source_name);
    if (!id.ok()) return id.status();
    auto name = RequiredString(t, "name", "fund", source_name);
    if (!name.ok()) return name.status();
    auto province = RequiredString(t, "province", "fund", source_name);
    if (!province.ok()) return province.status();
    line_of[Cat("fund:", *id)] = t.source().begin.line;
    f.fund_id = *std::move(id);
    f.name = *std::move(name);
    f.province = *std::move(province);
    funds.push_back(std::move(f));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;

  status = ForEachTable(root, "merchant", source_name, [&](const toml::table& t) -> absl::Status {
    if (auto s = CheckKnownKeys(t, {"merchant_id", "name", "province", "category", "bank_id", "fund_id"},
                                "[[merchant]]", source_name);
        !s.ok()) {
      return s;
    }
    Merchant m;
    auto id = RequiredString(t, "merchant_id", "merchant", source_name);
    if (!id.ok()) return id.status();
    auto name = RequiredString(t, "name", "merchant", source_name);
    if (!name.ok()) return name.status();
    auto province = RequiredString(t, "province", "merchant", source_name);
    if (!province.ok()) return province.status();
    auto category = RequiredString(t, "category", "merchant", source_name);
    if (!category.ok()) return category.status();
    auto bank = RequiredString(t, "bank_id", "merchant", source_name);
    if (!bank.ok()) return bank.status();
    const std::optional<Category> parsed = CategoryFromName(*category);
    if (!parsed) {
      return absl::InvalidArgumentError(Cat(Where(source_name, t), ": merchant '", *id,
                                                     "' has unknown category '", *category, "'"));
    }
    line_of[Cat("merchant:", *id)] = t.source().begin.line;
    m.merchant_id = *std::move(id);
    m.name = *std::move(name);
    m.province = *std::move(province);
    m.category = *parsed;
    m.bank_id = *std::move(bank);
    if (t.get("fund_id") != nullptr) {
      auto fund = RequiredString(t, "fund_id", "merchant", source_name);
      if (!fund.ok()) return fund.status();
      m.fund_id = *std::move(fund);
    }
    merchants.push_back(std::move(m));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;

  if (const toml::node* node = root.get("fee_bps")) {
    const auto* table = node->as_table();
    if (table == nullptr) {
      return absl::InvalidArgumentError(Cat(Where(source_name, *node), ": fee_bps must be a table"));
    }
    for (const auto& [key, value] : *table) {
      const std::optional<Category> category = CategoryFromName(key.str());
      if (!category) {
        return absl::InvalidArgumentError(
            Cat(Where(source_name, value), ": fee_bps has unknown category '", key.str(), "'"));
      }
      const auto* bps = value.as_integer();
      if (bps == nullptr || bps->get() < 0 || bps->get() > 10000) {
        return absl::InvalidArgumentError(Cat(Where(source_name, value), ": fee_bps.", key.str(),
                                                       " must be an integer from 0 to 10000"));
      }
      fee_bps[static_cast<size_t>(*category)] = static_cast<int32_t>(bps->get());
    }
  }

  std::string offending;
  auto registry =
      Build(std::move(provinces), std::move(banks), std::move(funds), std::move(merchants), fee_bps, offending);
  if (!registry.ok()) {
    const auto line = line_of.find(offending);
    const std::string where = line == line_of.end() ? std::string(source_name) : Cat(source_name, ":", line->second);
    return absl::InvalidArgumentError(Cat(where, ": ", registry.status().message()));
  }
  return registry;
}

absl::StatusOr<std::shared_ptr<const Registry>> Registry::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(Cat("cannot open registry file ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return FromToml(buffer.str(), path);
}

absl::StatusOr<std::shared_ptr<const Registry>> Registry::FromParts(
    std::vector<Province> provinces, std::vector<Bank> banks, std::vector<Fund> funds,
    std::vector<Merchant> merchants, std::array<int32_t, kCategoryCount> fee_bps) {
  std::string offending;
  return Build(std::move(provinces), std::move(banks), std::move(funds), std::move(merchants), fee_bps, offending);
}

absl::StatusOr<std::shared_ptr<const Registry>> Registry::Build(
    std::vector<Province> provinces, std::vector<Bank> banks, std::vector<Fund> funds,
    std::vector<Merchant> merchants, std::array<int32_t, kCategoryCount> fee_bps, std::string& offending) {
  std::shared_ptr<Registry> registry(new Registry());
  auto by = [](auto member) { return [member](const auto& a, const auto& b) { return a.*member < b.*member; }; };
  std::sort(provinces.begin(), provinces.end(), by(&Province::code));
  std::sort(banks.begin(), banks.end(), by(&Bank::bank_id));
  std::sort(funds.begin(), funds.end(), by(&Fund::fund_id));
  std::sort(merchants.begin(), merchants.end(), by(&Merchant::merchant_id));
  registry->provinces_ = std::move(provinces);
  registry->banks_ = std::move(banks);
  registry->funds_ = std::move(funds);
  registry->merchants_ = std::move(merchants);
  registry->fee_bps_ = fee_bps;
  if (absl::Status status = registry->Index(offending); !status.ok()) return status;
  return std::shared_ptr<const Registry>(std::move(registry));
}

absl::Status Registry::Index(std::string& offending) {
  if (auto s = BuildIndex(provinces_, &Province::code, "province", province_index_, offending); !s.ok()) return s;
  if (auto s = BuildIndex(banks_, &Bank::bank_id, "bank", bank_index_, offending); !s.ok()) return s;
  if (auto s = BuildIndex(funds_, &Fund::fund_id, "fund", fund_index_, offending); !s.ok()) return s;
  if (auto s = BuildIndex(merchants_, &Merchant::merchant_id, "merchant", merchant_index_, offending); !s.ok()) {
    return s;
  }
  if (provinces_.empty()) return absl::InvalidArgumentError("no [[province]] is registered");
  size_t fee_banks = 0;
  for (size_t i = 0; i < banks_.size(); ++i) {
    const Bank& bank = banks_[i];
    if (FindProvince(bank.province) == nullptr) {
      offending = Cat("bank:", bank.bank_id);
      return absl::InvalidArgumentError(
          Cat("bank '", bank.bank_id, "' names province '", bank.province, "', which is not registered"));
    }
    if (bank.fee_account) {
      ++fee_banks;
      fee_bank_index_ = i;
    }
  }
  if (fee_banks != 1) {
    return absl::InvalidArgumentError(Cat(
        "exactly one bank must have fee_account = true (the clearing center's fee account); found ", fee_banks));
  }
  for (const Fund& fund : funds_) {
    if (FindProvince(fund.province) == nullptr) {
      offending = Cat("fund:", fund.fund_id);
      return absl::InvalidArgumentError(
          Cat("fund '", fund.fund_id, "' names province '", fund.province, "', which is not registered"));
    }
  }
  for (const Merchant& merchant : merchants_) {
    offending = Cat("merchant:", merchant.merchant_id);
    if (FindProvince(merchant.province) == nullptr) {
      return absl::InvalidArgumentError(Cat("merchant '", merchant.merchant_id, "' names province '",
                                                     merchant.province, "', which is not registered"));
    }
    if (FindBank(merchant.bank_id) == nullptr) {
      return absl::InvalidArgumentError(Cat("merchant '", merchant.merchant_id, "' names bank '",
                                                     merchant.bank_id, "', which is not registered"));
    }
    if (IsMedical(merchant.category)) {
      const Fund* fund = FindFund(merchant.fund_id);
      if (fund == nullptr) {
        return absl::InvalidArgumentError(Cat("merchant '", merchant.merchant_id, "' is a ",
                                                       CategoryName(merchant.category), " and needs a registered fund_id"));
      }
    } else if (!merchant.fund_id.empty()) {
      return absl::InvalidArgumentError(Cat("merchant '", merchant.merchant_id,
                                                     "' has a fund_id but is not a hospital or pharmacy"));
    }
  }
  offending.clear();
  return absl::OkStatus();
}

namespace {
template <typename Map>
auto Lookup(const Map& index, std::string_view id) -> const uint32_t* {
  auto it = index.find(id);
  return it == index.end() ? nullptr : &it->second;
}
std::string Quote(std::string_view s) {
  std::ostringstream out;
  out << toml::value<std::string>(std::string(s));
  return out.str();
}
}  // namespace

const Province* Registry::FindProvince(std::string_view code) const {
  const uint32_t* i = Lookup(province_index_, code);
  return i == nullptr ? nullptr : &provinces_[*i];
}
const Bank* Registry::FindBank(std::string_view bank_id) const {
  const uint32_t* i = Lookup(bank_index_, bank_id);
  return i == nullptr ? nullptr : &banks_[*i];
}
const Fund* Registry::FindFund(std::string_view fund_id) const {
  const uint32_t* i = Lookup(fund_index_, fund_id);
  return i == nullptr ? nullptr : &funds_[*i];
}
const Merchant* Registry::FindMerchant(std::string_view merchant_id) const {
  const uint32_t* i = Lookup(merchant_index_, merchant_id);
  return i == nullptr ? nullptr : &merchants_[*i];
}

std::string Registry::ToToml() const {
  std::ostringstream out;
  out << "# YRD one-card scheme registry\n";
  for (const Province& p : provinces_) {
    out << "\n[[province]]\ncode = " << Quote(p.code) << "\nname = " << Quote(p.name) << "\n";
  }
  for (const Bank& b : banks_) {
    out << "\n[[bank]]\nbank_id = " << Quote(b.bank_id) << "\nname = " << Quote(b.name)
        << "\nprovince = " << Quote(b.province) << "\n";
    if (b.fee_account) out << "fee_account = true\n";
  }
  for (const Fund& f : funds_) {
    out << "\n[[fund]]\nfund_id = " << Quote(f.fund_id) << "\nname = " << Quote(f.name)
        << "\nprovince = " << Quote(f.province) << "\n";
  }
  for (const Merchant& m : merchants_) {
    out << "\n[[merchant]]\nmerchant_id = " << Quote(m.merchant_id) << "\nname = " << Quote(m.name)
        << "\nprovince = " << Quote(m.province) << "\ncategory = " << Quote(CategoryName(m.category))
        << "\nbank_id = " << Quote(m.bank_id) << "\n";
    if (!m.fund_id.empty()) out << "fund_id = " << Quote(m.fund_id) << "\n";
  }
  out << "\n[fee_bps]\n";
  for (size_t i = 0; i < kCategoryCount; ++i) out << kCategoryNames[i] << " = " << fee_bps_[i] << "\n";
  return out.str();
}

}  // namespace yrd
