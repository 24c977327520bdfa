// Decoding and validation of one Kafka message into a DecodedEvent: FlatBuffers verification,
// the id, enum, amount and timestamp rules of SPEC section 3 and 5, and registry resolution.
// The result is either a DecodedEvent or the Reason the message is rejected for; the checks run
// in a fixed order so every message has exactly one reason (docs/processing.md lists it), and a
// rejected message says what was wrong (RejectionDetail).
// Decode is a pure function of its inputs and is called on the ingest thread; the string_views
// of a DecodedEvent point into the message payload, which the Batch owns.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "engine/base/money.h"
#include "engine/base/reason.h"
#include "engine/registry/registry.h"

namespace yrd {

enum class EventKind : uint8_t { kTap = 0, kTapRefund = 1, kMedicalSettlement = 2, kMedicalCancellation = 3 };
[[nodiscard]] std::string_view EventKindName(EventKind kind);

// Dedup families: ids are unique within a family (taps and refunds; settlements and cancellations).
enum class Family : uint8_t { kTaps = 0, kMedical = 1 };
[[nodiscard]] constexpr Family FamilyOf(EventKind kind) {
  return kind == EventKind::kTap || kind == EventKind::kTapRefund ? Family::kTaps : Family::kMedical;
}

// The topics the engine consumes. A message's topic decides which events it may carry.
enum class SourceTopic : uint8_t { kTaps = 0, kMedical = 1 };
inline constexpr std::string_view kTapsTopic = "yrd.taps";
inline constexpr std::string_view kMedicalTopic = "yrd.medical";
inline constexpr std::string_view kDeadLetterTopic = "yrd.dlq";

// 128-bit content digest (XXH3-128) of an event's canonical fields.
struct Digest {
  uint64_t high = 0;
  uint64_t low = 0;
  bool operator==(const Digest&) const = default;
};
[[nodiscard]] std::string DigestHex(const Digest& digest);
// Digest of raw bytes, used for messages that do not decode.
[[nodiscard]] Digest DigestOfBytes(std::string_view bytes);

// Card numbers are never kept: a keyed HMAC-SHA256 token and a masked form replace them.
using CardToken = std::array<uint8_t, 32>;
inline constexpr size_t kMaskedCardLengthMax = 64;

// Computes card tokens. Implementations are not thread-safe; each thread owns one.
class CardTokenizer {
 public:
  virtual ~CardTokenizer() = default;
  virtual void Tokenize(std::string_view card_no, CardToken& token_out) = 0;
};

// Masks a card number: first 6 and last 4 characters kept when it has 16 or more, else first
// 1 and last 2 (fully masked when shorter than 4); masked characters become '*'. Writes at
// most kMaskedCardLengthMax bytes to `out` and returns the length.
size_t MaskCardNumber(std::string_view card_no, char* out);

struct DecodeLimits {
  size_t message_bytes_max = 65'536;                    // config message_bytes_max
  // The largest amount one event may carry (tap, refund, settlement total), fen; a larger one
  // is amount_invalid. Config clearing.amount_fen_max, [1, kPartitionWindowGrossFenMax].
  int64_t amount_fen_max = kAmountFenMaxDefault;
  int64_t dedup_horizon_ms = 40 * 86'400'000LL;         // config dedup_horizon_days
  int64_t clock_skew_ms_max = 300'000;                  // config clock_skew_ms_max
};

struct DecodeContext {
  const Registry* registry = nullptr;
  CardTokenizer* tokenizer = nullptr;
  DecodeLimits limits;
  int64_t now_ms = 0;  // the daemon's clock, read once per batch
};

// What was wrong with a rejected message, for the exception store, the reports and the
// dead-letter headers: the field at fault, the rule it broke, and the value at fault when it may
// be shown (a view into the payload, or a number). A card number is never the value.
struct RejectionDetail {
  std::string_view field;         // "merchant_id"; static text
  std::string_view rule;          // "is not in the registry"; static text
  std::string_view value;         // the text at fault, a view into the payload; may be empty
  std::optional<int64_t> number;  // the number at fault, if it is one

  [[nodiscard]] static RejectionDetail Text(std::string_view field, std::string_view rule,
                                            std::string_view value = {}) {
    return {field, rule, value, std::nullopt};
  }
  [[nodiscard]] static RejectionDetail Number(std::string_view field, std::string_view rule, int64_t number) {
    return {field, rule, {}, number};
  }
};
inline constexpr std::string_view kOversizedRule = "is larger than clearing.message_bytes_max";
// "merchant_id 'M_X': is not in the registry"; the value is escaped (only [A-Za-z0-9_-] stay,
// every other byte becomes \xNN) and cut at kIdLengthMax + 1 characters. Empty when no field.
[[nodiscard]] std::string FormatRejectionDetail(const RejectionDetail& detail);

struct DecodedEvent {
  EventKind kind = EventKind::kTap;
  std::string_view txn_id;
  std::string_view original_txn_id;  // refund and cancellation
  std::string_view terminal_id;      // tap
  int64_t occurred_at_ms = 0;
  // Tap: amount; refund: amount; settlement: total.
  int64_t amount_fen = 0;
  int64_t fund_pay_fen = 0;
  int64_t account_pay_fen = 0;
  int64_t cash_pay_fen = 0;
  uint8_t carrier = 0;     // schema::Carrier
  uint8_t visit_type = 0;  // schema::VisitType
  // Resolved participants (tap: issuer bank, merchant and its bank; settlement: insured fund,
  // institution and its fund). Pointers into the registry the batch holds.
  const Bank* issuer_bank = nullptr;
  const Merchant* merchant = nullptr;
  const Bank* merchant_bank = nullptr;
  const Fund* insured_fund = nullptr;
  const Fund* institution_fund = nullptr;
  CardToken card_token{};
  uint8_t card_masked_length = 0;
  char card_masked[kMaskedCardLengthMax]{};
  Digest digest;  // content digest for dedup (card token in place of the card number)
  // True once the timestamp passed the stale and future checks: a rejection decided after
  // that point is counted in the event's own (routed) window, an earlier one in the oldest
  // open window.
  bool timestamp_checked = false;
  RejectionDetail rejection;  // set with a reason, by Decode or the ledger

  [[nodiscard]] std::string_view card_masked_view() const { return {card_masked, card_masked_length}; }
};

// Copies `payload` into `out` with the card number of a tap or a settlement masked in place
// (MaskCardNumber, or every character when it is longer than kMaskedCardLengthMax), so the copy
// is still a valid envelope of the same length and carries no card number. False, leaving `out`
// empty, when the payload does not verify or holds an event type this build does not know: no
// card number can then be located in it.
[[nodiscard]] bool RedactCardNumbers(std::string_view payload, std::string& out);

// Outcome of Decode: nullopt when `event_out` is valid, else the reason for rejecting it.
// `txn_id_out` is set whenever the txn_id could be read, for the exception store.
[[nodiscard]] std::optional<Reason> Decode(SourceTopic topic, std::string_view payload, DecodeContext& context,
                                           DecodedEvent& event_out);


}  // namespace yrd
