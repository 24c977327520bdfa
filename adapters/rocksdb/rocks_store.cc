#include "adapters/rocksdb/rocks_store.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>

#include "engine/base/strings.h"
#include "rocksdb/cache.h"
#include "rocksdb/compaction_filter.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/listener.h"
#include "rocksdb/perf_level.h"
#include "rocksdb/sst_file_manager.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"

namespace yrd {
namespace {

constexpr std::array<const char*, kTableCount> kColumnFamilyNames = {
    "default", "txn", "lines", "applied", "exceptions", "recent_txn"};
// Where IngestSorted stages its table files; anything left there by a crash is removed at open.
constexpr std::string_view kIngestDirectory = "ingest";
// How many records ahead IngestSorted asks for the memory of the ones it will write.
constexpr size_t kIngestPrefetchAhead = 16;

absl::Status FromRocks(const rocksdb::Status& status, std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  const std::string message = Cat(what, ": ", status.ToString());
  if (status.IsNoSpace() || status.IsBusy() || status.IsTimedOut() || status.IsTryAgain()) {
    return absl::UnavailableError(message);  // retrying after the cause is gone is safe
  }
  if (status.IsCorruption()) return absl::DataLossError(message);
  if (status.IsIOError()) return absl::UnavailableError(message);
  if (status.IsInvalidArgument() || status.IsNotSupported()) return absl::FailedPreconditionError(message);
  return absl::InternalError(message);
}

rocksdb::Slice ToSlice(std::string_view s) { return {s.data(), s.size()}; }

// RocksDB counts every key comparison and block read of a thread in a thread-local perf
// context unless told not to; nothing reads those counts here, and on the ledger thread they
// cost a twentieth of its time. The level is per thread, so each calling thread sets it once.
void DisablePerfCountersOnThisThread() {
  thread_local bool disabled = false;
  if (disabled) return;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  disabled = true;
}

// Drops transaction records older than the dedup horizon.
class HorizonFilter final : public rocksdb::CompactionFilter {
 public:
  explicit HorizonFilter(std::shared_ptr<std::atomic<int64_t>> horizon_start_ms)
      : horizon_start_ms_(std::move(horizon_start_ms)) {}
  bool Filter(int /*level*/, const rocksdb::Slice& /*key*/, const rocksdb::Slice& value, std::string* /*new_value*/,
              bool* /*value_changed*/) const override {
    const int64_t horizon_start_ms = horizon_start_ms_->load(std::memory_order_relaxed);
    if (horizon_start_ms == 0) return false;
    const std::optional<int64_t> occurred_at_ms = TxnRecordOccurredAt({value.data(), value.size()});
    return occurred_at_ms.has_value() && *occurred_at_ms < horizon_start_ms;
  }
  const char* Name() const override { return "yrd.HorizonFilter"; }

 private:
  std::shared_ptr<std::atomic<int64_t>> horizon_start_ms_;
};

// Reports RocksDB's background errors and the end of its own recovery from them (with an
// SstFileManager, RocksDB retries a "no space" error of a flush or compaction by itself once
// space returns).
class ErrorListener final : public rocksdb::EventListener {
 public:
  explicit ErrorListener(StoreWarningSink sink) : sink_(std::move(sink)) {}
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* error) override {
    static constexpr const char* kReasons[] = {"flush", "compaction", "write", "memtable", "manifest write",
                                               "flush without WAL", "manifest write without WAL"};
    const auto index = static_cast<size_t>(reason);
    sink_(kBackgroundError, Cat("RocksDB stopped writes after a failed ",
                                index < std::size(kReasons) ? kReasons[index] : "operation", ": ",
                                error != nullptr ? error->ToString() : std::string("unknown error")));
  }
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    if (info.new_bg_error.ok()) {
      sink_(kRecovered, Cat("RocksDB recovered from ", info.old_bg_error.ToString()));
    } else {
      sink_(kRecoveryFailed, Cat("RocksDB could not recover from ", info.old_bg_error.ToString(), ": ",
                                 info.new_bg_error.ToString()));
    }
  }

 private:
  StoreWarningSink sink_;
};

