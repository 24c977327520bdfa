#include "engine/event/event.h"

#include <cstring>

#include "engine/base/money.h"
#include "schemas/events_generated.h"
#include "xxhash.h"

namespace yrd {
namespace {

namespace fb = ::yrd::schema;

// Root offset plus file identifier: the least a FlatBuffers buffer with an identifier holds.
constexpr size_t kFlatBuffersHeaderBytes = 8;

std::string_view View(const flatbuffers::String* s) {
  return s == nullptr ? std::string_view() : std::string_view(s->data(), s->size());
}

// Builds the canonical byte string of an event's fields, digested for dedup. Every field is
// length-prefixed so that two different events can never produce the same bytes.
class CanonicalWriter {
 public:
  void Byte(uint8_t value) { Raw(&value, 1); }
  void Int(int64_t value) { Raw(&value, sizeof value); }
  void Text(std::string_view text) {
    Byte(static_cast<uint8_t>(text.size()));
    Raw(text.data(), text.size());
  }
  void Raw(const void* data, size_t size) {
    // Bounded: at most 12 fields of at most 65 bytes each; kBufferBytes leaves room.
    std::memcpy(buffer_ + size_, data, size);
    size_ += size;
  }
  [[nodiscard]] Digest Finish() const {
    const XXH128_hash_t hash = XXH3_128bits(buffer_, size_);
    return Digest{hash.high64, hash.low64};
  }

