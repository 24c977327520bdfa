#include "engine/rules/rules.h"

#include "engine/base/money.h"

namespace yrd {

Decision JudgeAgainstRecords(const DecodedEvent& event, const TxnRecord* self, const TxnRecord* original) {
  if (self != nullptr) {
    if (self->digest == event.digest) return {Verdict::kExactDuplicate, Reason::kMalformed, {}};
    return Decision::Reject(Reason::kDuplicateConflict,
                            RejectionDetail::Text("txn_id", "was applied before with other content", event.txn_id));
  }
  const bool refund = event.kind == EventKind::kTapRefund;
  if (!refund && event.kind != EventKind::kMedicalCancellation) return {};
  const EventKind wanted = refund ? EventKind::kTap : EventKind::kMedicalSettlement;
  if (original == nullptr || original->kind != wanted) {
    return Decision::Reject(
        Reason::kUnknownOriginal,
        RejectionDetail::Text("original_txn_id", refund ? "names no applied tap" : "names no applied settlement",
                              event.original_txn_id));
  }
  if (refund) {
    const std::optional<int64_t> refunded = CheckedAddFen(original->refunded_fen, event.amount_fen);
    if (!refunded || *refunded > original->amount_fen) {
      return Decision::Reject(
          Reason::kRefundExceedsOriginal,
          RejectionDetail::Number("amount_fen", "would take the refunds of the original tap past its amount",
                                  event.amount_fen));
    }
  } else if (original->cancelled) {
    return Decision::Reject(Reason::kAlreadyCancelled,
                            RejectionDetail::Text("original_txn_id", "was cancelled before", event.original_txn_id));
  }
  return {};
}

int64_t MovedFen(const DecodedEvent& event, const TxnRecord* original) {
  if (event.kind == EventKind::kMedicalCancellation && original != nullptr) return original->amount_fen;
  return event.amount_fen;
}

Decision PastPartitionGross(const DecodedEvent& event, int64_t moved_fen) {
  constexpr std::string_view kRule = "would take this source partition's gross of the window past 2^48 - 1 fen";
  if (event.kind == EventKind::kMedicalCancellation) {
    return Decision::Reject(
        Reason::kAmountInvalid,
        RejectionDetail::Text("original_txn_id",
                              "the cancelled total would take this source partition's gross of the window past "
                              "2^48 - 1 fen",
                              event.original_txn_id));
  }
  return Decision::Reject(
      Reason::kAmountInvalid,
      RejectionDetail::Number(event.kind == EventKind::kMedicalSettlement ? "total_fen" : "amount_fen", kRule,
                              moved_fen));
}

}  // namespace yrd
