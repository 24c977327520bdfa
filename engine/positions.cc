#include "engine/positions.h"

#include <map>

#include "engine/money.h"
#include "engine/strings.h"

namespace yrd {

FeeSchedule FeeSchedule::FromRegistry(const Registry& registry) {
  FeeSchedule fees;
  for (size_t i = 0; i < kCategoryCount; ++i) fees.basis_points[i] = registry.fee_bps(static_cast<Category>(i));
  fees.fee_bank_id = registry.fee_bank().bank_id;
  return fees;
}

absl::StatusOr<WindowOutcome> ComputeWindowOutcome(const std::vector<WindowLine>& lines,
                                                   const WindowCounters& counters, const FeeSchedule& fees) {
  WindowOutcome out;
  out.applied_count = counters.applied_count;
  out.exact_duplicate_count = counters.exact_duplicate_count;
  out.late_count = counters.late_count;
  out.exception_counts = counters.exception_counts;

  struct MerchantNet {
    int64_t net_fen = 0;
    std::string bank_id;
    Category category = Category::kBus;
  };
  // Keyed by merchant and settlement bank: if a registry reload moved a merchant to another
  // bank within the window, each bank is credited what was cleared through it, and the fee is
  // charged on each part.
  std::map<std::pair<std::string, std::string>, MerchantNet> merchants;
  for (const WindowLine& line : lines) {
    const LineTotals& t = line.totals;
    if (line.line_key.starts_with("T|")) {
      const std::optional<TapLineParts> parts = ParseTapLineKey(line.line_key);
      const std::optional<Category> category = parts ? CategoryFromName(parts->category) : std::nullopt;
      if (!category) return absl::DataLossError(Cat("netting line '", line.line_key, "' is damaged"));
      const std::optional<int64_t> net = CheckedSubFen(t.amount_fen, t.reversed_amount_fen);
      if (!net) return absl::DataLossError(Cat("netting line '", line.line_key, "' overflows"));
      AddPosition(out.bank_scheme_province, std::string(parts->issuer_province), -*net);
      AddPosition(out.bank_scheme_province, std::string(parts->merchant_province), *net);
      AddPosition(out.bank_scheme_bank, std::string(parts->issuer_bank), -*net);
      MerchantNet& merchant = merchants[{std::string(parts->merchant), std::string(parts->merchant_bank)}];
      const std::optional<int64_t> sum = CheckedAddFen(merchant.net_fen, *net);
      if (!sum) return absl::DataLossError(Cat("merchant ", parts->merchant, " net overflows"));
      merchant.net_fen = *sum;
      merchant.bank_id = parts->merchant_bank;
      merchant.category = *category;
    } else if (line.line_key.starts_with("M|")) {
      const std::optional<SettlementLineParts> parts = ParseSettlementLineKey(line.line_key);
      if (!parts) return absl::DataLossError(Cat("netting line '", line.line_key, "' is damaged"));
      const std::optional<int64_t> cleared = CheckedAddFen(t.fund_pay_fen, t.account_pay_fen);
      const std::optional<int64_t> reversed = CheckedAddFen(t.reversed_fund_pay_fen, t.reversed_account_pay_fen);
      const std::optional<int64_t> net = cleared && reversed ? CheckedSubFen(*cleared, *reversed) : std::nullopt;
      if (!net) return absl::DataLossError(Cat("netting line '", line.line_key, "' overflows"));
      AddPosition(out.fund_scheme_fund, std::string(parts->insured_fund), -*net);
      AddPosition(out.fund_scheme_institution, std::string(parts->institution), *net);
      AddPosition(out.fund_scheme_province, std::string(parts->insured_province), -*net);
      AddPosition(out.fund_scheme_province, std::string(parts->institution_province), *net);
    } else {
      return absl::DataLossError(Cat("netting line '", line.line_key, "' has an unknown type"));
    }
  }
  for (const auto& [merchant_and_bank, merchant] : merchants) {
    const std::string& merchant_id = merchant_and_bank.first;
    const std::optional<int64_t> fee =
        FeeFen(merchant.net_fen, fees.basis_points[static_cast<size_t>(merchant.category)]);
    if (!fee) return absl::DataLossError(Cat("fee of merchant ", merchant_id, " overflows"));
    const int64_t after_fee_fen = merchant.net_fen - *fee;
    AddPosition(out.bank_scheme_merchant, merchant_id, after_fee_fen);
    AddPosition(out.bank_scheme_bank, merchant.bank_id, after_fee_fen);
    AddPosition(out.bank_scheme_bank, fees.fee_bank_id, *fee);
  }
  out.DropZeroPositions();
  return out;
}

std::vector<std::string> CheckZeroSums(const WindowOutcome& outcome) {
  std::vector<std::string> violations;
  auto sum_of = [](const PositionMap& map) {
    __int128 sum = 0;
    for (const auto& [id, fen] : map) sum += fen;
    return sum;
  };
  auto check = [&](const char* what, __int128 sum) {
    if (sum != 0) violations.push_back(Cat(what, " sum to ", static_cast<int64_t>(sum), " fen instead of 0"));
  };
  check("bank-scheme province positions", sum_of(outcome.bank_scheme_province));
  check("bank-scheme bank positions", sum_of(outcome.bank_scheme_bank));
  check("fund-scheme province positions", sum_of(outcome.fund_scheme_province));
  check("fund-scheme fund and institution positions",
        sum_of(outcome.fund_scheme_fund) + sum_of(outcome.fund_scheme_institution));
  return violations;
}

}  // namespace yrd