 private:
  static constexpr size_t kBufferBytes = 1024;
  uint8_t buffer_[kBufferBytes];
  size_t size_ = 0;
};

constexpr std::string_view kIdRule = "is not 1 to 64 characters of [A-Za-z0-9_-]";

// Records what was wrong and returns the reason, so that every check reads as one line.
std::optional<Reason> Refuse(DecodedEvent& event, Reason reason, std::string_view field, std::string_view rule,
                             std::string_view value = {}) {
  event.rejection = RejectionDetail::Text(field, rule, value);
  return reason;
}
std::optional<Reason> RefuseNumber(DecodedEvent& event, Reason reason, std::string_view field, std::string_view rule,
                                   int64_t number) {
  event.rejection = RejectionDetail::Number(field, rule, number);
  return reason;
}

// An id field of a message; a secret one (a card number) is never quoted in a rejection.
struct IdField {
  std::string_view field;
  std::string_view value;
  bool secret = false;
};
// invalid_field for the first id that breaks the id rule, in the order given.
std::optional<Reason> CheckIds(std::initializer_list<IdField> ids, DecodedEvent& event) {
  for (const IdField& id : ids) {
    if (IsValidId(id.value)) continue;
    return Refuse(event, Reason::kInvalidField, id.field, id.value.empty() ? "is missing" : kIdRule,
                  id.secret ? std::string_view() : id.value);
  }
  return std::nullopt;
}

// amount_invalid for an amount below `minimum_fen` or above the per-event ceiling.
std::optional<Reason> CheckAmount(std::string_view field, int64_t amount_fen, int64_t minimum_fen,
                                  const DecodeContext& context, DecodedEvent& event) {
  if (amount_fen < minimum_fen) {
    return RefuseNumber(event, Reason::kAmountInvalid, field, minimum_fen == 0 ? "is negative" : "is not positive",
                        amount_fen);
  }
  if (amount_fen > context.limits.amount_fen_max) {
    return RefuseNumber(event, Reason::kAmountInvalid, field, "is above clearing.amount_fen_max", amount_fen);
  }
  return std::nullopt;
}

std::optional<Reason> CheckTopic(SourceTopic topic, SourceTopic wanted, DecodedEvent& event) {
  if (topic == wanted) return std::nullopt;
  return Refuse(event, Reason::kInvalidField, "event",
                wanted == SourceTopic::kTaps ? "belongs on yrd.taps" : "belongs on yrd.medical",
                EventKindName(event.kind));
}

bool TimestampReason(int64_t occurred_at_ms, const DecodeContext& context, std::optional<Reason>& reason,
                     DecodedEvent& event) {
  if (occurred_at_ms < context.now_ms - context.limits.dedup_horizon_ms) {
    reason = RefuseNumber(event, Reason::kStale, "occurred_at_ms", "is older than the dedup horizon", occurred_at_ms);
    return true;
  }
  if (occurred_at_ms > context.now_ms + context.limits.clock_skew_ms_max) {
    reason = RefuseNumber(event, Reason::kFutureTimestamp, "occurred_at_ms",
                          "is later than the clock plus clearing.clock_skew_ms_max", occurred_at_ms);
    return true;
  }
  event.timestamp_checked = true;
  return false;
}

std::optional<Reason> DecodeTap(SourceTopic topic, const fb::Tap& tap, DecodeContext& context, DecodedEvent& event) {
  event.kind = EventKind::kTap;
  event.txn_id = View(tap.txn_id());
  const std::string_view card_no = View(tap.card_no());
  const std::string_view issuer_province = View(tap.issuer_province());
  const std::string_view issuer_bank_id = View(tap.issuer_bank_id());
  const std::string_view merchant_id = View(tap.merchant_id());
  event.terminal_id = View(tap.terminal_id());
  event.amount_fen = tap.amount_fen();
  event.occurred_at_ms = tap.occurred_at_ms();
  event.carrier = static_cast<uint8_t>(tap.carrier());
  std::optional<Reason> reason = CheckTopic(topic, SourceTopic::kTaps, event);
  if (!reason) {
    reason = CheckIds({{"txn_id", event.txn_id},
                       {"card_no", card_no, true},
                       {"issuer_province", issuer_province},
                       {"issuer_bank_id", issuer_bank_id},
                       {"merchant_id", merchant_id},
                       {"terminal_id", event.terminal_id}},
                      event);
  }
  if (reason) return reason;
  if (event.carrier < static_cast<uint8_t>(fb::Carrier::physical) ||
      event.carrier > static_cast<uint8_t>(fb::Carrier::qr)) {
    return RefuseNumber(event, Reason::kInvalidField, "carrier", "is not physical, electronic or qr", event.carrier);
  }
  if ((reason = CheckAmount("amount_fen", event.amount_fen, 0, context, event))) return reason;
  if (TimestampReason(event.occurred_at_ms, context, reason, event)) return reason;
  const Registry& registry = *context.registry;
  event.issuer_bank = registry.FindBank(issuer_bank_id);
  event.merchant = registry.FindMerchant(merchant_id);
  if (event.issuer_bank == nullptr) {
    return Refuse(event, Reason::kUnknownParticipant, "issuer_bank_id", "is not in the registry", issuer_bank_id);
  }
  if (event.merchant == nullptr) {
    return Refuse(event, Reason::kUnknownParticipant, "merchant_id", "is not in the registry", merchant_id);
  }
  if (registry.FindProvince(issuer_province) == nullptr) {
    return Refuse(event, Reason::kUnknownParticipant, "issuer_province", "is not in the registry", issuer_province);
  }
  if (event.issuer_bank->province != issuer_province) {
    return Refuse(event, Reason::kInvalidField, "issuer_province", "is not the issuer bank's province",
                  issuer_province);
  }
  event.merchant_bank = registry.FindBank(event.merchant->bank_id);
  context.tokenizer->Tokenize(card_no, event.card_token);
  event.card_masked_length = static_cast<uint8_t>(MaskCardNumber(card_no, event.card_masked));

  CanonicalWriter canonical;
  canonical.Byte(static_cast<uint8_t>(event.kind));
  canonical.Text(event.txn_id);
  canonical.Raw(event.card_token.data(), event.card_token.size());
  canonical.Byte(event.carrier);
  canonical.Text(issuer_province);
  canonical.Text(issuer_bank_id);
  canonical.Text(merchant_id);
  canonical.Text(event.terminal_id);
  canonical.Int(event.amount_fen);
  canonical.Int(event.occurred_at_ms);
  event.digest = canonical.Finish();
  return std::nullopt;
}

std::optional<Reason> DecodeRefund(SourceTopic topic, const fb::TapRefund& refund, DecodeContext& context,
                                   DecodedEvent& event) {
  event.kind = EventKind::kTapRefund;
  event.txn_id = View(refund.txn_id());
  event.original_txn_id = View(refund.original_txn_id());
  event.amount_fen = refund.amount_fen();
  event.occurred_at_ms = refund.occurred_at_ms();
  std::optional<Reason> reason = CheckTopic(topic, SourceTopic::kTaps, event);
  if (!reason) reason = CheckIds({{"txn_id", event.txn_id}, {"original_txn_id", event.original_txn_id}}, event);
  if (!reason) reason = CheckAmount("amount_fen", event.amount_fen, 1, context, event);
  if (reason) return reason;
  if (TimestampReason(event.occurred_at_ms, context, reason, event)) return reason;
  CanonicalWriter canonical;
  canonical.Byte(static_cast<uint8_t>(event.kind));
  canonical.Text(event.txn_id);
  canonical.Text(event.original_txn_id);
  canonical.Int(event.amount_fen);
  canonical.Int(event.occurred_at_ms);
  event.digest = canonical.Finish();
  return std::nullopt;
}

std::optional<Reason> DecodeSettlement(SourceTopic topic, const fb::MedicalSettlement& settlement,
                                       DecodeContext& context, DecodedEvent& event) {
  event.kind = EventKind::kMedicalSettlement;
  event.txn_id = View(settlement.txn_id());
  const std::string_view card_no = View(settlement.card_no());
  const std::string_view insured_fund_id = View(settlement.insured_fund_id());
  const std::string_view institution_id = View(settlement.institution_id());
  event.visit_type = static_cast<uint8_t>(settlement.visit_type());
  event.amount_fen = settlement.total_fen();
  event.fund_pay_fen = settlement.fund_pay_fen();
  event.account_pay_fen = settlement.account_pay_fen();
  event.cash_pay_fen = settlement.cash_pay_fen();
  event.occurred_at_ms = settlement.occurred_at_ms();
  std::optional<Reason> reason = CheckTopic(topic, SourceTopic::kMedical, event);
  if (!reason) {
    reason = CheckIds({{"txn_id", event.txn_id},
                       {"card_no", card_no, true},
                       {"insured_fund_id", insured_fund_id},
                       {"institution_id", institution_id}},
                      event);
  }
  if (reason) return reason;
  if (event.visit_type < static_cast<uint8_t>(fb::VisitType::outpatient) ||
      event.visit_type > static_cast<uint8_t>(fb::VisitType::pharmacy)) {
    return RefuseNumber(event, Reason::kInvalidField, "visit_type", "is not outpatient, inpatient or pharmacy",
                        event.visit_type);
  }
  if ((reason = CheckAmount("total_fen", event.amount_fen, 0, context, event))) return reason;
  for (const auto& [field, part_fen] : {std::pair<std::string_view, int64_t>{"fund_pay_fen", event.fund_pay_fen},
                                        {"account_pay_fen", event.account_pay_fen},
                                        {"cash_pay_fen", event.cash_pay_fen}}) {
    if (part_fen < 0) return RefuseNumber(event, Reason::kAmountInvalid, field, "is negative", part_fen);
  }
  const std::optional<int64_t> partial = CheckedAddFen(event.fund_pay_fen, event.account_pay_fen);
  const std::optional<int64_t> sum = partial ? CheckedAddFen(*partial, event.cash_pay_fen) : std::nullopt;
  if (!sum || *sum != event.amount_fen) {
    return RefuseNumber(event, Reason::kAmountInvalid, "total_fen",
                        "is not fund_pay_fen + account_pay_fen + cash_pay_fen", event.amount_fen);
  }
  if (TimestampReason(event.occurred_at_ms, context, reason, event)) return reason;
  const Registry& registry = *context.registry;
  event.insured_fund = registry.FindFund(insured_fund_id);
  event.merchant = registry.FindMerchant(institution_id);
  if (event.insured_fund == nullptr) {
    return Refuse(event, Reason::kUnknownParticipant, "insured_fund_id", "is not in the registry", insured_fund_id);
  }
  if (event.merchant == nullptr) {
    return Refuse(event, Reason::kUnknownParticipant, "institution_id", "is not in the registry", institution_id);
  }
  if (!IsMedical(event.merchant->category)) {
    return Refuse(event, Reason::kInvalidField, "institution_id", "is not a hospital or pharmacy", institution_id);
  }
  event.institution_fund = registry.FindFund(event.merchant->fund_id);
  context.tokenizer->Tokenize(card_no, event.card_token);
  event.card_masked_length = static_cast<uint8_t>(MaskCardNumber(card_no, event.card_masked));

  CanonicalWriter canonical;
  canonical.Byte(static_cast<uint8_t>(event.kind));
  canonical.Text(event.txn_id);
  canonical.Raw(event.card_token.data(), event.card_token.size());
  canonical.Text(insured_fund_id);
  canonical.Text(institution_id);
  canonical.Byte(event.visit_type);
  canonical.Int(event.amount_fen);
  canonical.Int(event.fund_pay_fen);
  canonical.Int(event.account_pay_fen);
  canonical.Int(event.cash_pay_fen);
  canonical.Int(event.occurred_at_ms);
  event.digest = canonical.Finish();
  return std::nullopt;
}

std::optional<Reason> DecodeCancellation(SourceTopic topic, const fb::MedicalCancellation& cancellation,
                                         DecodeContext& context, DecodedEvent& event) {
  event.kind = EventKind::kMedicalCancellation;
  event.txn_id = View(cancellation.txn_id());
  event.original_txn_id = View(cancellation.original_txn_id());
  event.occurred_at_ms = cancellation.occurred_at_ms();
  std::optional<Reason> reason = CheckTopic(topic, SourceTopic::kMedical, event);
  if (!reason) reason = CheckIds({{"txn_id", event.txn_id}, {"original_txn_id", event.original_txn_id}}, event);
  if (reason) return reason;
  if (TimestampReason(event.occurred_at_ms, context, reason, event)) return reason;
  CanonicalWriter canonical;
  canonical.Byte(static_cast<uint8_t>(event.kind));
  canonical.Text(event.txn_id);
  canonical.Text(event.original_txn_id);
  canonical.Int(event.occurred_at_ms);
  event.digest = canonical.Finish();
  return std::nullopt;
}

}  // namespace

std::string_view EventKindName(EventKind kind) {
  switch (kind) {
    case EventKind::kTap: return "tap";
    case EventKind::kTapRefund: return "refund";
    case EventKind::kMedicalSettlement: return "settlement";
    case EventKind::kMedicalCancellation: return "cancellation";
  }
  return "unknown";
}

std::string DigestHex(const Digest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[i] = kHex[(digest.high >> (60 - 4 * i)) & 0xF];
    out[16 + i] = kHex[(digest.low >> (60 - 4 * i)) & 0xF];
  }
  return out;
}

