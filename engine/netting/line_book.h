// LineBook: the netting lines of the windows not closed, held in memory while the ledger nets
// events into them; their numbers (LineIds, stored in kMeta with the first record that uses one);
// and their checkpoints into kLines.
//
// A line aggregates the events of one window between one set of participants (engine/store/
// records.h), over every source partition the ledger owns: a partition's share of it is exactly
// its applied records, which are its own (kApplied is keyed by partition), so the lines are the
// ledger's derived state, not any partition's (docs/scale-out.md, section 1). The lines are
// written to kLines only at a checkpoint: every checkpoint_applied_max applied events, and in the
// commit that closes a window, with each partition's kLinesThroughKeyPrefix marker naming the last
// of its commits they include; its applied records of later commits complete them
// (ReadWindowLines, and Load). A tap's or a settlement's line is found by the addresses of its
// registry entries (the batch's registry is held while they are cached), without building and
// hashing its key text; a refund's or cancellation's by its original's line number.
//
// The cost of an event does not grow with the registry: a realistic one (50,000 merchants, 60
// banks) makes nearly a line per event, so every index is by number, never by key text. A route
// (merchant and issuing bank, or institution and insured fund, by their places in the registry)
// gives the line's number, for as long as the registry is in force, whatever the window; a
// window's table by number gives the line. Key texts are hashed only for a route not seen since
// the registry came into force, and read only at a checkpoint.
//
// Used on the ledger thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "engine/base/strings.h"
#include "engine/event/event.h"
#include "engine/registry/registry.h"
#include "engine/store/records.h"
#include "engine/store/state_store.h"

namespace yrd {

class LineBook {
 public:
  // `checkpoint_applied_max`: config store.lines_checkpoint_applied_max.
  explicit LineBook(uint64_t checkpoint_applied_max) : checkpoint_applied_max_(checkpoint_applied_max) {}

  // Reads the line ids (LoadIds, first) and then the lines of `open_days` as committed (the last
  // checkpoint completed by each partition's applied records after its marker). The loaded lines
  // count as changed, so the next checkpoint writes them whole; a new store checkpoints with its
  // first commit, so that every partition has a marker from the start.
  [[nodiscard]] absl::Status LoadIds(StateStore& store);
  [[nodiscard]] absl::Status LoadLines(StateStore& store, const std::vector<WindowDay>& open_days);

  // Before a batch: a batch with another registry than the last drops the cached routes.
  void BeginBatch(const std::shared_ptr<const Registry>& registry);
  // The line of a tap or a settlement in `day`, added when new.
  [[nodiscard]] uint32_t RouteLine(WindowDay day, const DecodedEvent& event);
  // The line numbered `line_id` (an original's) in `day`, added when new there.
  [[nodiscard]] uint32_t LineOfId(WindowDay day, uint32_t line_id);
  [[nodiscard]] uint32_t line_id(uint32_t line) const { return lines_[line].line_id; }
  // Marks a line changed since the last checkpoint and returns its totals.
  LineTotals& Touch(uint32_t line);

  [[nodiscard]] LineIds& line_ids() { return line_ids_; }
  // Numbers given since the last write: stored with the next one.
  [[nodiscard]] std::vector<uint32_t>& new_line_ids() { return new_line_ids_; }

  // Puts the new line numbers into `write`, and, when a checkpoint is due (`applied_count` more
  // events since the last, checkpoint_applied_max reached) or `window_closed`, every changed line
  // and every partition's marker: the lines include its commits up to its next offset as
  // `next_offsets` gives it once this write is stored. True when it checkpointed.
  bool AppendWrites(uint64_t applied_count, bool window_closed, const PartitionOffsets& next_offsets,
                    StateWriteBatch& write);
  // Forgets the lines of the windows `is_open` says no to (checkpointed by the commit that closed
  // them and never netted into again), so a daemon that runs for months holds only what the open
  // windows need. Only right after a checkpoint.
  void ForgetClosed(const std::function<bool(WindowDay)>& is_open);

  // Lines held in memory.
  [[nodiscard]] size_t lines_held() const { return lines_.size(); }

 private:
  struct LineEntry {
    WindowDay day = 0;
    uint32_t line_id = kNoLineId;
    LineTotals totals;
    bool dirty = false;  // changed since the last checkpoint
  };
  // A window's lines by number: position + 1 in lines_, 0 for none. Grown as numbers are given.
  struct WindowLines {
    WindowDay day = 0;
    std::vector<uint32_t> position_of_id;
  };
  // The line of `line_key` (without window) in `day`, added when new.
  [[nodiscard]] uint32_t LineOfKey(WindowDay day, std::string_view line_key);
  // The line numbered `line_id` in `day`, added when new.
  [[nodiscard]] uint32_t LineIndex(WindowDay day, uint32_t line_id);
  [[nodiscard]] WindowLines& LinesOf(WindowDay day);
  // Within one registry a tap's line follows from its merchant (whose bank is the merchant's
  // bank) and its issuing bank, and a settlement's from its institution (whose fund is the
  // institution's fund) and its insured fund: their places in the registry make the route.
  // nullopt when an entry is not the held registry's.
  [[nodiscard]] std::optional<uint64_t> RouteOf(const DecodedEvent& event) const;
  // The key of a line in kLines: its window, then its key text.
  void StoreKey(const LineEntry& entry, std::string& out) const;

  const uint64_t checkpoint_applied_max_;
  std::vector<LineEntry> lines_;
  std::vector<WindowLines> windows_;    // those with lines held, few: the open windows
  size_t last_window_ = 0;              // of windows_, the last one used
  LineIds line_ids_;                    // as loaded, plus those given since
  std::vector<uint32_t> new_line_ids_;  // given since the last write was built: stored with it
  absl::flat_hash_map<uint64_t, uint32_t> line_id_of_route_;
  std::shared_ptr<const Registry> routes_registry_;  // the registry of the routes
  std::vector<uint32_t> dirty_lines_;   // changed since the last checkpoint
  uint64_t applied_since_checkpoint_ = 0;
  bool checkpoint_due_ = false;         // a new store checkpoints with its first commit
  std::string key_scratch_;
  std::string value_scratch_;
};

}  // namespace yrd