class RocksWriteBatch final : public StateWriteBatch {
 public:
  explicit RocksWriteBatch(const std::vector<rocksdb::ColumnFamilyHandle*>& handles) : handles_(handles) {}
  void Put(Table table, std::string_view key, std::string_view value) override {
    // A Status of WriteBatch::Put only reports a batch over its size limit, which is not set.
    const rocksdb::Status status = batch_.Put(handles_[static_cast<size_t>(table)], ToSlice(key), ToSlice(value));
    if (!status.ok() && first_error_.ok()) first_error_ = status;
  }
  void Delete(Table table, std::string_view key) override {
    const rocksdb::Status status = batch_.Delete(handles_[static_cast<size_t>(table)], ToSlice(key));
    if (!status.ok() && first_error_.ok()) first_error_ = status;
  }
  void DeleteRange(Table table, std::string_view begin, std::string_view end) override {
    const rocksdb::Status status =
        batch_.DeleteRange(handles_[static_cast<size_t>(table)], ToSlice(begin), ToSlice(end));
    if (!status.ok() && first_error_.ok()) first_error_ = status;
  }
  void Clear() override {
    batch_.Clear();
    first_error_ = rocksdb::Status::OK();
  }
  [[nodiscard]] size_t size_bytes() const override { return batch_.GetDataSize(); }

  rocksdb::WriteBatch batch_;
  rocksdb::Status first_error_;

 private:
  const std::vector<rocksdb::ColumnFamilyHandle*>& handles_;
};

struct Configured {
  rocksdb::DBOptions db;
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
};

Configured Configure(const RocksStoreOptions& options) {
  Configured c;
  c.db.create_if_missing = true;
  c.db.create_missing_column_families = true;
  c.db.atomic_flush = true;
  c.db.max_background_jobs = 2;
  c.db.bytes_per_sync = 1 << 20;
  c.db.max_total_wal_size = 1u << 30;
  c.db.keep_log_file_num = 5;
  // Compactions check the space they need before starting, and RocksDB recovers from a
  // background "no space" error by itself once space returns.
  c.db.sst_file_manager.reset(rocksdb::NewSstFileManager(rocksdb::Env::Default()));
  std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(options.block_cache_bytes);

  auto base = [&](int bloom_bits) {
    rocksdb::ColumnFamilyOptions cf;
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = cache;
    table.cache_index_and_filter_blocks = true;
    table.pin_l0_filter_and_index_blocks_in_cache = true;
    if (bloom_bits > 0) table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(bloom_bits));
    cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    // Flushes and upper levels stay uncompressed (compressing each flush cost the ingest path
    // about a tenth of its CPU); the bottom level, where data settles, is LZ4-compressed.
    cf.compression = rocksdb::kNoCompression;
    cf.bottommost_compression = rocksdb::kLZ4Compression;
    cf.level_compaction_dynamic_level_bytes = true;
    return cf;
  };
  rocksdb::ColumnFamilyOptions meta = base(10);
  // The dedup table is filled by IngestSorted, not through its in-memory table (only a store
  // written before that has records there), so it keeps RocksDB's defaults for the latter.
  rocksdb::ColumnFamilyOptions txn = base(options.txn_bloom_bits_per_key);
  rocksdb::ColumnFamilyOptions lines = base(10);
  rocksdb::ColumnFamilyOptions applied = base(0);
  applied.write_buffer_size = 64u << 20;
  // No integrated blob files here, though the values are large: RocksDB 7.8's secondary
  // instance (the report tools) crashes reading blob values (BlobSource::GetBlob while building
  // the blob cache key), so the applied blobs stay inline in the table files.
  rocksdb::ColumnFamilyOptions exceptions = base(0);
  // One value per commit, read back only at start and deleted once sorted into kTxn.
  rocksdb::ColumnFamilyOptions recent_txn = base(0);
  recent_txn.write_buffer_size = 64u << 20;

  c.families.emplace_back(kColumnFamilyNames[0], meta);
  c.families.emplace_back(kColumnFamilyNames[1], txn);
  c.families.emplace_back(kColumnFamilyNames[2], lines);
  c.families.emplace_back(kColumnFamilyNames[3], applied);
  c.families.emplace_back(kColumnFamilyNames[4], exceptions);
  c.families.emplace_back(kColumnFamilyNames[5], recent_txn);
  return c;
}

}  // namespace

