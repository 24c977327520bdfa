// Store readers: what every module outside the ledger reads back from the state store (the file
// writer, the report tool, the store's maintenance, the tests) and the ledger's own start: a
// window's state record, the line ids, a window's netting lines as committed (the last
// checkpoint completed by the applied records after it), and a transaction record wherever it
// is. Each reads a consistent state when the store does not change meanwhile (a secondary between
// catch-ups, a stopped daemon, a closed window). Stateless; any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/store/records.h"
#include "engine/store/state_store.h"

namespace yrd {

// The state record of `day` (WindowStateKey), nullopt when it has none; DataLoss when damaged.
[[nodiscard]] absl::StatusOr<std::optional<WindowRecord>> ReadWindowRecord(StateStore& store, WindowDay day);

// Every line id the store holds (LineIds).
[[nodiscard]] absl::StatusOr<LineIds> LoadLineIds(StateStore& store);

// The commit the last line checkpoint reflects (kLinesThroughKey); nullopt for a store written
// before checkpoints, whose kLines is complete through its last commit.
[[nodiscard]] absl::StatusOr<std::optional<uint64_t>> ReadLinesThrough(StateStore& store);

// A window's netting lines as committed: kLines as of the last checkpoint, completed by the
// applied records of later commits; in line-key order. `replayed`, when given, is increased by
// the number of applied records that completed them. `line_ids`, when given, are the store's line
// ids (as LoadLineIds reads them); else they are read when there are applied records to replay.
[[nodiscard]] absl::StatusOr<std::vector<WindowLine>> ReadWindowLines(StateStore& store, WindowDay day,
                                                                      uint64_t* replayed = nullptr,
                                                                      const LineIds* line_ids = nullptr);

// The stored transaction record under `txn_key` (TxnKey), wherever it is: the newest of
// kRecentTxn, else kTxn. It scans kRecentTxn, so it is not for a hot path.
[[nodiscard]] absl::Status FindTxnRecord(StateStore& store, std::string_view txn_key, std::string& value, bool& found);

// Nets the applied records of `day` committed after `after_sequence` into the lines `line_of`
// gives for them, by the netting rule (NetIntoLine): the replay that completes checkpointed lines.
// DataLoss when a record is damaged or a line would overflow.
[[nodiscard]] absl::Status NetAppliedAfter(StateStore& store, const LineIds& line_ids, WindowDay day,
                                           uint64_t after_sequence,
                                           const std::function<LineTotals&(const AppliedRecord&)>& line_of);

}  // namespace yrd
