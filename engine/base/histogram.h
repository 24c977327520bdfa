// LatencyHistogram: a fixed-bucket histogram of microsecond latencies, recorded by one thread
// and read by any (relaxed atomics: a reader sees a consistent-enough snapshot for metrics).
// Buckets are powers of two from 1 us to about 67 s; quantiles are the bucket's upper bound.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

namespace yrd {

class LatencyHistogram {
 public:
  static constexpr size_t kBucketCount = 27;  // upper bounds 2^0 .. 2^26 us

  void Record(int64_t latency_us) {
    const uint64_t value = latency_us <= 1 ? 1 : static_cast<uint64_t>(latency_us);
    size_t bucket = static_cast<size_t>(std::bit_width(value - 1));
    if (bucket >= kBucketCount) bucket = kBucketCount - 1;
    counts_[bucket].fetch_add(1, std::memory_order_relaxed);
    sum_us_.fetch_add(static_cast<uint64_t>(latency_us), std::memory_order_relaxed);
  }
  // Adds what `other` recorded (a sum over several recorders, for the metrics).
  void Add(const LatencyHistogram& other) {
    for (size_t i = 0; i < kBucketCount; ++i) counts_[i].fetch_add(other.BucketCount(i), std::memory_order_relaxed);
    sum_us_.fetch_add(other.SumUs(), std::memory_order_relaxed);
  }
  [[nodiscard]] static constexpr int64_t BucketUpperBoundUs(size_t bucket) { return int64_t{1} << bucket; }
  [[nodiscard]] uint64_t BucketCount(size_t bucket) const { return counts_[bucket].load(std::memory_order_relaxed); }
  [[nodiscard]] uint64_t SumUs() const { return sum_us_.load(std::memory_order_relaxed); }
  [[nodiscard]] uint64_t TotalCount() const {
    uint64_t total = 0;
    for (const auto& c : counts_) total += c.load(std::memory_order_relaxed);
    return total;
  }
  // The upper bound of the bucket holding quantile `q` (0 < q <= 1); 0 when empty.
  [[nodiscard]] int64_t QuantileUpperBoundUs(double q) const {
    const uint64_t total = TotalCount();
    if (total == 0) return 0;
    const auto rank = static_cast<uint64_t>(q * static_cast<double>(total) + 0.999999);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBucketCount; ++i) {
      seen += BucketCount(i);
      if (seen >= rank) return BucketUpperBoundUs(i);
    }
    return BucketUpperBoundUs(kBucketCount - 1);
  }

 private:
  std::array<std::atomic<uint64_t>, kBucketCount> counts_{};
  std::atomic<uint64_t> sum_us_{0};
};

}  // namespace yrd
