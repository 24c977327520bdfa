// Registry generation for `clearing-gen registry`: the four YRD provinces, banks spread over
// them (the first Shanghai bank holds the clearing center's fee account), health-insurance funds
// with real pooling-region codes, and merchants of all eight categories with their settlement
// banks. A pure function of its options: the same options give the same registry.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/registry/registry.h"

namespace yrd::gen {

// Limits of the generated registry (flag ranges).
inline constexpr int32_t kBankCountMax = 999;
inline constexpr int32_t kMerchantCountMax = 10'000'000;
// The number of real pooling regions the generator knows in the four provinces.
inline constexpr int32_t kFundCountMax = 41;

struct RegistryOptions {
  int32_t bank_count = 12;        // --banks, 1 to kBankCountMax
  int32_t merchant_count = 2000;  // --merchants, 0 to kMerchantCountMax
  int32_t fund_count = 10;        // --funds, 0 to kFundCountMax
  uint64_t seed = 1;              // --seed
};

// Fee rates per category written to [fee_bps]: scenic 60, pharmacy 30, metro 5, others 0.
[[nodiscard]] std::array<int32_t, kCategoryCount> GeneratedFeeBps();

// Builds the registry. InvalidArgument when a count is out of range.
[[nodiscard]] absl::StatusOr<std::shared_ptr<const Registry>> GenerateRegistry(const RegistryOptions& options);

}  // namespace yrd::gen
