// Positions: derives every position of SPEC section 4 for a window from its netting lines and
// counters (engine/store/records.h), including the fees, which are computed per window and merchant
// on the merchant's net at the rate of its category. Pure and thread-safe.
#pragma once

#include <functional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/clearing/outcome.h"
#include "engine/registry/registry.h"
#include "engine/store/records.h"

namespace yrd {

// Fee rates: basis points per category (the registry's, frozen at close) and the bank that
// holds the clearing center's fee account.
struct FeeSchedule {
  std::array<int32_t, kCategoryCount> basis_points{};
  std::string fee_bank_id;
  [[nodiscard]] static FeeSchedule FromRegistry(const Registry& registry);
};

// A merchant's takings in one window at one settling bank, over all its lines, and the fee the
// clearing center charges on them: fee = FeeFen(net, rate of its category), per window and
// merchant (SPEC section 4). The fee rule is applied here only; positions, bank files and
// statements all read these.
struct MerchantCharge {
  Category category = Category::kBus;  // of its last line in key order
  int64_t count = 0;                   // taps
  int64_t gross_fen = 0;
  int64_t refund_count = 0;
  int64_t refunds_fen = 0;
  int64_t net_fen = 0;  // gross - refunds, before the fee
  int32_t basis_points = 0;
  int64_t fee_fen = 0;
};
// By merchant id and settlement bank id: a registry reload that moved a merchant to another bank
// within the window gives one charge per bank, each credited what was cleared through it.
using MerchantCharges = std::map<std::pair<std::string, std::string>, MerchantCharge>;
// DataLoss for a damaged line or a total that overflows.
[[nodiscard]] absl::StatusOr<MerchantCharges> ChargeMerchants(const std::vector<WindowLine>& lines,
                                                             const FeeSchedule& fees);

// Fails with DataLoss when a line key is damaged or a position overflows.
[[nodiscard]] absl::StatusOr<WindowOutcome> ComputeWindowOutcome(const std::vector<WindowLine>& lines,
                                                                 const WindowCounters& counters,
                                                                 const FeeSchedule& fees);

// Checks the zero-sum invariants of SPEC section 4 on an outcome: bank positions sum to 0,
// fund + institution positions sum to 0, each scheme's province positions sum to 0. Returns
// the list of violations, empty when all hold.
[[nodiscard]] std::vector<std::string> CheckZeroSums(const WindowOutcome& outcome);

}  // namespace yrd
