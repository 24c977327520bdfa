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
    for (const WindowLine& line : *lines) Touch(LineIndex(day, line.line_key)) = line.totals;
  }
  return absl::OkStatus();
}

void LineBook::BeginBatch(const std::shared_ptr<const Registry>& registry) {
  if (registry != routes_registry_) {
    routes_.clear();
    routes_registry_ = registry;
  }
}

uint32_t LineBook::LineIndex(WindowDay day, std::string_view line_key) {
  line_key_scratch_.clear();
  AppendBigEndian32(line_key_scratch_, WindowKeyBits(day));
  line_key_scratch_.append(line_key);
  if (const auto it = line_index_.find(std::string_view(line_key_scratch_)); it != line_index_.end()) {
    return it->second;
  }
  const auto index = static_cast<uint32_t>(lines_.size());
  LineEntry& entry = lines_.emplace_back();
  entry.store_key = line_key_scratch_;
  bool added = false;
  entry.line_id = line_ids_.IdOf(line_key, added);
  if (added) new_line_ids_.push_back(entry.line_id);
  line_index_.emplace(entry.store_key, index);
  return index;
}

uint32_t LineBook::RouteLine(WindowDay day, const DecodedEvent& event) {
  const bool tap = event.kind == EventKind::kTap;
  YRD_ASSERT(tap || event.kind == EventKind::kMedicalSettlement);
  auto build_key = [&] {
    if (tap) {
      TapLineKey(event, value_scratch_);
    } else {
      SettlementLineKey(event, value_scratch_);
    }
  };
  if (routes_registry_ == nullptr) {  // no registry held: by the key text
    build_key();
    return LineIndex(day, value_scratch_);
  }
  const LineRoute route = tap ? LineRoute{event.issuer_bank, event.merchant, event.merchant_bank, day}
                              : LineRoute{event.insured_fund, event.merchant, event.institution_fund, day};
  const auto [it, inserted] = routes_.try_emplace(route, 0);
  if (inserted) {
    build_key();
    it->second = LineIndex(day, value_scratch_);
  }
  return it->second;
}

uint32_t LineBook::LineOfId(WindowDay day, uint32_t line_id) {
  const std::optional<std::string_view> key = line_ids_.KeyOf(line_id);
  YRD_ASSERT(key.has_value());  // a record's number was checked when it was read
  return LineIndex(day, *key);
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
  std::sort(dirty_lines_.begin(), dirty_lines_.end(),
            [this](uint32_t a, uint32_t b) { return lines_[a].store_key < lines_[b].store_key; });
  for (const uint32_t index : dirty_lines_) {
    EncodeLineTotals(lines_[index].totals, value_scratch_);
    write.Put(Table::kLines, lines_[index].store_key, value_scratch_);
    lines_[index].dirty = false;
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
  std::vector<LineEntry> open_lines;
  line_index_.clear();
  for (LineEntry& entry : lines_) {
    const WindowDay day = WindowFromKeyBits(ReadBigEndian32(entry.store_key.data()));
    if (!is_open(day)) continue;
    line_index_.emplace(entry.store_key, static_cast<uint32_t>(open_lines.size()));
    open_lines.push_back(std::move(entry));
  }
  lines_ = std::move(open_lines);
  routes_.clear();  // its line numbers were positions in lines_
}

}  // namespace yrd
