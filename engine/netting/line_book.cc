#include "engine/netting/line_book.h"

#include <algorithm>

#include "engine/base/assert.h"
#include "engine/readers/store_readers.h"

namespace yrd {

absl::Status LineBook::LoadIds(StateStore& store) {
  absl::StatusOr<LineIds> line_ids = LoadLineIds(store);
  if (!line_ids.ok()) return line_ids.status();
  line_ids_ = *std::move(line_ids);
  new_line_ids_.clear();
  return absl::OkStatus();
}

absl::Status LineBook::LoadLines(StateStore& store, const std::vector<WindowDay>& open_days) {
  absl::StatusOr<std::vector<SourcePartition>> owners = ListOwners(store);
  if (!owners.ok()) return owners.status();
  if (owners->empty()) checkpoint_due_ = true;
  // The lines of every window not closed yet, the ones the clock closes with the first batch
  // included: a close checkpoints them, so they must be whole in memory.
  for (const WindowDay day : open_days) {
    uint64_t replayed = 0;
    absl::StatusOr<std::vector<WindowLine>> lines = ReadWindowLines(store, day, &replayed, &line_ids_);
    if (!lines.ok()) return lines.status();
    applied_since_checkpoint_ += replayed;
    for (const WindowLine& line : *lines) Touch(LineOfKey(day, line.line_key)) = line.totals;
  }
  return absl::OkStatus();
}

void LineBook::BeginBatch(const std::shared_ptr<const Registry>& registry) {
  if (registry != routes_registry_) {
    line_id_of_route_.clear();
    routes_registry_ = registry;
  }
}

uint32_t LineBook::LineOfKey(WindowDay day, std::string_view line_key) {
  bool added = false;
  const uint32_t line_id = line_ids_.IdOf(line_key, added);
  if (added) new_line_ids_.push_back(line_id);
  return LineIndex(day, line_id);
}

LineBook::WindowLines& LineBook::LinesOf(WindowDay day) {
  if (last_window_ < windows_.size() && windows_[last_window_].day == day) return windows_[last_window_];
  for (last_window_ = 0; last_window_ < windows_.size(); ++last_window_) {
    if (windows_[last_window_].day == day) return windows_[last_window_];
  }
  WindowLines& added = windows_.emplace_back();
  added.day = day;
  return added;
}

uint32_t LineBook::LineIndex(WindowDay day, uint32_t line_id) {
  std::vector<uint32_t>& position_of_id = LinesOf(day).position_of_id;
  if (line_id >= position_of_id.size()) position_of_id.resize(std::max<size_t>(line_ids_.size(), line_id + size_t{1}), 0);
  uint32_t& position = position_of_id[line_id];
  if (position == 0) {
    YRD_ASSERT(lines_.size() < UINT32_MAX);
    lines_.push_back(LineEntry{.day = day, .line_id = line_id, .totals = {}, .dirty = false});
    position = static_cast<uint32_t>(lines_.size());
  }
  return position - 1;
}

void LineBook::StoreKey(const LineEntry& entry, std::string& out) const {
  out.clear();
  AppendBigEndian32(out, WindowKeyBits(entry.day));
  out.append(*line_ids_.KeyOf(entry.line_id));
}

std::optional<uint64_t> LineBook::RouteOf(const DecodedEvent& event) const {
  const Registry& registry = *routes_registry_;
  auto place = [](const auto* entry, const auto& entries) -> std::optional<uint64_t> {
    if (entry < entries.data() || entry >= entries.data() + entries.size()) return std::nullopt;
    return static_cast<uint64_t>(entry - entries.data());
  };
  const std::optional<uint64_t> merchant = place(event.merchant, registry.merchants());
  const std::optional<uint64_t> other = event.kind == EventKind::kTap ? place(event.issuer_bank, registry.banks())
                                                                      : place(event.insured_fund, registry.funds());
  if (!merchant || !other) return std::nullopt;
  // A registry holds fewer than 2^31 entries of a kind (its file would not fit in memory).
  return (*merchant << 32) | (*other << 1) | (event.kind == EventKind::kTap ? 0 : 1);
}

uint32_t LineBook::RouteLine(WindowDay day, const DecodedEvent& event) {
  const bool tap = event.kind == EventKind::kTap;
  YRD_ASSERT(tap || event.kind == EventKind::kMedicalSettlement);
  auto by_key_text = [&] {
    if (tap) {
      TapLineKey(event, value_scratch_);
    } else {
      SettlementLineKey(event, value_scratch_);
    }
    bool added = false;
    const uint32_t line_id = line_ids_.IdOf(value_scratch_, added);
    if (added) new_line_ids_.push_back(line_id);
    return line_id;
  };
  const std::optional<uint64_t> route = routes_registry_ ? RouteOf(event) : std::nullopt;
  if (!route) return LineIndex(day, by_key_text());
  const auto [it, inserted] = line_id_of_route_.try_emplace(*route, kNoLineId);
  if (inserted) it->second = by_key_text();
  return LineIndex(day, it->second);
}

uint32_t LineBook::LineOfId(WindowDay day, uint32_t line_id) {
  YRD_ASSERT(line_id < line_ids_.size());  // a record's number was checked when it was read
  return LineIndex(day, line_id);
}

LineTotals& LineBook::Touch(uint32_t line) {
  LineEntry& entry = lines_[line];
  if (!entry.dirty) {
    entry.dirty = true;
    dirty_lines_.push_back(line);
  }
  return entry.totals;
}

bool LineBook::AppendWrites(uint64_t applied_count, bool window_closed, const PartitionOffsets& next_offsets,
                            StateWriteBatch& write) {
  // Line numbers first used by this batch's records are stored with them.
  for (const uint32_t id : new_line_ids_) {
    LineIdKey(id, key_scratch_);
    write.Put(Table::kMeta, key_scratch_, *line_ids_.KeyOf(id));
  }
  new_line_ids_.clear();
  // The lines are checkpointed now and then, not with every commit: kApplied holds what the
  // commits in between add to them.
  applied_since_checkpoint_ += applied_count;
  if (!checkpoint_due_ && !window_closed && applied_since_checkpoint_ < checkpoint_applied_max_) return false;
  // In key order: the store's sorted in-memory table then inserts each line next to the previous
  // one instead of searching from the top.
  std::sort(dirty_lines_.begin(), dirty_lines_.end(), [this](uint32_t a, uint32_t b) {
    const LineEntry& x = lines_[a];
    const LineEntry& y = lines_[b];
    if (x.day != y.day) return WindowKeyBits(x.day) < WindowKeyBits(y.day);
    return *line_ids_.KeyOf(x.line_id) < *line_ids_.KeyOf(y.line_id);
  });
  for (const uint32_t index : dirty_lines_) {
    LineEntry& entry = lines_[index];
    StoreKey(entry, key_scratch_);
    EncodeLineTotals(entry.totals, value_scratch_);
    write.Put(Table::kLines, key_scratch_, value_scratch_);
    entry.dirty = false;
  }
  dirty_lines_.clear();
  // The lines are whole now through every partition's commit this write stores.
  for (const auto& [topic_partition, next] : next_offsets) {
    LinesThroughKey({topic_partition.first, topic_partition.second}, key_scratch_);
    value_scratch_.clear();
    AppendBigEndian64(value_scratch_, static_cast<uint64_t>(next));
    write.Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  applied_since_checkpoint_ = 0;
  checkpoint_due_ = false;
  return true;
}

void LineBook::ForgetClosed(const std::function<bool(WindowDay)>& is_open) {
  YRD_ASSERT(dirty_lines_.empty());  // just checkpointed
  std::erase_if(windows_, [&](const WindowLines& window) { return !is_open(window.day); });
  last_window_ = 0;
  std::vector<LineEntry> open_lines;
  for (const LineEntry& entry : lines_) {
    if (!is_open(entry.day)) continue;
    open_lines.push_back(entry);
    LinesOf(entry.day).position_of_id[entry.line_id] = static_cast<uint32_t>(open_lines.size());
  }
  lines_ = std::move(open_lines);
}

}  // namespace yrd
