// Outcome: what a run of the engine produced for each window, in a form the generator's oracle
// and the store's report can both write, so a test or benchmark can compare them exactly.
//
// JSON form (positions in fen; a position of 0 is omitted; windows by YYYYMMDD):
//   {"windows": {"20261127": {
//      "counts": {"applied": 10, "exact_duplicates": 1, "late": 2,
//                 "exceptions": {"malformed": 1, ...}},          // reasons with 0 omitted
//      "bank_scheme": {"province": {"310000": -500, ...}, "bank": {...}, "merchant": {...}},
//      "fund_scheme": {"province": {...}, "fund": {...}, "institution": {...}}}}}
//
// Bank scheme: a tap of `a` by a card of bank Bi (province Pi) at merchant m (province Pm,
// bank Bm): Bi -a, Pi -a, Pm +a, and per window and merchant net N and fee F = FeeFen(N, bps):
// merchant m +(N - F), Bm +(N - F), fee bank +F. Fund scheme: a settlement of insured fund Fi
// (Pi) at institution h of fund Fh (Ph), cleared C = fund_pay + account_pay: Fi -C, h +C,
// Pi -C, Ph +C. Refunds and cancellations reverse their part in their own window.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/reason.h"
#include "engine/base/window.h"
#include "nlohmann/json.hpp"

namespace yrd {

using PositionMap = std::map<std::string, int64_t>;

struct WindowOutcome {
  int64_t applied_count = 0;
  int64_t exact_duplicate_count = 0;
  int64_t late_count = 0;
  std::array<int64_t, kReasonCount> exception_counts{};

  PositionMap bank_scheme_province;
  PositionMap bank_scheme_bank;
  PositionMap bank_scheme_merchant;
  PositionMap fund_scheme_province;
  PositionMap fund_scheme_fund;
  PositionMap fund_scheme_institution;

  // Removes zero positions so that two outcomes compare by content only.
  void DropZeroPositions();
  bool operator==(const WindowOutcome&) const = default;
};

struct Outcome {
  std::map<WindowDay, WindowOutcome> windows;
  bool operator==(const Outcome&) const = default;
};

// Adds `delta_fen` to `map[id]`; false, leaving it unchanged, when the sum would pass int64.
[[nodiscard]] bool AddPosition(PositionMap& map, const std::string& id, int64_t delta_fen);

[[nodiscard]] nlohmann::json OutcomeToJson(const Outcome& outcome);
[[nodiscard]] absl::StatusOr<Outcome> OutcomeFromJson(const nlohmann::json& json);

// Human-readable differences, at most `lines_max` of them; empty when equal.
[[nodiscard]] std::vector<std::string> DiffOutcomes(const Outcome& expected, const Outcome& actual,
                                                    size_t lines_max = 50);

}  // namespace yrd
