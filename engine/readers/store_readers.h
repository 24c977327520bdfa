// Store readers: what every module outside the ledger reads back from the state store (the file
// writer, the report tool, the store's maintenance, the tests) and the ledger's own start: a
// window's state record, the owners the store holds and their line ids, a window's netting lines
// and counters as committed (per owner, the last checkpoint completed by the applied records
// after it, summed over the owners), and a transaction record wherever it is. Each reads a
// consistent state when the store does not change meanwhile (a secondary between catch-ups, a
// stopped daemon, a closed window). Stateless; any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/store/records.h"
#include "engine/store/state_store.h"

namespace yrd {

// OK when the store is of this build's format (kStoreFormat); FailedPrecondition, saying what to
// do, for a store of an earlier format (which the ledger's start upgrades) or a later one.
[[nodiscard]] absl::Status RequireCurrentStoreFormat(StateStore& store);

// The state record of `day` (WindowStateKey), nullopt when it has none; DataLoss when damaged.
[[nodiscard]] absl::StatusOr<std::optional<WindowRecord>> ReadWindowRecord(StateStore& store, WindowDay day);
// Every window's state record, by window; DataLoss when one is damaged.
[[nodiscard]] absl::StatusOr<std::map<WindowDay, WindowRecord>> ReadWindowRecords(StateStore& store);

// The partitions the instance writing the store consumes (kOwnershipKey), nullopt in a store
// written before it was kept; DataLoss when damaged.
[[nodiscard]] absl::StatusOr<std::optional<Ownership>> ReadOwnership(StateStore& store);
// What a reader of the store should say before an answer from it: empty when the instance owns
// every partition (or the store does not say), else which partitions it lacks, e.g. "this
// store's instance consumes 8 of the 16 partitions; answers lack yrd.taps 4-7, yrd.medical 0,2".
[[nodiscard]] std::string DescribeMissingPartitions(const Ownership& ownership);

// The windows whose records of some owners the store lacks (kLackingShareKeyPrefix: their state
// came from a changelog snapshot taken after the windows' files were written), with those owners.
[[nodiscard]] absl::StatusOr<std::map<WindowDay, std::vector<SourcePartition>>> ReadLackingShares(StateStore& store);
// What a reader should say before answers about those windows: empty when there is none, else
// e.g. "window 2026-11-27 lacks the records of yrd.taps/3 (restored from a changelog snapshot
// after its files were written): read its clearing files".
[[nodiscard]] std::string DescribeLackingShares(const std::map<WindowDay, std::vector<SourcePartition>>& lacking);

// Every owner whose state the store holds: each committed its next offset with its first write.
[[nodiscard]] absl::StatusOr<std::vector<SourcePartition>> ListOwners(StateStore& store);

// Every line id the store holds (LineIds).
[[nodiscard]] absl::StatusOr<LineIds> LoadLineIds(StateStore& store);

// The number of `owner`'s last commit whose applied records the lines in kLines include
// (kLinesThroughKeyPrefix); 0 before the first checkpoint that knew it.
[[nodiscard]] absl::StatusOr<uint64_t> ReadLinesThrough(StateStore& store, SourcePartition owner);
// Of `days`, those where some owner has applied records after its marker (ReadLinesThrough):
// records the day's checkpointed lines do not include yet. A closed window has some only when the
// store took a partition's state from its changelog after it closed the window.
[[nodiscard]] absl::StatusOr<std::vector<WindowDay>> DaysWithRecordsAfterMarkers(StateStore& store,
                                                                               const std::vector<WindowDay>& days);

// A window's netting lines as of its last checkpoint (kLines alone), in line-key order.
[[nodiscard]] absl::StatusOr<std::vector<WindowLine>> ReadCheckpointedLines(StateStore& store, WindowDay day);
// A window's netting lines as committed: kLines as of the last checkpoint, completed by every
// owner's applied records of its commits after its marker; in line-key order. `replayed`, when
// given, is increased by the number of applied records that completed them. `line_ids`, when
// given, are the store's (as LoadLineIds reads them); else they are read. DataLoss when a record
// is damaged or a line would overflow.
[[nodiscard]] absl::StatusOr<std::vector<WindowLine>> ReadWindowLines(StateStore& store, WindowDay day,
                                                                      uint64_t* replayed = nullptr,
                                                                      const LineIds* line_ids = nullptr);

// A window's counters: every owner's summed (zero when it has none).
[[nodiscard]] absl::StatusOr<WindowCounters> ReadWindowCounters(StateStore& store, WindowDay day);
// The counters of every window that has some, summed over the owners.
[[nodiscard]] absl::StatusOr<std::map<WindowDay, WindowCounters>> ReadAllWindowCounters(StateStore& store);

// The transaction records of `txn_id` in `family` under every owner of the family's topic, in
// owner order; empty when none has one. Producers key every message of a transaction by its id,
// so a transaction has one owner; two mean the id came from two partitions (a producer that broke
// the keying contract, docs/processing.md), and each is a transaction of its own.
struct OwnedTxnRecord {
  SourcePartition owner;
  std::string value;
};
[[nodiscard]] absl::StatusOr<std::vector<OwnedTxnRecord>> FindTxnRecordsOfId(StateStore& store, Family family,
                                                                             std::string_view txn_id);

// Nets `owner`'s applied records of `day` whose commit number is past `after_number` (and at
// most `through_number`) into the lines `line_of` gives for them, by the netting rule
// (NetIntoLine): the replay that completes checkpointed lines. DataLoss when a record is damaged
// or a line would overflow.
[[nodiscard]] absl::Status NetAppliedAfter(StateStore& store, const LineIds& line_ids, WindowDay day,
                                           SourcePartition owner, uint64_t after_number,
                                           const std::function<LineTotals&(const AppliedRecord&)>& line_of,
                                           uint64_t through_number = UINT64_MAX);
// Whether `owner` has applied records of `day` whose commit number is past `after_number`.
[[nodiscard]] absl::StatusOr<bool> HasAppliedAfter(StateStore& store, WindowDay day, SourcePartition owner,
                                                   uint64_t after_number);

// Visits the applied records of `day` in key order: owner by owner, each in offset order; the
// visitor returns false to stop. DataLoss when one is damaged.
[[nodiscard]] absl::Status VisitAppliedRecords(
    StateStore& store, WindowDay day, const LineIds& line_ids,
    const std::function<bool(SourcePartition owner, const AppliedRecord& record)>& visitor);

}  // namespace yrd