struct RocksStore::Scratch {
  std::vector<rocksdb::Slice> slices;
  // Never moved: RocksDB 7.8's PinnableSlice move leaves the target's buffer pointer unset when
  // the source was pinned, so a std::vector growing over pinned slices corrupts them. It grows
  // by allocating fresh slices instead.
  std::unique_ptr<rocksdb::PinnableSlice[]> pinned;
  size_t pinned_capacity = 0;
  std::vector<rocksdb::Status> statuses;
  std::vector<std::pair<OrderPrefix, uint32_t>> order;  // MultiGet's keys in key order
};

absl::StatusOr<std::unique_ptr<RocksStore>> RocksStore::Open(const std::string& path, RocksStoreOptions options) {
  std::unique_ptr<RocksStore> store(new RocksStore());
  Configured c = Configure(options);
  // The filter is shared by every compaction (it is stateless apart from the atomic) and must
  // outlive the DB, which the destructor closes first.
  auto* filter = new HorizonFilter(store->horizon_start_ms_);
  c.families[static_cast<size_t>(Table::kTxn)].options.compaction_filter = filter;
  store->owned_filter_.reset(filter);
  store->sync_writes_ = options.sync_writes;
  store->min_free_bytes_ = options.min_free_bytes;
  store->path_ = path;
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) return absl::UnavailableError(Cat("creating the state store directory ", path, ": ", error.message()));
  c.db.info_log = NewInfoLog(path, options.on_warning);
  if (options.on_warning) c.db.listeners.push_back(std::make_shared<ErrorListener>(options.on_warning));
  std::filesystem::remove_all(std::filesystem::path(path) / kIngestDirectory, error);
  if (error) return absl::UnavailableError(Cat("clearing ", path, "/", kIngestDirectory, ": ", error.message()));
  for (const rocksdb::ColumnFamilyDescriptor& family : c.families) store->family_options_.push_back(family.options);
  // Compactions yield the CPU to the pipeline's threads: on a busy machine the ingest path comes
  // first, and RocksDB slows writes by itself if compactions fall too far behind.
  (void)rocksdb::Env::Default()->LowerThreadPoolCPUPriority(rocksdb::Env::Priority::LOW, rocksdb::CpuPriority::kLow);
  rocksdb::DB* db = nullptr;
  rocksdb::Status status = rocksdb::DB::Open(c.db, path, c.families, &store->handles_, &db);
  if (!status.ok()) {
    return FromRocks(status, Cat("opening the state store at ", path,
                                 " (is another clearingd using it? is the disk full or read-only?)"));
  }
  store->db_.reset(db);
  return store;
}

absl::StatusOr<std::unique_ptr<RocksStore>> RocksStore::OpenSecondary(const std::string& path,
                                                                       const std::string& secondary_path) {
  std::unique_ptr<RocksStore> store(new RocksStore());
  RocksStoreOptions options;
  options.block_cache_bytes = 64u << 20;
  Configured c = Configure(options);
  c.db.max_open_files = -1;  // required for a secondary instance
  c.db.sst_file_manager.reset();  // a follower deletes nothing and recovers nothing
  c.db.create_if_missing = false;
  rocksdb::DB* db = nullptr;
  rocksdb::Status status = rocksdb::DB::OpenAsSecondary(c.db, path, secondary_path, c.families, &store->handles_, &db);
  if (!status.ok()) {
    return FromRocks(status, Cat("opening the state store at ", path, " for reading (does it exist?)"));
  }
  store->db_.reset(db);
  store->failure_ = absl::FailedPreconditionError("this store was opened read-only (secondary)");
  return store;
}

RocksStore::RocksStore() : scratch_(std::make_unique<Scratch>()) {}

RocksStore::~RocksStore() {
  if (db_ == nullptr) return;
  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    (void)db_->DestroyColumnFamilyHandle(handle);
  }
  (void)db_->Close();
  db_.reset();
  owned_filter_.reset();
}

std::unique_ptr<StateWriteBatch> RocksStore::NewWriteBatch() { return std::make_unique<RocksWriteBatch>(handles_); }