std::string FormatRejectionDetail(const RejectionDetail& detail) {
  if (detail.field.empty()) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(detail.field);
  if (!detail.value.empty()) {
    out.append(" '");
    const std::string_view shown = detail.value.substr(0, kIdLengthMax + 1);
    for (const char c : shown) {
      const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
      if (plain) {
        out.push_back(c);
      } else {
        const auto byte = static_cast<uint8_t>(c);
        out.append("\\x");
        out.push_back(kHex[byte >> 4]);
        out.push_back(kHex[byte & 0xF]);
      }
    }
    if (shown.size() < detail.value.size()) out.append("...");
    out.append("' (").append(std::to_string(detail.value.size())).append(" bytes)");
  }
  if (detail.number) out.append(" ").append(std::to_string(*detail.number));
  out.append(": ").append(detail.rule);
  return out;
}

Digest DigestOfBytes(std::string_view bytes) {
  const XXH128_hash_t hash = XXH3_128bits(bytes.data(), bytes.size());
  return Digest{hash.high64, hash.low64};
}

size_t MaskCardNumber(std::string_view card_no, char* out) {
  const size_t length = std::min(card_no.size(), kMaskedCardLengthMax);
  size_t keep_head = 1, keep_tail = 2;
  if (length >= 16) {
    keep_head = 6;
    keep_tail = 4;
  } else if (length < 4) {
    keep_head = 0;
    keep_tail = 0;
  }
  for (size_t i = 0; i < length; ++i) {
    out[i] = (i < keep_head || i >= length - keep_tail) ? card_no[i] : '*';
  }
  return length;
}

