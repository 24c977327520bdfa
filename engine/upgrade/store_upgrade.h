// Store upgrade: brings a state store to the current format (kStoreFormat) before the ledger
// loads it. A new store gets the format marker; a store of format 3 (transaction records, applied
// records and window counters shared by every source partition) is rewritten to format 4, in
// which every record of a partition's messages is keyed by that partition (engine/store/
// records.h):
//   - transaction records, and the recent ones, move under their owner's key (the record names
//     its partition, its family the topic);
//   - a window's applied records are split by owner, numbered by the owner's next offset after the
//     commit that wrote them; their sum must equal the window's lines as format 3 held them (the
//     checkpoint completed by the commits after it), or the upgrade refuses; the lines are then
//     stored whole, and every owner's marker says they include all of its commits;
//   - a window's counters are split the same way: applied and late counts from the applied
//     records, exception counts from the exception records, and what no record tells (exact
//     duplicates, or everything of a retired window) goes to the first owner, so the window's sum
//     is unchanged;
//   - the format marker goes last.
// Each window and each chunk of records is one atomic write, so a crash in between leaves a
// store that the next start upgrades further. Not thread-safe; run before anything else uses the
// store.
#pragma once

#include "absl/status/status.h"
#include "engine/store/state_store.h"

namespace yrd {

// OK when the store is (now) of format kStoreFormat. FailedPrecondition for a format this build
// does not know (a newer one); DataLoss when the upgrade finds records that do not add up.
[[nodiscard]] absl::Status UpgradeStore(StateStore& store);

// Transaction records moved per write during an upgrade.
inline constexpr size_t kUpgradeRecordsPerWrite = 16'384;

}  // namespace yrd