absl::Status RocksStore::CheckFreeSpace() const {
  if (min_free_bytes_ == 0) return absl::OkStatus();
  const absl::StatusOr<uint64_t> free_bytes = FreeBytesAt(path_);
  if (!free_bytes.ok()) return free_bytes.status();
  if (*free_bytes < min_free_bytes_) {
    return absl::UnavailableError(Cat("the state store's disk has ", *free_bytes / (1u << 20),
                                      " MiB free, below store.min_free_mib (", min_free_bytes_ / (1u << 20),
                                      " MiB); nothing was written"));
  }
  return absl::OkStatus();
}

absl::Status RocksStore::Write(StateWriteBatch& batch) {
  if (!failure_.ok()) return failure_;
  if (absl::Status s = CheckFreeSpace(); !s.ok()) {
    failure_ = std::move(s);
    return failure_;
  }
  auto& rocks_batch = static_cast<RocksWriteBatch&>(batch);
  if (!rocks_batch.first_error_.ok()) {
    failure_ = FromRocks(rocks_batch.first_error_, "building a state write");
    return failure_;
  }
  DisablePerfCountersOnThisThread();
  rocksdb::WriteOptions write_options;
  write_options.sync = sync_writes_;
  const rocksdb::Status status = db_->Write(write_options, &rocks_batch.batch_);
  if (!status.ok()) {
    failure_ = FromRocks(status, "writing the state store (nothing of this batch is acknowledged)");
    return failure_;
  }
  return absl::OkStatus();
}

absl::Status RocksStore::IngestSorted(Table table,
                                      std::span<const std::pair<std::string_view, std::string_view>> records) {
  if (records.empty()) return absl::OkStatus();
  if (absl::Status s = CheckFreeSpace(); !s.ok()) return s;
  const std::filesystem::path directory = std::filesystem::path(path_) / kIngestDirectory;
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error) return absl::UnavailableError(Cat("creating ", directory.string(), ": ", error.message()));
  const std::string file = (directory / Cat(kColumnFamilyNames[static_cast<size_t>(table)], "-",
                                            ++ingest_count_, ".sst")).string();
  rocksdb::Options file_options(rocksdb::DBOptions(), family_options_[static_cast<size_t>(table)]);
  // Uncompressed, like a flush: the file goes to level 0, and compaction compresses at the bottom.
  file_options.compression = rocksdb::kNoCompression;
  file_options.bottommost_compression = rocksdb::kNoCompression;
  // The file stays in the page cache: the dedup lookups of the next batches read it at once
  // (a bloom filter's false positive reads a data block), and dropping it made each such read a
  // disk read on the ledger thread.
  rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), file_options, Handle(table), /*invalidate_page_cache=*/false);
  rocksdb::Status status = writer.Open(file);
  for (size_t i = 0; status.ok() && i < records.size(); ++i) {
    // In key order the records lie anywhere in memory: ask for them a few ahead.
    if (i + kIngestPrefetchAhead < records.size()) {
      __builtin_prefetch(records[i + kIngestPrefetchAhead].first.data());
      __builtin_prefetch(records[i + kIngestPrefetchAhead].second.data());
    }
    status = writer.Put(ToSlice(records[i].first), ToSlice(records[i].second));
  }
  if (status.ok()) status = writer.Finish();  // syncs the file
  if (status.ok()) {
    rocksdb::IngestExternalFileOptions options;
    options.move_files = true;  // linked into the store, then the staged name is removed
    status = db_->IngestExternalFile(Handle(table), {file}, options);
  }
  std::filesystem::remove(file, error);  // already gone after a successful ingestion
  return FromRocks(status, Cat("storing ", records.size(), " sorted records into ",
                               kColumnFamilyNames[static_cast<size_t>(table)]));
}

