// Rules: the business decisions of SPEC section 5 that depend on the records an event names, as
// pure functions: the exact duplicate and the conflict (step 6 of docs/processing.md), the
// refund's and the cancellation's original (step 7), and what an event moves against the int64
// bound of its partition's gross (step 8). They change nothing; the ledger applies what they
// decide, in the order of the batch. Thread-safe.
#pragma once

#include <cstdint>

#include "engine/base/reason.h"
#include "engine/event/event.h"
#include "engine/store/records.h"

namespace yrd {

enum class Verdict : uint8_t { kApply, kExactDuplicate, kReject };

struct Decision {
  Verdict verdict = Verdict::kApply;
  Reason reason = Reason::kMalformed;  // kReject only
  RejectionDetail detail;              // kReject only

  [[nodiscard]] static Decision Reject(Reason reason, RejectionDetail detail) {
    return {Verdict::kReject, reason, detail};
  }
};

// Steps 6 and 7 for `event` (decoded and valid): `self` is the record standing under its own id
// (nullptr: none), `original` the record of the id a refund or a cancellation names (nullptr:
// none, or not a refund or cancellation).
//   the same id with the same content: an exact duplicate; with other content: duplicate_conflict
//   a refund or cancellation of no applied tap or settlement: unknown_original
//   a refund that would take its tap's refunds past the tap: refund_exceeds_original
//   a cancellation of a cancelled settlement: already_cancelled
[[nodiscard]] Decision JudgeAgainstRecords(const DecodedEvent& event, const TxnRecord* self,
                                           const TxnRecord* original);

// What an applied event moves, fen: its own amount, and for a cancellation the whole total of the
// settlement it cancels (`original`).
[[nodiscard]] int64_t MovedFen(const DecodedEvent& event, const TxnRecord* original);

// Step 8: the rejection (amount_invalid) of an event whose `moved_fen` would take its source
// partition's gross of its window past kPartitionWindowGrossFenMax.
[[nodiscard]] Decision PastPartitionGross(const DecodedEvent& event, int64_t moved_fen);

}  // namespace yrd
