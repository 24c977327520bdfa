// Registry: the reference data of the scheme (provinces, banks, funds, merchants, fee rates),
// loaded from a TOML file at start and on reload. A Registry is immutable once built; a reload
// builds a new one and swaps a shared_ptr, so any thread may read a Registry it holds.
//
// File format (all ids follow the id rule of SPEC section 3):
//
//   [[province]]  code = "310000"  name = "Shanghai"
//   [[bank]]      bank_id = "B3101"  name = "..."  province = "310000"  fee_account = true
//   [[fund]]      fund_id = "310100" name = "..."  province = "310000"
//   [[merchant]]  merchant_id = "M1" name = "..." province = "310000" category = "metro"
//                 bank_id = "B3101"  fund_id = "310100"   # fund_id only for hospital/pharmacy
//   [fee_bps]     metro = 5  hospital = 0 ...                # basis points per category, default 0
//
// Exactly one bank has fee_account = true: it holds the clearing center's fee account.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/strings.h"

namespace yrd {

enum class Category : uint8_t { kBus = 0, kMetro, kFerry, kLibrary, kMuseum, kScenic, kHospital, kPharmacy };
inline constexpr size_t kCategoryCount = 8;
inline constexpr std::array<std::string_view, kCategoryCount> kCategoryNames = {
    "bus", "metro", "ferry", "library", "museum", "scenic", "hospital", "pharmacy"};

[[nodiscard]] constexpr std::string_view CategoryName(Category category) {
  return kCategoryNames[static_cast<size_t>(category)];
}
[[nodiscard]] std::optional<Category> CategoryFromName(std::string_view name);
[[nodiscard]] constexpr bool IsMedical(Category category) {
  return category == Category::kHospital || category == Category::kPharmacy;
}

struct Province {
  std::string code;  // GB/T 2260, six digits
  std::string name;
};

struct Bank {
  std::string bank_id;
  std::string name;
  std::string province;
  bool fee_account = false;
};

struct Fund {
  std::string fund_id;  // six-digit pooling-region code
  std::string name;
  std::string province;
};

struct Merchant {
  std::string merchant_id;
  std::string name;
  std::string province;
  Category category = Category::kBus;
  std::string bank_id;  // settlement bank
  std::string fund_id;  // pooling region, hospital/pharmacy only, else empty
};

class Registry {
 public:
  // Parses and checks a registry. On failure the status message names the file (`source_name`),
  // the line and the key at fault. Checks: ids valid and unique, every reference resolves,
  // exactly one fee-account bank, fund_id present exactly for hospital/pharmacy, fee_bps in
  // [0, 10000].
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const Registry>> FromToml(
      std::string_view text, std::string_view source_name);
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const Registry>> FromFile(const std::string& path);

  // Lookups return nullptr when the id is not registered.
  [[nodiscard]] const Province* FindProvince(std::string_view code) const;
  [[nodiscard]] const Bank* FindBank(std::string_view bank_id) const;
  [[nodiscard]] const Fund* FindFund(std::string_view fund_id) const;
  [[nodiscard]] const Merchant* FindMerchant(std::string_view merchant_id) const;

  [[nodiscard]] int32_t fee_bps(Category category) const { return fee_bps_[static_cast<size_t>(category)]; }
  [[nodiscard]] const Bank& fee_bank() const { return banks_[fee_bank_index_]; }

  // All participants, sorted by id.
  [[nodiscard]] const std::vector<Province>& provinces() const { return provinces_; }
  [[nodiscard]] const std::vector<Bank>& banks() const { return banks_; }
  [[nodiscard]] const std::vector<Fund>& funds() const { return funds_; }
  [[nodiscard]] const std::vector<Merchant>& merchants() const { return merchants_; }

  // The registry as TOML text in the format above (used by the generator).
  [[nodiscard]] std::string ToToml() const;

  // Builds a registry from parts, with the same checks as FromToml.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const Registry>> FromParts(
      std::vector<Province> provinces, std::vector<Bank> banks, std::vector<Fund> funds,
      std::vector<Merchant> merchants, std::array<int32_t, kCategoryCount> fee_bps);

 private:
  Registry() = default;
  // Sorts, indexes and checks; on failure `offending` names the entry ("merchant:M1").
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const Registry>> Build(
      std::vector<Province> provinces, std::vector<Bank> banks, std::vector<Fund> funds,
      std::vector<Merchant> merchants, std::array<int32_t, kCategoryCount> fee_bps, std::string& offending);
  [[nodiscard]] absl::Status Index(std::string& offending);

  std::vector<Province> provinces_;
  std::vector<Bank> banks_;
  std::vector<Fund> funds_;
  std::vector<Merchant> merchants_;
  std::array<int32_t, kCategoryCount> fee_bps_{};
  size_t fee_bank_index_ = 0;
  StringMap<uint32_t> province_index_;
  StringMap<uint32_t> bank_index_;
  StringMap<uint32_t> fund_index_;
  StringMap<uint32_t> merchant_index_;
};

}  // namespace yrd
