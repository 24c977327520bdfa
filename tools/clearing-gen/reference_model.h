// ReferenceModel: the generator's own, independent statement of the engine's rules (the
// TigerBeetle "auditor" idea). It judges each produced message in production order from the
// fields the generator put into it, keeps the dedup, refund and cancellation state, nets the
// positions per window, and at the end yields the exact Outcome the engine must report for the
// same messages with its clock frozen at `now_ms`. It shares no rule code with the engine: only
// the calendar arithmetic (WindowCalendar), the fee rounding (FeeFen), the registry and the
// outcome format. Owned by one generator; not thread-safe.
//
// Rules, in order; the first failing check decides:
//   1 payload > message_bytes_max: oversized; no decodable event: malformed
//   2 invalid_field: an id not 1-64 of [A-Za-z0-9_-] (absent counts), an enum unspecified or out
//     of range, an event on the wrong topic
//   3 amount_invalid: tap < 0, refund <= 0, settlement amount < 0 or parts not summing (checked),
//     an amount above clearing.amount_fen_max. (The engine's bound on a partition's gross in a
//     window, kPartitionWindowGrossFenMax, is not modelled: a generated day stays far below it.)
//   4 stale (occurred < now - horizon), future_timestamp (occurred > now + skew)
//   5 unknown_participant, or invalid_field for a bank/province mismatch or a non-medical institution
//   6 dedup per family: same id applied before with the same content: exact duplicate; else
//     duplicate_conflict. Rejected messages never register their id.
//   7 unknown_original, refund_exceeds_original, already_cancelled
// Exceptions decided at steps 1-4 count in the oldest open window; later ones, duplicates and
// applied events in the routed window of their own occurred_at_ms.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/base/money.h"
#include "engine/base/reason.h"
#include "engine/base/strings.h"
#include "engine/base/window.h"
#include "engine/clearing/outcome.h"
#include "engine/registry/registry.h"
#include "tools/clearing-gen/messages.h"

namespace yrd::gen {

// The engine settings the model assumes; the defaults are the engine's defaults.
struct ModelSettings {
  int64_t now_ms = 0;                              // the daemon's frozen clock
  int64_t dedup_horizon_ms = 40 * kDayMs;          // config dedup_horizon_days = 40
  int64_t clock_skew_ms_max = 300'000;             // config clock_skew_ms_max
  size_t message_bytes_max = 65'536;               // config message_bytes_max
  int64_t amount_fen_max = kAmountFenMaxDefault;   // config clearing.amount_fen_max
  WindowCalendar calendar;                         // cutoff 00:00, grace 15 min
};

enum class VerdictKind : uint8_t { kApplied, kExactDuplicate, kException };

struct Verdict {
  VerdictKind kind = VerdictKind::kApplied;
  Reason reason = Reason::kMalformed;  // meaningful for kException only
  WindowDay window = 0;                // where the message is counted
  bool late = false;                   // applied into the oldest open window from a closed one
};

class ReferenceModel {
 public:
  ReferenceModel(std::shared_ptr<const Registry> registry, ModelSettings settings);

  // Judges one message and records its effect. `event` is nullptr when the payload holds no
  // decodable event (verifier failure, wrong identifier, empty union).
  Verdict Judge(std::string_view topic, size_t payload_bytes, const EventFields* event);

  // Sizes the id tables for about this many applied ids per family, to spare rehashing.
  void ReserveIds(size_t tap_family_ids, size_t medical_family_ids);

  // State the generator consults to pick originals for refunds and cancellations.
  // Remaining refundable fen of an applied tap, or nullopt when `txn_id` is not an applied tap.
  [[nodiscard]] std::optional<int64_t> RefundableFen(std::string_view txn_id) const;
  // Whether `txn_id` is an applied settlement, and if so whether it was cancelled.
  [[nodiscard]] std::optional<bool> SettlementCancelled(std::string_view txn_id) const;

  // The expected outcome: fees computed per window and merchant, zero positions dropped. Aborts
  // when a zero-sum invariant fails (a bug in this model, never in the input).
  [[nodiscard]] Outcome Finish() const;

  [[nodiscard]] WindowDay oldest_open_window() const { return oldest_open_window_; }
  [[nodiscard]] uint64_t message_count() const { return message_count_; }

 private:
  enum class Family : uint8_t { kTaps = 0, kMedical = 1 };

  // An applied event's id, with what steps 6 and 7 need later.
  struct AppliedId {
    uint64_t digest_high = 0;  // XXH3-128 of the canonical content
    uint64_t digest_low = 0;
    uint8_t variant_index = 0;  // EventFields alternative
    bool cancelled = false;     // settlement only
    uint32_t party_a = 0;       // tap: issuer bank index; settlement: insured fund index
    uint32_t party_b = 0;       // tap and settlement: merchant (institution) index
    int64_t amount_fen = 0;     // tap: amount; settlement: cleared fen
    int64_t refunded_fen = 0;   // tap: sum of applied refunds
  };

  // Per-window accumulators indexed like the registry's sorted vectors.
  struct WindowState {
    int64_t applied_count = 0;
    int64_t exact_duplicate_count = 0;
    int64_t late_count = 0;
    std::array<int64_t, kReasonCount> exception_counts{};
    std::vector<int64_t> bank_province_fen;
    std::vector<int64_t> bank_fen;
    std::vector<int64_t> merchant_net_fen;
    std::vector<int64_t> fund_province_fen;
    std::vector<int64_t> fund_fen;
    std::vector<int64_t> institution_fen;
  };

  struct Routed {
    WindowDay window;
    bool late;
  };

  [[nodiscard]] Routed Route(int64_t occurred_at_ms) const;
  WindowState& Window(WindowDay day);
  Verdict Reject(Reason reason, WindowDay window);

  const std::shared_ptr<const Registry> registry_;
  const ModelSettings settings_;
  WindowDay oldest_open_window_ = 0;
  uint64_t message_count_ = 0;

  // Registry cross-references, by index into the registry's vectors.
  std::vector<uint32_t> bank_province_index_;
  std::vector<uint32_t> fund_province_index_;
  std::vector<uint32_t> merchant_bank_index_;
  std::vector<uint32_t> merchant_province_index_;
  std::vector<int64_t> merchant_fund_index_;  // -1 when the merchant is not medical
  uint32_t fee_bank_index_ = 0;

  StringMap<AppliedId> applied_[2];  // by Family
  std::string scratch_;              // canonical content, reused per message
  std::map<WindowDay, WindowState> windows_;
};

}  // namespace yrd::gen
