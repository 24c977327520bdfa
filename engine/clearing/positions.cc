#include "engine/clearing/positions.h"

#include <map>

#include "engine/base/money.h"
#include "engine/base/strings.h"

namespace yrd {

FeeSchedule FeeSchedule::FromRegistry(const Registry& registry) {
  FeeSchedule fees;
  for (size_t i = 0; i < kCategoryCount; ++i) fees.basis_points[i] = registry.fee_bps(static_cast<Category>(i));
  fees.fee_bank_id = registry.fee_bank().bank_id;
  return fees;
}

absl::StatusOr<MerchantCharges> ChargeMerchants(const std::vector<WindowLine>& lines, const FeeSchedule& fees) {
  MerchantCharges charges;
  bool overflowed = false;
  auto add = [&](int64_t& total, int64_t delta) {
    const std::optional<int64_t> sum = CheckedAddFen(total, delta);
    if (sum) total = *sum;
    overflowed = overflowed || !sum;
  };
  for (const WindowLine& line : lines) {
    if (!line.line_key.starts_with("T|")) continue;
    const std::optional<TapLineParts> parts = ParseTapLineKey(line.line_key);
    const std::optional<Category> category = parts ? CategoryFromName(parts->category) : std::nullopt;
    if (!category) return absl::DataLossError(Cat("netting line '", line.line_key, "' is damaged"));
    const LineTotals& t = line.totals;
    MerchantCharge& charge = charges[{std::string(parts->merchant), std::string(parts->merchant_bank)}];
    add(charge.count, t.count);
    add(charge.gross_fen, t.amount_fen);
    add(charge.refund_count, t.reversal_count);
    add(charge.refunds_fen, t.reversed_amount_fen);
    charge.category = *category;
  }
  if (overflowed) return absl::DataLossError("a merchant's total of the window overflows int64 fen");
  for (auto& [merchant_and_bank, charge] : charges) {
    const std::optional<int64_t> net = CheckedSubFen(charge.gross_fen, charge.refunds_fen);
    charge.basis_points = fees.basis_points[static_cast<size_t>(charge.category)];
    const std::optional<int64_t> fee = net ? FeeFen(*net, charge.basis_points) : std::nullopt;
    if (!fee) return absl::DataLossError(Cat("the fee of merchant ", merchant_and_bank.first, " overflows"));
    charge.net_fen = *net;
    charge.fee_fen = *fee;
  }
  return charges;
}

absl::StatusOr<WindowOutcome> ComputeWindowOutcome(const std::vector<WindowLine>& lines,
                                                   const WindowCounters& counters, const FeeSchedule& fees) {
  WindowOutcome out;
  out.applied_count = counters.applied_count;
  out.exact_duplicate_count = counters.exact_duplicate_count;
  out.late_count = counters.late_count;
  out.exception_counts = counters.exception_counts;
  bool overflowed = false;
  auto add = [&](PositionMap& map, std::string_view id, int64_t delta_fen) {
    overflowed = !AddPosition(map, std::string(id), delta_fen) || overflowed;
  };
  for (const WindowLine& line : lines) {
    const LineTotals& t = line.totals;
    if (line.line_key.starts_with("T|")) {
      const std::optional<TapLineParts> parts = ParseTapLineKey(line.line_key);
      if (!parts) return absl::DataLossError(Cat("netting line '", line.line_key, "' is damaged"));
      const std::optional<int64_t> net = CheckedSubFen(t.amount_fen, t.reversed_amount_fen);
      if (!net) return absl::DataLossError(Cat("netting line '", line.line_key, "' overflows"));
      add(out.bank_scheme_province, parts->issuer_province, -*net);
      add(out.bank_scheme_province, parts->merchant_province, *net);
      add(out.bank_scheme_bank, parts->issuer_bank, -*net);
    } else if (line.line_key.starts_with("M|")) {
      const std::optional<SettlementLineParts> parts = ParseSettlementLineKey(line.line_key);
      if (!parts) return absl::DataLossError(Cat("netting line '", line.line_key, "' is damaged"));
      const std::optional<int64_t> cleared = CheckedAddFen(t.fund_pay_fen, t.account_pay_fen);
      const std::optional<int64_t> reversed = CheckedAddFen(t.reversed_fund_pay_fen, t.reversed_account_pay_fen);
      const std::optional<int64_t> net = cleared && reversed ? CheckedSubFen(*cleared, *reversed) : std::nullopt;
      if (!net) return absl::DataLossError(Cat("netting line '", line.line_key, "' overflows"));
      add(out.fund_scheme_fund, parts->insured_fund, -*net);
      add(out.fund_scheme_institution, parts->institution, *net);
      add(out.fund_scheme_province, parts->insured_province, -*net);
      add(out.fund_scheme_province, parts->institution_province, *net);
    } else {
      return absl::DataLossError(Cat("netting line '", line.line_key, "' has an unknown type"));
    }
  }
  absl::StatusOr<MerchantCharges> charges = ChargeMerchants(lines, fees);
  if (!charges.ok()) return charges.status();
  for (const auto& [merchant_and_bank, charge] : *charges) {
    const auto& [merchant_id, bank_id] = merchant_and_bank;
    const int64_t after_fee_fen = charge.net_fen - charge.fee_fen;  // |fee| <= |net|: no overflow
    add(out.bank_scheme_merchant, merchant_id, after_fee_fen);
    add(out.bank_scheme_bank, bank_id, after_fee_fen);
    add(out.bank_scheme_bank, fees.fee_bank_id, charge.fee_fen);
  }
  if (overflowed) return absl::DataLossError("a position of the window overflows int64 fen");
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