bool RedactCardNumbers(std::string_view payload, std::string& out) {
  out.clear();
  const auto* bytes = reinterpret_cast<const uint8_t*>(payload.data());
  if (payload.size() < kFlatBuffersHeaderBytes || !fb::EnvelopeBufferHasIdentifier(bytes)) return false;
  flatbuffers::Verifier verifier(bytes, payload.size());
  if (!fb::VerifyEnvelopeBuffer(verifier)) return false;
  const fb::Envelope* envelope = fb::GetEnvelope(bytes);
  const flatbuffers::String* card_no = nullptr;
  switch (envelope->event_type()) {
    case fb::Event::Tap: card_no = envelope->event_as_Tap()->card_no(); break;
    case fb::Event::MedicalSettlement: card_no = envelope->event_as_MedicalSettlement()->card_no(); break;
    case fb::Event::TapRefund:
    case fb::Event::MedicalCancellation: break;  // they carry no card number
    default: return false;  // a type this build does not know may carry one where it cannot look
  }
  out.assign(payload);
  if (card_no == nullptr) return true;
  // The verifier proved the string lies inside the payload.
  const size_t position = static_cast<size_t>(reinterpret_cast<const char*>(card_no->data()) - payload.data());
  const std::string_view number(card_no->data(), card_no->size());
  char masked[kMaskedCardLengthMax];
  if (number.size() <= kMaskedCardLengthMax) {
    const size_t length = MaskCardNumber(number, masked);
    out.replace(position, length, masked, length);
  } else {
    out.replace(position, number.size(), number.size(), '*');
  }
  return true;
}

