// The generator's own view of the events it produces: plain structs that say exactly what goes
// into each FlatBuffers field (including a field left out, or an enum value outside its range), so
// the reference model can judge a message from these fields without decoding the bytes, and the
// encoder can turn them into an Envelope. Value types; no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "flatbuffers/flatbuffers.h"

namespace yrd::gen {

inline constexpr std::string_view kTapsTopic = "yrd.taps";
inline constexpr std::string_view kMedicalTopic = "yrd.medical";

// A string field; nullopt means the field is absent from the buffer.
using OptionalString = std::optional<std::string>;

struct TapFields {
  OptionalString txn_id;
  OptionalString card_no;
  int8_t carrier = 0;  // raw schema value: 1 physical, 2 electronic, 3 qr
  OptionalString issuer_province;
  OptionalString issuer_bank_id;
  OptionalString merchant_id;
  OptionalString terminal_id;
  int64_t amount_fen = 0;
  int64_t occurred_at_ms = 0;
};

struct TapRefundFields {
  OptionalString txn_id;
  OptionalString original_txn_id;
  int64_t amount_fen = 0;
  int64_t occurred_at_ms = 0;
};

struct MedicalSettlementFields {
  OptionalString txn_id;
  OptionalString card_no;
  OptionalString insured_fund_id;
  OptionalString institution_id;
  int8_t visit_type = 0;  // raw schema value: 1 outpatient, 2 inpatient, 3 pharmacy
  int64_t total_fen = 0;
  int64_t fund_pay_fen = 0;
  int64_t account_pay_fen = 0;
  int64_t cash_pay_fen = 0;
  int64_t occurred_at_ms = 0;
};

struct MedicalCancellationFields {
  OptionalString txn_id;
  OptionalString original_txn_id;
  int64_t occurred_at_ms = 0;
};

// The variant's index follows the schema's union order.
using EventFields = std::variant<TapFields, TapRefundFields, MedicalSettlementFields, MedicalCancellationFields>;

// The topic SPEC section 3 assigns to an event, and its Kafka key (empty when the key field is
// absent).
[[nodiscard]] std::string_view TopicOf(const EventFields& event);
[[nodiscard]] std::string_view KeyOf(const EventFields& event);
[[nodiscard]] const OptionalString& TxnIdOf(const EventFields& event);
[[nodiscard]] int64_t OccurredAtMsOf(const EventFields& event);

enum class EnvelopeShape : uint8_t {
  kNormal,            // Envelope with the event, finished with the file identifier
  kWithoutIdentifier  // the same Envelope finished without "YRD1" (malformed)
};

// Encodes `event` as an Envelope into `builder` (cleared first). The bytes stay in the builder
// until its next use.
void EncodeEvent(const EventFields& event, EnvelopeShape shape, flatbuffers::FlatBufferBuilder& builder);
// An Envelope with no event in the union (malformed), with the file identifier.
void EncodeEmptyEnvelope(flatbuffers::FlatBufferBuilder& builder);

[[nodiscard]] inline std::string_view BuilderBytes(const flatbuffers::FlatBufferBuilder& builder) {
  return {reinterpret_cast<const char*>(builder.GetBufferPointer()), builder.GetSize()};
}

// True when `payload` passes the FlatBuffers verifier for an Envelope with the file identifier.
[[nodiscard]] bool PassesEnvelopeVerifier(std::string_view payload);

}  // namespace yrd::gen
