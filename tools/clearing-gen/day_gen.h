// DayGenerator: one business day of realistic messages for `clearing-gen day`, and the exact
// outcome the engine must report for them (the oracle).
//
// Each message is drawn in production order: a new tap (Zipf-skewed merchant popularity, rush
// hours, reused cards, cross-province cards), a new medical settlement, a refund or cancellation
// of an earlier applied event, an exact duplicate or a conflicting copy of an earlier applied
// event, a late event of a closed day, a malformed payload, or an invalid event of one of the
// kinds listed at InvalidKind. Every message is judged by a ReferenceModel as it is produced, so
// originals are always picked among events the engine will have applied, and they always come
// before what refers to them. Keys follow SPEC section 3, so a refund, cancellation, duplicate
// or conflict lands in its original's partition.
//
// The generator is a deterministic function of the registry and the options: same inputs, same
// bytes. One thread; Run() once.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/window.h"
#include "engine/clearing/outcome.h"
#include "engine/event/event_file.h"
#include "engine/registry/registry.h"
#include "nlohmann/json.hpp"
#include "tools/clearing-gen/reference_model.h"

namespace yrd::gen {

// The largest --events.
inline constexpr uint64_t kEventCountMax = 2'000'000'000;

struct DayOptions {
  WindowDay day = 0;         // --date, the business day the events belong to
  uint64_t event_count = 0;  // --events: messages produced in total, of every kind
  uint64_t seed = 1;         // --seed
  int64_t now_ms = 0;        // --now-ms: the daemon's frozen clock (default: DefaultNowMs(day))

  // Shares of all messages, each in [0, 1], summing to at most 1 (with cancellation_share
  // counted as medical_share * cancellation_share). The rest are new taps.
  double duplicate_share = 0.05;       // exact redeliveries of applied events
  double conflict_share = 0.001;       // an applied event's id with different content
  double malformed_share = 0.001;      // random bytes, truncated buffers, no identifier, no event
  double refund_share = 0.01;          // refunds of applied taps
  double cancellation_share = 0.05;    // of medical settlements: cancellations of applied ones
  double late_share = 0.002;           // new events dated in a closed window
  double medical_share = 0.03;         // new medical settlements
  double invalid_share = 0.0005;       // events rejected for one of the InvalidKind reasons
  // Of new taps: card issued in another province than the merchant's. Of new settlements: the
  // insured fund in another province than the institution's.
  double cross_province_share = 0.25;
};

// 23:59:00.000 China Standard Time on `day`.
[[nodiscard]] int64_t DefaultNowMs(WindowDay day);

// InvalidArgument naming the flag at fault.
[[nodiscard]] absl::Status ValidateDayOptions(const DayOptions& options);

// Kinds of invalid events, each a different path through the engine's rules.
enum class InvalidKind : uint8_t {
  kUnknownBank,             // unknown_participant
  kUnknownMerchant,         // unknown_participant
  kUnknownProvince,         // unknown_participant
  kUnknownFund,             // unknown_participant
  kUnknownInstitution,      // unknown_participant
  kBadIdCharacters,         // invalid_field: space, dot, non-ASCII, 65 characters, empty
  kMissingField,            // invalid_field: a string field left out
  kBadEnum,                 // invalid_field: carrier/visit_type unspecified or out of range
  kWrongTopic,              // invalid_field: tap on yrd.medical, settlement on yrd.taps
  kProvinceMismatch,        // invalid_field: issuer_province is not the bank's
  kInstitutionNotMedical,   // invalid_field: settlement at a metro station
  kNegativeAmount,          // amount_invalid: negative tap, zero/negative refund, negative part
  kMedicalSumMismatch,      // amount_invalid: total != parts, or parts overflowing int64
  kStale,                   // stale
  kFutureTimestamp,         // future_timestamp
  kUnknownOriginal,         // unknown_original
  kRefundExceedsOriginal,   // refund_exceeds_original
  kCancellationTwice,       // already_cancelled
  kOversized,               // oversized
};
inline constexpr size_t kInvalidKindCount = 19;

// What the generator meant to produce; the oracle says what the engine must make of it.
struct DayStats {
  uint64_t message_count = 0;
  uint64_t tap_count = 0;
  uint64_t medical_settlement_count = 0;
  uint64_t refund_count = 0;
  uint64_t cancellation_count = 0;
  uint64_t duplicate_count = 0;
  uint64_t conflict_count = 0;
  uint64_t late_count = 0;
  uint64_t malformed_count = 0;
  uint64_t invalid_count = 0;
  uint64_t cross_province_count = 0;  // of new taps and settlements
  std::array<uint64_t, kInvalidKindCount> invalid_kind_counts{};
};

// Receives the messages in production order. The views are valid during the call only.
class MessageSink {
 public:
  virtual ~MessageSink() = default;
  [[nodiscard]] virtual absl::Status Accept(std::string_view topic, std::string_view key,
                                            std::string_view payload) = 0;
};

// Writes the messages to an event file (engine/event/event_file.h).
class EventFileSink final : public MessageSink {
 public:
  explicit EventFileSink(EventFileWriter& writer) : writer_(writer) {}
  [[nodiscard]] absl::Status Accept(std::string_view topic, std::string_view key, std::string_view payload) override {
    return writer_.Append(topic, key, payload);
  }

 private:
  EventFileWriter& writer_;
};

class DayGenerator {
 public:
  // `options` must pass ValidateDayOptions.
  DayGenerator(std::shared_ptr<const Registry> registry, const DayOptions& options);
  ~DayGenerator();
  DayGenerator(const DayGenerator&) = delete;
  DayGenerator& operator=(const DayGenerator&) = delete;

  // Produces options.event_count messages to `sink`; returns the sink's first error, or
  // FailedPrecondition when the registry cannot carry the requested mix (no transit merchant, or
  // medical events requested without any hospital or pharmacy).
  [[nodiscard]] absl::Status Run(MessageSink& sink);

  // The oracle: OutcomeToJson of the expected outcome plus "clock_fixed_ms", "messages" and
  // "engine_settings". Call after Run() succeeded.
  [[nodiscard]] nlohmann::json OracleJson() const;
  [[nodiscard]] Outcome ExpectedOutcome() const;
  [[nodiscard]] const DayStats& stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace yrd::gen