std::optional<Reason> Decode(SourceTopic topic, std::string_view payload, DecodeContext& context,
                             DecodedEvent& event) {
  event = DecodedEvent{};
  if (payload.size() > context.limits.message_bytes_max) {
    return RefuseNumber(event, Reason::kOversized, "payload", kOversizedRule, static_cast<int64_t>(payload.size()));
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(payload.data());
  if (payload.size() < kFlatBuffersHeaderBytes) {
    return RefuseNumber(event, Reason::kMalformed, "payload", "is shorter than a FlatBuffers header",
                        static_cast<int64_t>(payload.size()));
  }
  if (!fb::EnvelopeBufferHasIdentifier(bytes)) {
    return Refuse(event, Reason::kMalformed, "payload", "lacks the file identifier YRD1");
  }
  flatbuffers::Verifier verifier(bytes, payload.size());
  if (!fb::VerifyEnvelopeBuffer(verifier)) {
    return Refuse(event, Reason::kMalformed, "payload", "fails the FlatBuffers verifier");
  }
  const fb::Envelope* envelope = fb::GetEnvelope(bytes);
  switch (envelope->event_type()) {
    case fb::Event::Tap: return DecodeTap(topic, *envelope->event_as_Tap(), context, event);
    case fb::Event::TapRefund: return DecodeRefund(topic, *envelope->event_as_TapRefund(), context, event);
    case fb::Event::MedicalSettlement:
      return DecodeSettlement(topic, *envelope->event_as_MedicalSettlement(), context, event);
    case fb::Event::MedicalCancellation:
      return DecodeCancellation(topic, *envelope->event_as_MedicalCancellation(), context, event);
    default: return Refuse(event, Reason::kMalformed, "event", "is none of the known event types");
  }
}

}  // namespace yrd
