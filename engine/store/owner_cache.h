// OwnerDayCache: the last entry one batch touched for each owner (source partition) in a day, so
// that a batch whose messages interleave many partitions finds each partition's counters, gross
// or applied-record buffer without a map lookup per message. It holds pointers into containers
// whose entries stay where they are (std::map values); the owner of the cache clears it whenever
// those may move or go (each batch, a window's close). Not thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <utility>

#include "engine/base/money.h"
#include "engine/store/records.h"

namespace yrd {

template <typename T>
class OwnerDayCache {
 public:
  // nullptr when nothing is cached for (`day`, `owner`).
  [[nodiscard]] T* Find(WindowDay day, SourcePartition owner) const {
    const size_t slot = Slot(owner);
    if (slot >= kSlots || slots_[slot].second == nullptr || slots_[slot].first != day) return nullptr;
    return slots_[slot].second;
  }
  void Put(WindowDay day, SourcePartition owner, T* entry) {
    const size_t slot = Slot(owner);
    if (slot < kSlots) slots_[slot] = {day, entry};  // an owner past the bounds is never cached
  }
  void Clear() { slots_.fill({0, nullptr}); }

 private:
  static constexpr size_t kSlots = static_cast<size_t>(kSourcePartitionsMax);
  [[nodiscard]] static size_t Slot(SourcePartition owner) {
    const auto topic = static_cast<size_t>(owner.topic);
    if (topic >= static_cast<size_t>(kSourceTopicsMax) || owner.partition < 0 ||
        owner.partition >= kSourcePartitionsPerTopicMax) {
      return kSlots;
    }
    return topic * static_cast<size_t>(kSourcePartitionsPerTopicMax) + static_cast<size_t>(owner.partition);
  }
  std::array<std::pair<WindowDay, T*>, kSlots> slots_{};
};

}  // namespace yrd
