// Positions: derives every position of SPEC section 4 for a window from its netting lines and
// counters (engine/records.h), including the fees, which are computed per window and merchant
// on the merchant's net at the rate of its category. Pure and thread-safe.
#pragma once

#include <functional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/outcome.h"
#include "engine/records.h"
#include "engine/registry.h"

namespace yrd {

struct WindowLine {
  std::string line_key;
  LineTotals totals;
};

// Fee rates: basis points per category (the registry's, frozen at close) and the bank that
// holds the clearing center's fee account.
struct FeeSchedule {
  std::array<int32_t, kCategoryCount> basis_points{};
  std::string fee_bank_id;
  [[nodiscard]] static FeeSchedule FromRegistry(const Registry& registry);
};

// Fails with DataLoss when a line key is damaged.
[[nodiscard]] absl::StatusOr<WindowOutcome> ComputeWindowOutcome(const std::vector<WindowLine>& lines,
                                                                 const WindowCounters& counters,
                                                                 const FeeSchedule& fees);

// Checks the zero-sum invariants of SPEC section 4 on an outcome: bank positions sum to 0,
// fund + institution positions sum to 0, each scheme's province positions sum to 0. Returns
// the list of violations, empty when all hold.
[[nodiscard]] std::vector<std::string> CheckZeroSums(const WindowOutcome& outcome);

}  // namespace yrd
