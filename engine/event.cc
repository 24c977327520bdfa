#include "engine/event.h"

#include <cstring>

#include "engine/money.h"
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

bool TimestampReason(int64_t occurred_at_ms, const DecodeContext& context, std::optional<Reason>& reason,
                     DecodedEvent& event) {
  if (occurred_at_ms < context.now_ms - context.limits.dedup_horizon_ms) {
    reason = Reason::kStale;
    return true;
  }
  if (occurred_at_ms > context.now_ms + context.limits.clock_skew_ms_max) {
    reason = Reason::kFutureTimestamp;
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
  if (topic != SourceTopic::kTaps) return Reason::kInvalidField;
  if (!IsValidId(event.txn_id) || !IsValidId(card_no) || !IsValidId(issuer_province) ||
      !IsValidId(issuer_bank_id) || !IsValidId(merchant_id) || !IsValidId(event.terminal_id)) {
    return Reason::kInvalidField;
  }
  if (event.carrier < static_cast<uint8_t>(fb::Carrier::physical) ||
      event.carrier > static_cast<uint8_t>(fb::Carrier::qr)) {
    return Reason::kInvalidField;
  }
  if (event.amount_fen < 0) return Reason::kAmountInvalid;
  std::optional<Reason> reason;
  if (TimestampReason(event.occurred_at_ms, context, reason, event)) return reason;
  const Registry& registry = *context.registry;
  event.issuer_bank = registry.FindBank(issuer_bank_id);
  event.merchant = registry.FindMerchant(merchant_id);
  if (event.issuer_bank == nullptr || event.merchant == nullptr || registry.FindProvince(issuer_province) == nullptr) {
    return Reason::kUnknownParticipant;
  }
  if (event.issuer_bank->province != issuer_province) return Reason::kInvalidField;
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
  if (topic != SourceTopic::kTaps) return Reason::kInvalidField;
  if (!IsValidId(event.txn_id) || !IsValidId(event.original_txn_id)) return Reason::kInvalidField;
  if (event.amount_fen <= 0) return Reason::kAmountInvalid;
  std::optional<Reason> reason;
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
  if (topic != SourceTopic::kMedical) return Reason::kInvalidField;
  if (!IsValidId(event.txn_id) || !IsValidId(card_no) || !IsValidId(insured_fund_id) || !IsValidId(institution_id)) {
    return Reason::kInvalidField;
  }
  if (event.visit_type < static_cast<uint8_t>(fb::VisitType::outpatient) ||
      event.visit_type > static_cast<uint8_t>(fb::VisitType::pharmacy)) {
    return Reason::kInvalidField;
  }
  if (event.amount_fen < 0 || event.fund_pay_fen < 0 || event.account_pay_fen < 0 || event.cash_pay_fen < 0) {
    return Reason::kAmountInvalid;
  }
  const std::optional<int64_t> partial = CheckedAddFen(event.fund_pay_fen, event.account_pay_fen);
  const std::optional<int64_t> sum = partial ? CheckedAddFen(*partial, event.cash_pay_fen) : std::nullopt;
  if (!sum || *sum != event.amount_fen) return Reason::kAmountInvalid;
  std::optional<Reason> reason;
  if (TimestampReason(event.occurred_at_ms, context, reason, event)) return reason;
  const Registry& registry = *context.registry;
  event.insured_fund = registry.FindFund(insured_fund_id);
  event.merchant = registry.FindMerchant(institution_id);
  if (event.insured_fund == nullptr || event.merchant == nullptr) return Reason::kUnknownParticipant;
  if (!IsMedical(event.merchant->category)) return Reason::kInvalidField;
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
  if (topic != SourceTopic::kMedical) return Reason::kInvalidField;
  if (!IsValidId(event.txn_id) || !IsValidId(event.original_txn_id)) return Reason::kInvalidField;
  std::optional<Reason> reason;
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

std::optional<Reason> Decode(SourceTopic topic, std::string_view payload, DecodeContext& context,
                             DecodedEvent& event) {
  event = DecodedEvent{};
  if (payload.size() > context.limits.message_bytes_max) return Reason::kOversized;
  const auto* bytes = reinterpret_cast<const uint8_t*>(payload.data());
  if (payload.size() < kFlatBuffersHeaderBytes) return Reason::kMalformed;
  flatbuffers::Verifier verifier(bytes, payload.size());
  if (!fb::EnvelopeBufferHasIdentifier(bytes) || !fb::VerifyEnvelopeBuffer(verifier)) return Reason::kMalformed;
  const fb::Envelope* envelope = fb::GetEnvelope(bytes);
  switch (envelope->event_type()) {
    case fb::Event::Tap: return DecodeTap(topic, *envelope->event_as_Tap(), context, event);
    case fb::Event::TapRefund: return DecodeRefund(topic, *envelope->event_as_TapRefund(), context, event);
    case fb::Event::MedicalSettlement:
      return DecodeSettlement(topic, *envelope->event_as_MedicalSettlement(), context, event);
    case fb::Event::MedicalCancellation:
      return DecodeCancellation(topic, *envelope->event_as_MedicalCancellation(), context, event);
    default: return Reason::kMalformed;
  }
}

}  // namespace yrd
