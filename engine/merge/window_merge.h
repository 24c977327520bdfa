// Window merge: the window a consumer group closed partition by partition, closed again as one.
//
// Every owner closes a window for its partitions and says so in each partition's changelog
// (engine/changelog); the owner of the coordinating partition restores every partition through
// that commit into a store of its own (adapters/kafka/kafka_changelog.h, RestoreWindow) and hands
// it here. CloseMergedWindow runs a ledger over that store (its Load derives the window's lines
// from the applied records of every partition) and closes the window with one command at the
// region's close instant, so the store then holds exactly what one instance consuming every
// partition holds after the same close; RenderWindowFiles (engine/clearing) checks the
// invariants on the merged totals and writes the same bytes as that instance.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/base/window.h"
#include "engine/changelog/changelog.h"
#include "engine/clearing/clearing_files.h"
#include "engine/registry/registry.h"
#include "engine/store/state_store.h"

namespace yrd {

// Closes `day` in `store` (no ledger of it running) at `closed_at_ms` with `registry`'s fee
// schedule and participants, as of `now_ms`, and returns the window to render. FailedPrecondition
// when the window is closed in that store already at another instant, or has no activity (no
// partition applied, duplicated or rejected anything in it: there is no file set); the ledger's
// errors as they are.
[[nodiscard]] absl::StatusOr<ClosedWindow> CloseMergedWindow(StateStore& store, const WindowCalendar& calendar,
                                                             WindowDay day, int64_t closed_at_ms,
                                                             std::shared_ptr<const Registry> registry, int64_t now_ms);

// Copies `owner`'s applied records and counters of `day` from `from` (a store that holds the
// owner's state: a shard's, whose line numbers are `line_ids`) into the merge store `into`
// restores to, its lines renumbered there, as one commit record of the owner's; an owner `from`
// has consumed nothing of is left out. What a process with several ledger shards merges a window
// from (bench/engine_throughput --shards). DataLoss for a damaged record.
[[nodiscard]] absl::Status CopyWindowShare(StateStore& from, const LineIds& line_ids, WindowDay day,
                                           SourcePartition owner, ChangelogRestore& into);

}  // namespace yrd