absl::Status RocksStore::MultiGet(Table table, std::span<const std::string_view> keys, std::span<std::string> values,
                                  std::span<uint8_t> found) {
  DisablePerfCountersOnThisThread();
  const size_t count = keys.size();
  std::vector<rocksdb::Slice>& slices_ = scratch_->slices;
  std::vector<rocksdb::Status>& statuses_ = scratch_->statuses;
  if (scratch_->pinned_capacity < count) {
    scratch_->pinned.reset(new rocksdb::PinnableSlice[count]);
    scratch_->pinned_capacity = count;
  }
  rocksdb::PinnableSlice* pinned_ = scratch_->pinned.get();
  slices_.resize(count);
  statuses_.resize(count);
  // The keys go in sorted (RocksDB would sort them itself, comparing through pointers); the
  // sort compares inline prefixes first.
  std::vector<std::pair<OrderPrefix, uint32_t>>& order = scratch_->order;
  order.resize(count);
  for (size_t i = 0; i < count; ++i) order[i] = {OrderPrefixOf(keys[i]), static_cast<uint32_t>(i)};
  std::sort(order.begin(), order.end(), [&keys](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return keys[a.second] < keys[b.second];
  });
  for (size_t j = 0; j < count; ++j) {
    slices_[j] = ToSlice(keys[order[j].second]);
    pinned_[j].Reset();
  }
  db_->MultiGet(rocksdb::ReadOptions(), Handle(table), count, slices_.data(), pinned_, statuses_.data(),
                /*sorted_input=*/true);
  for (size_t j = 0; j < count; ++j) {
    const uint32_t i = order[j].second;
    if (statuses_[j].ok()) {
      values[i].assign(pinned_[j].data(), pinned_[j].size());
      found[i] = 1;
    } else if (statuses_[j].IsNotFound()) {
      found[i] = 0;
    } else {
      for (size_t k = 0; k < count; ++k) pinned_[k].Reset();
      return FromRocks(statuses_[j], "reading the dedup state");
    }
  }
  // Release the pins now rather than at the next call: a pin holds a memtable or cache block.
  for (size_t i = 0; i < count; ++i) pinned_[i].Reset();
  return absl::OkStatus();
}

absl::Status RocksStore::Get(Table table, std::string_view key, std::string& value, bool& found) {
  const rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), Handle(table), ToSlice(key), &value);
  found = status.ok();
  if (status.ok() || status.IsNotFound()) return absl::OkStatus();
  return FromRocks(status, "reading the state store");
}

absl::Status RocksStore::Scan(Table table, std::string_view prefix, std::string_view start,
                              const std::function<bool(std::string_view, std::string_view)>& visitor) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), Handle(table)));
  const std::string_view seek = start.empty() ? prefix : start;
  for (it->Seek(ToSlice(seek)); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    if (!key.starts_with(prefix)) break;
    if (!visitor(key, std::string_view(it->value().data(), it->value().size()))) break;
  }
  return FromRocks(it->status(), "scanning the state store");
}

absl::Status RocksStore::CatchUp() { return FromRocks(db_->TryCatchUpWithPrimary(), "following the daemon's store"); }

absl::Status RocksStore::Flush() {
  rocksdb::FlushOptions options;
  options.wait = true;
  return FromRocks(db_->Flush(options, handles_), "flushing the state store");
}

absl::Status RocksStore::CompactTable(Table table, std::string_view begin, std::string_view end) {
  rocksdb::CompactRangeOptions options;
  // The bottom level too: that is where old records settle, and only a compaction filters them.
  // kForceOptimized: the bottom level is rewritten, but not the files this compaction wrote there.
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  options.exclusive_manual_compaction = false;  // flushes and other compactions go on meanwhile
  const rocksdb::Slice begin_slice(begin.data(), begin.size()), end_slice(end.data(), end.size());
  const rocksdb::Status status = db_->CompactRange(options, Handle(table), begin.empty() ? nullptr : &begin_slice,
                                                   end.empty() ? nullptr : &end_slice);
  return FromRocks(status, Cat("compacting table ", kColumnFamilyNames[static_cast<size_t>(table)]));
}

void RocksStore::CancelManualCompactions() { db_->DisableManualCompaction(); }

absl::StatusOr<uint64_t> FreeBytesAt(const std::string& path) {
  std::filesystem::path probe(path);
  std::error_code error;
  while (!std::filesystem::exists(probe, error) && probe.has_parent_path() && probe != probe.parent_path()) {
    probe = probe.parent_path();
  }
  struct statvfs info {};
  if (::statvfs(probe.c_str(), &info) != 0) {
    return absl::UnavailableError(Cat("cannot read the free space of ", probe.string(), ": ", std::strerror(errno)));
  }
  return static_cast<uint64_t>(info.f_bavail) * info.f_frsize;
}

}  // namespace yrd
