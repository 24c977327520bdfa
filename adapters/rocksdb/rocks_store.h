// RocksStore: the engine's StateStore over RocksDB, one column family per Table. Writes go
// through the write-ahead log and are synced (WriteOptions::sync = true, chosen on purpose:
// a commit acknowledges Kafka offsets, so it must survive power loss). After a failed write
// every later write fails with the same status. Transaction records older than the dedup
// horizon are dropped by a compaction filter, which bounds the dedup state on disk. A write
// that would leave the disk with less than `min_free_bytes` fails (Unavailable) before RocksDB
// sees it; RocksDB's own log goes through InfoLog, which survives a full disk.
//
// Open() gives the single writer (the daemon; RocksDB's lock file keeps a second one out).
// OpenSecondary() gives a read-only follower for the report tools, which may run while the
// daemon writes: it sees the state as of its last CatchUp().
// Write: one thread (the commit thread); MultiGet: one thread (the ledger thread), which may
// run at the same time; IngestSorted: one thread, which may be a third. Get, Scan: any thread.
// IngestSorted writes a table file under <path>/ingest/ and hands it to RocksDB.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters/rocksdb/info_log.h"
#include "engine/store/state_store.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Cache;
class CompactionFilter;
struct ColumnFamilyOptions;
}  // namespace rocksdb

namespace yrd {

struct RocksStoreOptions {
  // Block cache shared by all tables, bytes. Holds the dedup filters and index blocks first.
  size_t block_cache_bytes = 512u << 20;
  // Bloom filter bits per key on the dedup table (10 gives about 1% false positives).
  int txn_bloom_bits_per_key = 10;
  // Sync the write-ahead log on every Write. Only benchmarks that measure the difference turn
  // this off; the daemon refuses to start without it.
  bool sync_writes = true;
  // Free space the store's file system must keep, bytes: a Write that finds less fails with
  // Unavailable before it reaches RocksDB, so a filling disk pauses the daemon with room left for
  // flushes, compactions and the report tools. 0 turns the check off (the disk then fills to
  // ENOSPC, which RocksDB reports as an error of its own). Config key store.min_free_mib.
  uint64_t min_free_bytes = 0;
  // Receives RocksDB's warnings and errors (background errors, recovery); may be empty.
  StoreWarningSink on_warning;
};

// Free bytes on the file system holding `path` (or its nearest existing parent).
[[nodiscard]] absl::StatusOr<uint64_t> FreeBytesAt(const std::string& path);

class RocksStore final : public StateStore {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RocksStore>> Open(const std::string& path,
                                                                         RocksStoreOptions options = {});
  // A read-only follower of the store at `path`; `secondary_path` is a scratch directory of
  // its own (its info log lives there).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RocksStore>> OpenSecondary(const std::string& path,
                                                                                  const std::string& secondary_path);
  ~RocksStore() override;

  [[nodiscard]] std::unique_ptr<StateWriteBatch> NewWriteBatch() override;
  [[nodiscard]] absl::Status Write(StateWriteBatch& batch) override;
  [[nodiscard]] absl::Status IngestSorted(
      Table table, std::span<const std::pair<std::string_view, std::string_view>> records) override;
  [[nodiscard]] absl::Status MultiGet(Table table, std::span<const std::string_view> keys,
                                      std::span<std::string> values, std::span<uint8_t> found) override;
  [[nodiscard]] absl::Status Get(Table table, std::string_view key, std::string& value, bool& found) override;
  [[nodiscard]] absl::Status Scan(
      Table table, std::string_view prefix, std::string_view start,
      const std::function<bool(std::string_view key, std::string_view value)>& visitor) override;

  // Secondary only: reads what the primary has written since.
  [[nodiscard]] absl::Status CatchUp();

  // Transaction records that occurred before this instant are dropped at compaction. The
  // daemon sets it from its clock minus the dedup horizon; 0 keeps everything.
  void SetHorizonStartMs(int64_t horizon_start_ms) { horizon_start_ms_->store(horizon_start_ms); }

  // Compacts the keys of `table` in [begin, end) (an empty bound is open) down to the bottom
  // level, so the horizon filter sees every transaction record there and deleted ranges give
  // their space back. Blocks the caller (RocksDB's compaction threads do the work, at low CPU
  // priority); Write and the readers go on meanwhile.
  [[nodiscard]] absl::Status CompactTable(Table table, std::string_view begin = {}, std::string_view end = {});

  // Makes a CompactTable running on another thread return early (with an error) and every later
  // one fail: for a stop that must not wait for a long compaction.
  void CancelManualCompactions();

  // Flushes memtables (all column families atomically) so a restart replays less log.
  [[nodiscard]] absl::Status Flush();

 private:
  struct Scratch;
  RocksStore();
  [[nodiscard]] absl::Status CheckFreeSpace() const;
  rocksdb::ColumnFamilyHandle* Handle(Table table) const { return handles_[static_cast<size_t>(table)]; }

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::vector<rocksdb::ColumnFamilyOptions> family_options_;  // IngestSorted builds table files with them
  uint64_t ingest_count_ = 0;               // names the files IngestSorted stages
  bool sync_writes_ = true;
  uint64_t min_free_bytes_ = 0;
  std::string path_;
  absl::Status failure_;
  std::unique_ptr<rocksdb::CompactionFilter> owned_filter_;
  std::unique_ptr<Scratch> scratch_;
  std::shared_ptr<std::atomic<int64_t>> horizon_start_ms_ = std::make_shared<std::atomic<int64_t>>(0);
};

}  // namespace yrd
