// LargeTableAllocator: large allocations are huge-page aligned mappings, small ones come from
// the heap, and a hash map using it keeps every entry through its growth.
#include "engine/base/large_table.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"

namespace yrd {
namespace {

TEST(LargeTableAllocator, LargeAllocationStartsOnAHugePageAndSmallOnesWork) {
  std::vector<uint64_t, LargeTableAllocator<uint64_t>> large(kHugePageBytes / sizeof(uint64_t) + 1, 7);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(large.data()) % kHugePageBytes, 0u);
  large.back() = 9;  // the last byte past the first huge page is writable
  EXPECT_EQ(large.front(), 7u);
  EXPECT_EQ(large.back(), 9u);
  std::vector<uint64_t, LargeTableAllocator<uint64_t>> small(16, 3);
  EXPECT_EQ(small[15], 3u);
}

TEST(LargeTableAllocator, HashMapKeepsEveryEntryAsItGrowsPastHugePages) {
  absl::flat_hash_map<uint64_t, uint64_t, absl::Hash<uint64_t>, std::equal_to<>,
                      LargeTableAllocator<std::pair<const uint64_t, uint64_t>>>
      map;
  constexpr uint64_t kEntries = 300'000;  // about 8 MB of slots
  for (uint64_t i = 0; i < kEntries; ++i) map.emplace(i * 7919, i);
  ASSERT_EQ(map.size(), kEntries);
  for (uint64_t i = 0; i < kEntries; i += 997) {
    const auto it = map.find(i * 7919);
    ASSERT_NE(it, map.end());
    EXPECT_EQ(it->second, i);
  }
  map.clear();
  EXPECT_TRUE(map.empty());
}

}  // namespace
}  // namespace yrd
