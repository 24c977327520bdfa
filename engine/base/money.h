// Money and identifier primitives shared by every module. Money is an integer number of fen
// (0.01 CNY) held in int64; every sum is checked for overflow, and nothing here ever rounds
// except RoundHalfUpDiv, whose rule is stated where it is defined.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace yrd {

// Adds two fen amounts; returns nullopt instead of wrapping around.
[[nodiscard]] inline std::optional<int64_t> CheckedAddFen(int64_t a_fen, int64_t b_fen) {
  int64_t sum_fen = 0;
  if (__builtin_add_overflow(a_fen, b_fen, &sum_fen)) return std::nullopt;
  return sum_fen;
}

[[nodiscard]] inline std::optional<int64_t> CheckedSubFen(int64_t a_fen, int64_t b_fen) {
  int64_t difference_fen = 0;
  if (__builtin_sub_overflow(a_fen, b_fen, &difference_fen)) return std::nullopt;
  return difference_fen;
}

// Fee of `net_fen` at `basis_points` (1 bp = 1/10000), rounded half up to the fen. "Half up"
// is applied to the magnitude, so a negative net (a window where refunds exceed sales) gets
// exactly the mirror of the fee the same positive net would get: FeeFen(-x) == -FeeFen(x).
// The fee never exceeds the net in magnitude, so it cannot overflow; returns nullopt only for a
// rate outside [0, 10000] or a net of INT64_MIN (whose magnitude has no int64).
[[nodiscard]] inline std::optional<int64_t> FeeFen(int64_t net_fen, int32_t basis_points) {
  if (basis_points < 0 || basis_points > 10000) return std::nullopt;
  const bool negative = net_fen < 0;
  if (net_fen == INT64_MIN) return std::nullopt;
  const int64_t magnitude_fen = negative ? -net_fen : net_fen;
  __int128 scaled = static_cast<__int128>(magnitude_fen) * basis_points + 5000;
  const int64_t fee_fen = static_cast<int64_t>(scaled / 10000);
  return negative ? -fee_fen : fee_fen;
}

// ---- bounds that keep every total of a window within int64 --------------------------------
//
// Every total the engine or a reader computes for a window (a netting line, a participant's or
// a province's position, a file's control total, the summary's sums) is a signed sum of some of
// the window's applied amounts, so its magnitude is at most the sum of all of them: the window's
// gross. The ledger applies an event only while the gross of its (source partition, window)
// stays within kPartitionWindowGrossFenMax; with at most kSourcePartitionsMax partitions, a
// window's gross is then at most kSourcePartitionsMax * kPartitionWindowGrossFenMax, and a month
// of windows (the monthly medical roll-up) at most kMonthWindowsMax times that, which is below
// INT64_MAX. The bound is per partition so that the decision never depends on how partitions are
// spread over ledgers or instances.

// Source topics and partitions per topic the engine consumes at most; a topic with more
// partitions is refused before anything is consumed.
inline constexpr int32_t kSourceTopicsMax = 4;
inline constexpr int32_t kSourcePartitionsPerTopicMax = 256;
inline constexpr int64_t kSourcePartitionsMax = int64_t{kSourceTopicsMax} * kSourcePartitionsPerTopicMax;
// Windows in a settlement month, rounded up to a power of two.
inline constexpr int64_t kMonthWindowsMax = 32;
// 2^48 - 1 fen, about 2.8 trillion yuan per partition and day.
inline constexpr int64_t kPartitionWindowGrossFenMax = INT64_MAX / (kSourcePartitionsMax * kMonthWindowsMax);
static_assert(kPartitionWindowGrossFenMax == (int64_t{1} << 48) - 1);
// The default per-event ceiling (config clearing.amount_fen_max): 10^10 fen, 100 million yuan,
// far above any fare, treatment or benefit payment, far below the window bound.
inline constexpr int64_t kAmountFenMaxDefault = 10'000'000'000;

// Maximum length of any id (txn_id, card_no, bank_id, ...), from SPEC section 3.
inline constexpr size_t kIdLengthMax = 64;

// True when `id` is 1 to 64 characters of [A-Za-z0-9_-].
[[nodiscard]] inline bool IsValidId(std::string_view id) {
  if (id.empty() || id.size() > kIdLengthMax) return false;
  for (const char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace yrd
