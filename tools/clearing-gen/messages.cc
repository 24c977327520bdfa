#include "tools/clearing-gen/messages.h"

#include "schemas/events_generated.h"

namespace yrd::gen {
namespace {

namespace fbs = ::yrd::schema;
using StringOffset = flatbuffers::Offset<flatbuffers::String>;

StringOffset Put(flatbuffers::FlatBufferBuilder& builder, const OptionalString& value) {
  return value ? builder.CreateString(*value) : StringOffset();
}

struct EventEncoder {
  flatbuffers::FlatBufferBuilder& builder;

  std::pair<fbs::Event, flatbuffers::Offset<void>> operator()(const TapFields& tap) const {
    // Strings first: a table may not be under construction while a string is created.
    const StringOffset txn_id = Put(builder, tap.txn_id);
    const StringOffset card_no = Put(builder, tap.card_no);
    const StringOffset issuer_province = Put(builder, tap.issuer_province);
    const StringOffset issuer_bank_id = Put(builder, tap.issuer_bank_id);
    const StringOffset merchant_id = Put(builder, tap.merchant_id);
    const StringOffset terminal_id = Put(builder, tap.terminal_id);
    fbs::TapBuilder table(builder);
    table.add_txn_id(txn_id);
    table.add_card_no(card_no);
    table.add_carrier(static_cast<fbs::Carrier>(tap.carrier));
    table.add_issuer_province(issuer_province);
    table.add_issuer_bank_id(issuer_bank_id);
    table.add_merchant_id(merchant_id);
    table.add_terminal_id(terminal_id);
    table.add_amount_fen(tap.amount_fen);
    table.add_occurred_at_ms(tap.occurred_at_ms);
    return {fbs::Event::Tap, table.Finish().Union()};
  }

  std::pair<fbs::Event, flatbuffers::Offset<void>> operator()(const TapRefundFields& refund) const {
    const StringOffset txn_id = Put(builder, refund.txn_id);
    const StringOffset original_txn_id = Put(builder, refund.original_txn_id);
    fbs::TapRefundBuilder table(builder);
    table.add_txn_id(txn_id);
    table.add_original_txn_id(original_txn_id);
    table.add_amount_fen(refund.amount_fen);
    table.add_occurred_at_ms(refund.occurred_at_ms);
    return {fbs::Event::TapRefund, table.Finish().Union()};
  }

  std::pair<fbs::Event, flatbuffers::Offset<void>> operator()(const MedicalSettlementFields& settlement) const {
    const StringOffset txn_id = Put(builder, settlement.txn_id);
    const StringOffset card_no = Put(builder, settlement.card_no);
    const StringOffset insured_fund_id = Put(builder, settlement.insured_fund_id);
    const StringOffset institution_id = Put(builder, settlement.institution_id);
    fbs::MedicalSettlementBuilder table(builder);
    table.add_txn_id(txn_id);
    table.add_card_no(card_no);
    table.add_insured_fund_id(insured_fund_id);
    table.add_institution_id(institution_id);
    table.add_visit_type(static_cast<fbs::VisitType>(settlement.visit_type));
    table.add_total_fen(settlement.total_fen);
    table.add_fund_pay_fen(settlement.fund_pay_fen);
    table.add_account_pay_fen(settlement.account_pay_fen);
    table.add_cash_pay_fen(settlement.cash_pay_fen);
    table.add_occurred_at_ms(settlement.occurred_at_ms);
    return {fbs::Event::MedicalSettlement, table.Finish().Union()};
  }

  std::pair<fbs::Event, flatbuffers::Offset<void>> operator()(const MedicalCancellationFields& cancellation) const {
    const StringOffset txn_id = Put(builder, cancellation.txn_id);
    const StringOffset original_txn_id = Put(builder, cancellation.original_txn_id);
    fbs::MedicalCancellationBuilder table(builder);
    table.add_txn_id(txn_id);
    table.add_original_txn_id(original_txn_id);
    table.add_occurred_at_ms(cancellation.occurred_at_ms);
    return {fbs::Event::MedicalCancellation, table.Finish().Union()};
  }
};

}  // namespace

std::string_view TopicOf(const EventFields& event) {
  return event.index() <= 1 ? kTapsTopic : kMedicalTopic;
}

std::string_view KeyOf(const EventFields& event) {
  const OptionalString* key = std::visit(
      [](const auto& fields) -> const OptionalString* {
        using T = std::decay_t<decltype(fields)>;
        if constexpr (std::is_same_v<T, TapRefundFields> || std::is_same_v<T, MedicalCancellationFields>) {
          return &fields.original_txn_id;
        } else {
          return &fields.txn_id;
        }
      },
      event);
  return key->has_value() ? std::string_view(**key) : std::string_view();
}

const OptionalString& TxnIdOf(const EventFields& event) {
  return *std::visit([](const auto& fields) { return &fields.txn_id; }, event);
}

int64_t OccurredAtMsOf(const EventFields& event) {
  return std::visit([](const auto& fields) { return fields.occurred_at_ms; }, event);
}

void EncodeEvent(const EventFields& event, EnvelopeShape shape, flatbuffers::FlatBufferBuilder& builder) {
  builder.Clear();
  const auto [type, offset] = std::visit(EventEncoder{builder}, event);
  fbs::EnvelopeBuilder envelope(builder);
  envelope.add_event(offset);
  envelope.add_event_type(type);
  const flatbuffers::Offset<fbs::Envelope> root = envelope.Finish();
  if (shape == EnvelopeShape::kNormal) {
    fbs::FinishEnvelopeBuffer(builder, root);
  } else {
    builder.Finish(root);
  }
}

void EncodeEmptyEnvelope(flatbuffers::FlatBufferBuilder& builder) {
  builder.Clear();
  fbs::EnvelopeBuilder envelope(builder);
  fbs::FinishEnvelopeBuffer(builder, envelope.Finish());
}

bool PassesEnvelopeVerifier(std::string_view payload) {
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  return fbs::VerifyEnvelopeBuffer(verifier);
}

}  // namespace yrd::gen
