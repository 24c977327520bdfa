// An allocator for the engine's large, randomly read in-memory tables (the ledger's index of
// recent transaction records: tens of megabytes). An allocation of at least kHugePageBytes is
// mapped on its own, aligned to a huge page and marked for transparent huge pages: such a table
// then costs tens of page faults instead of thousands as it fills, and its random reads miss the
// TLB far less. Where the kernel gives no huge pages the mapping works as any other. Smaller
// allocations come from the ordinary heap.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace yrd {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;

namespace large_table_internal {
[[nodiscard]] inline size_t MappedBytes(size_t bytes) { return (bytes + kHugePageBytes - 1) & ~(kHugePageBytes - 1); }

[[nodiscard]] inline void* Map(size_t bytes) {
  const size_t mapped = MappedBytes(bytes);
  // One huge page more than needed, so that an aligned start can be cut out of it.
  void* raw = ::mmap(nullptr, mapped + kHugePageBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePageBytes - 1) & ~(uintptr_t{kHugePageBytes} - 1);
  if (aligned > start) ::munmap(raw, aligned - start);
  const uintptr_t end = start + mapped + kHugePageBytes;
  if (end > aligned + mapped) ::munmap(reinterpret_cast<void*>(aligned + mapped), end - (aligned + mapped));
  (void)::madvise(reinterpret_cast<void*>(aligned), mapped, MADV_HUGEPAGE);  // a hint: refused is fine
  return reinterpret_cast<void*>(aligned);
}
}  // namespace large_table_internal

template <typename T>
struct LargeTableAllocator {
  using value_type = T;
  LargeTableAllocator() = default;
  template <typename U>
  explicit(false) LargeTableAllocator(const LargeTableAllocator<U>&) {}

  [[nodiscard]] T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePageBytes) return std::allocator<T>().allocate(n);
    return static_cast<T*>(large_table_internal::Map(bytes));
  }
  void deallocate(T* p, size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePageBytes) return std::allocator<T>().deallocate(p, n);
    ::munmap(p, large_table_internal::MappedBytes(bytes));
  }
  template <typename U>
  bool operator==(const LargeTableAllocator<U>&) const {
    return true;
  }
};

}  // namespace yrd
