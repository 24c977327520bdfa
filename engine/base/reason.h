// Business outcomes of a message that is not applied. A reason is a value recorded with the
// message (exception store, yrd.dlq headers, counters), never an exception or only a log line.
// The names are part of the product's boundary (reports, metrics, DLQ headers): never rename one.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace yrd {

enum class Reason : uint8_t {
  kMalformed = 0,            // fails the FlatBuffers verifier, wrong file identifier, no event
  kOversized,                // payload larger than message_bytes_max
  kInvalidField,             // an id or enum outside its rule, or a wrong topic for the event
  kUnknownParticipant,       // an id not in the registry
  kAmountInvalid,            // negative, sum mismatch, overflow
  kStale,                    // older than the dedup horizon
  kFutureTimestamp,          // beyond the clock-skew bound
  kDuplicateConflict,        // same txn_id as an applied event, different content
  kUnknownOriginal,          // refund/cancellation of an id that was never applied
  kRefundExceedsOriginal,    // the refunds would take the tap below zero
  kAlreadyCancelled,         // the settlement was cancelled before
};

inline constexpr size_t kReasonCount = 11;

inline constexpr std::array<std::string_view, kReasonCount> kReasonNames = {
    "malformed",     "oversized",          "invalid_field",   "unknown_participant",
    "amount_invalid", "stale",             "future_timestamp", "duplicate_conflict",
    "unknown_original", "refund_exceeds_original", "already_cancelled",
};

[[nodiscard]] constexpr std::string_view ReasonName(Reason reason) {
  return kReasonNames[static_cast<size_t>(reason)];
}

[[nodiscard]] inline std::optional<Reason> ReasonFromName(std::string_view name) {
  for (size_t i = 0; i < kReasonCount; ++i) {
    if (kReasonNames[i] == name) return static_cast<Reason>(i);
  }
  return std::nullopt;
}

}  // namespace yrd
