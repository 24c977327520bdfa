// StateStore: the interface the engine needs from its durable store (implemented over RocksDB
// in adapters/rocksdb). Keys and values are the records of engine/store/records.h.
// A store is used by one writer thread (the ledger's commit thread); readers on other threads
// may call Get, MultiGet and Scan concurrently, and one other thread may call IngestSorted.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "engine/store/records.h"

namespace yrd {

// A set of puts and deletes applied atomically by StateStore::Write. Not thread-safe.
class StateWriteBatch {
 public:
  virtual ~StateWriteBatch() = default;
  virtual void Put(Table table, std::string_view key, std::string_view value) = 0;
  virtual void Delete(Table table, std::string_view key) = 0;
  // Deletes every key of `table` in [begin, end).
  virtual void DeleteRange(Table table, std::string_view begin, std::string_view end) = 0;
  virtual void Clear() = 0;
  [[nodiscard]] virtual size_t size_bytes() const = 0;
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  [[nodiscard]] virtual std::unique_ptr<StateWriteBatch> NewWriteBatch() = 0;

  // Applies `batch` atomically and durably (the write-ahead log is synced before it returns
  // OK). After a failed write every later write fails too, so an indeterminate state is never
  // written over; the process must reopen the store to go on.
  [[nodiscard]] virtual absl::Status Write(StateWriteBatch& batch) = 0;

  // Adds `records` to `table` in one step, replacing older values of the same keys; durable
  // when it returns OK. Keys must be strictly increasing. It bypasses the write path (no log,
  // no in-memory table), which makes it the cheap way to store a large sorted set. Runs on any
  // thread, at the same time as Write; concurrent calls are not allowed.
  [[nodiscard]] virtual absl::Status IngestSorted(
      Table table, std::span<const std::pair<std::string_view, std::string_view>> records) = 0;

  // Point lookups in one table; `values[i]` holds the value when `found[i]` is 1.
  [[nodiscard]] virtual absl::Status MultiGet(Table table, std::span<const std::string_view> keys,
                                              std::span<std::string> values, std::span<uint8_t> found) = 0;
  [[nodiscard]] virtual absl::Status Get(Table table, std::string_view key, std::string& value, bool& found) = 0;

  // Visits, in key order, the keys of `table` that start with `prefix` and are >= `start`
  // (when not empty); stops early when `visitor` returns false.
  [[nodiscard]] virtual absl::Status Scan(
      Table table, std::string_view prefix, std::string_view start,
      const std::function<bool(std::string_view key, std::string_view value)>& visitor) = 0;
};

}  // namespace yrd
