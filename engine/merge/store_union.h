// Store union: one store answering for a group member that holds partitions in two stores, its
// own and its standby's (docs/scale-out.md, section 6), so that a report is the same on any member
// that holds every partition's state, as owner or as standby; and for a process whose ledger
// shards keep a store each (section 2).
#pragma once

#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/store/records.h"
#include "engine/store/state_store.h"

namespace yrd {

// Builds into `into` (a new store) each owner's state from whichever of `own` and `standby` holds
// its later commit (every window kept), with `own`'s window records, card-token key check and
// ownership, the latter widened to every partition `standby` holds (it follows all the member
// does not own). Neither store may be
// written meanwhile (read them through secondaries). Returns the partitions taken from `standby`.
[[nodiscard]] absl::StatusOr<std::vector<SourcePartition>> BuildStoreUnion(StateStore& own, StateStore& standby,
                                                                          StateStore& into);

// Builds into `into` (a new store) the union of the shards' stores of one process
// (pipeline.shards, shard 0 first): each owner's state from the shard with its latest commit, the
// window records of every shard (the first's that has one), shard 0's card-token key check, and
// the ownership of all together. No store may be written meanwhile.
[[nodiscard]] absl::Status BuildShardUnion(std::span<StateStore* const> shards, StateStore& into);

}  // namespace yrd
