// Engine core throughput: events already in memory as FlatBuffers (an event file written by
// `clearing-gen day --out`), through the real pipeline (verification, validation, card
// tokens, dedup, netting) into a real RocksDB store with a synced commit per batch. Prints
// events/s, commit latency and the store's size; with --oracle it also checks the result
// against the generator's oracle and exits 1 on any difference.
//
//   engine_throughput --events day.bin --registry reg.toml --oracle oracle.json [--store DIR]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "CLI/CLI.hpp"
#include "adapters/crypto/hmac.h"
#include "adapters/fs/file_set.h"
#include "adapters/rocksdb/rocks_store.h"
#include "engine/clearing/clearing_files.h"
#include "engine/clearing/positions.h"
#include "engine/event/event_file.h"
#include "engine/ledger/ledger.h"
#include "engine/pipeline/pipeline.h"
#include "engine/readers/store_readers.h"
#include "nlohmann/json.hpp"
#include "xxhash.h"

namespace yrd {
namespace {

// Replays an event file as if it came from Kafka: partition by key hash, offsets in order.
class MemorySource final : public MessageSource {
 public:
  MemorySource(std::vector<EventRecord> records, int partitions) : records_(std::move(records)), next_offset_(partitions * 2, 0) {
    partitions_ = partitions;
  }
  absl::Status Fill(Batch& batch, std::chrono::milliseconds) override {
    while (position_ < records_.size() && !batch.full()) {
      const EventRecord& r = records_[position_];
      const SourceTopic topic = r.topic == kMedicalTopic ? SourceTopic::kMedical : SourceTopic::kTaps;
      const size_t copied = r.payload.size() > 65'536 ? 0 : r.payload.size();
      if (!batch.HasRoomFor(r.key.size(), copied)) break;
      const int32_t partition = static_cast<int32_t>(XXH3_64bits(r.key.data(), r.key.size()) % static_cast<uint64_t>(partitions_));
      int64_t& offset = next_offset_[static_cast<size_t>(topic) * static_cast<size_t>(partitions_) + static_cast<size_t>(partition)];
      batch.Add(topic, partition, offset++, r.key, r.payload, 65'536);
      ++position_;
    }
    if (position_ == records_.size() && on_drained_) on_drained_();
    return absl::OkStatus();
  }
  absl::Status OnCommitted(const Batch&) override { return absl::OkStatus(); }
  void OnDrained(std::function<void()> f) { on_drained_ = std::move(f); }

 private:
  std::vector<EventRecord> records_;
  int partitions_;
  std::vector<int64_t> next_offset_;
  size_t position_ = 0;
  std::function<void()> on_drained_;
};

uint64_t DirectoryBytes(const std::string& path) {
  uint64_t total = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(path)) {
    if (entry.is_regular_file()) total += entry.file_size();
  }
  return total;
}

int Main(int argc, char** argv) {
  CLI::App app{"engine core throughput: in-memory events through the pipeline into RocksDB"};
  std::string events_path, registry_path, oracle_path, store_path;
  size_t batch_messages_max = 16'384;
  bool no_sync = false;
  bool close_window = false;
  app.add_option("--events", events_path, "event file from clearing-gen day --out")->required();
  app.add_option("--registry", registry_path, "registry the events were generated with")->required();
  app.add_option("--oracle", oracle_path, "oracle JSON to check the result against");
  app.add_option("--store", store_path, "store directory (default: a fresh temporary one)");
  app.add_option("--batch-messages-max", batch_messages_max, "messages per commit at most");
  uint64_t recent_txn_records_max = LedgerOptions{}.recent_txn_records_max;
  app.add_option("--recent-txn-records", recent_txn_records_max,
                 "transaction records kept in memory before a sort into the dedup table")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));
  app.add_flag("--close", close_window,
               "after ingest, close the generated day's window and write all its clearing files (timed)");
  app.add_flag("--no-sync", no_sync, "do not sync the WAL per commit (to measure what syncing costs)");
  CLI11_PARSE(app, argc, argv);

  auto reader = EventFileReader::Open(events_path);
  if (!reader.ok()) return std::cerr << reader.status() << "\n", 2;
  auto records = reader->ReadAll();
  if (!records.ok()) return std::cerr << records.status() << "\n", 2;
  auto registry = Registry::FromFile(registry_path);
  if (!registry.ok()) return std::cerr << registry.status() << "\n", 2;
  int64_t clock_ms = 0;
  nlohmann::json oracle;
  if (!oracle_path.empty()) {
    std::ifstream in(oracle_path);
    oracle = nlohmann::json::parse(in);
    clock_ms = oracle.at("clock_fixed_ms").get<int64_t>();
  } else {
    return std::cerr << "--oracle is needed for the clock of the generated day\n", 2;
  }
  std::string scratch;
  if (store_path.empty()) {
    char pattern[] = "/tmp/yrd-bench-XXXXXX";
    scratch = ::mkdtemp(pattern);
    store_path = scratch + "/state";
  }
  const size_t message_count = records->size();
  {
    RocksStoreOptions store_options;
    store_options.sync_writes = !no_sync;
    auto store = RocksStore::Open(store_path, store_options);
    if (!store.ok()) return std::cerr << store.status() << "\n", 2;
    LedgerOptions ledger_options;
    ledger_options.recent_txn_records_max = recent_txn_records_max;
    Ledger ledger(**store, ledger_options);
    if (absl::Status s = ledger.Load(clock_ms); !s.ok()) return std::cerr << s << "\n", 2;
    auto tokenizer = HmacSha256::Create("benchmark-card-token-key");
    MemorySource source(*std::move(records), 16);
    ManualClock clock(clock_ms);
    RegistryHolder holder(*registry);
    PipelineOptions options;
    options.batch.messages_max = batch_messages_max;
    Pipeline pipeline(options, source, ledger, clock, holder, **tokenizer);
    source.OnDrained([&] { pipeline.RequestStop(); });
    const auto start = std::chrono::steady_clock::now();
    absl::Status status = pipeline.Run();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!status.ok()) return std::cerr << status << "\n", 1;
    const PipelineStats& stats = pipeline.stats();
    std::printf("messages=%zu seconds=%.3f events_per_s=%.0f batches=%lu sync=%s\n", message_count, seconds,
                static_cast<double>(message_count) / seconds,
                static_cast<unsigned long>(stats.committed_batch_count.load()), no_sync ? "off" : "on");
    std::printf("commit_latency_us_p50<=%ld commit_latency_us_p99<=%ld store_write_bytes=%lu\n",
                static_cast<long>(stats.commit_latency_us.QuantileUpperBoundUs(0.5)),
                static_cast<long>(stats.commit_latency_us.QuantileUpperBoundUs(0.99)),
                static_cast<unsigned long>(stats.store_bytes.load()));
    std::printf("recent_txn_sorts=%lu recent_txn_records=%lu\n", static_cast<unsigned long>(ledger.recent_txn_sorts()),
                static_cast<unsigned long>(ledger.recent_txn_records()));
    if (absl::Status s = (*store)->Flush(); !s.ok()) return std::cerr << s << "\n", 1;
    std::printf("store_bytes_on_disk=%lu store_bytes_per_message=%.1f\n",
                static_cast<unsigned long>(DirectoryBytes(store_path)),
                static_cast<double>(DirectoryBytes(store_path)) / static_cast<double>(message_count));

    // Check against the oracle from the store itself.
    Outcome actual;
    absl::StatusOr<std::map<WindowDay, WindowCounters>> counters = ReadAllWindowCounters(**store);
    if (!counters.ok()) return std::cerr << counters.status() << "\n", 1;
    for (const auto& [day, c] : *counters) {
      absl::StatusOr<std::vector<WindowLine>> lines = ReadWindowLines(**store, day);
      if (!lines.ok()) return std::cerr << lines.status() << "\n", 1;
      auto w = ComputeWindowOutcome(*lines, c, FeeSchedule::FromRegistry(**registry));
      if (!w.ok()) return std::cerr << w.status() << "\n", 1;
      actual.windows[day] = *w;
    }
    auto expected = OutcomeFromJson(oracle);
    if (!expected.ok()) return std::cerr << expected.status() << "\n", 1;
    const std::vector<std::string> diff = DiffOutcomes(*expected, actual);
    for (const std::string& line : diff) std::printf("oracle mismatch: %s\n", line.c_str());
    std::printf("oracle=%s\n", diff.empty() ? "match" : "MISMATCH");
    if (!diff.empty()) return 1;

    if (close_window) {
      const WindowDay day = counters->rbegin()->first;
      Batch close(BatchLimits{.messages_max = 1, .arena_bytes_max = 1 << 20});
      close.now_ms = clock_ms;
      close.registry = *registry;
      close.commands.push_back(WindowCommand{WindowCommand::Kind::kClose, day});
      BatchResult result;
      const auto close_start = std::chrono::steady_clock::now();
      if (absl::Status s = ledger.Apply(close, result); !s.ok()) return std::cerr << s << "\n", 1;
      absl::StatusOr<ClosedWindow> window = LoadClosedWindow(**store, day, **registry);
      if (!window.ok()) return std::cerr << window.status() << "\n", 1;
      const std::string output_dir = (scratch.empty() ? store_path + ".files" : scratch + "/files");
      auto sink = DirectoryFileSet::Open(output_dir, day);
      if (!sink.ok()) return std::cerr << sink.status() << "\n", 1;
      auto digests = MakeFileSetDigests("benchmark-manifest-key");
      if (!digests.ok()) return std::cerr << digests.status() << "\n", 1;
      if (absl::Status s = RenderWindowFiles(**store, *window, **sink, *digests); !s.ok()) {
        return std::cerr << s << "\n", 1;
      }
      const double close_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - close_start).count();
      std::printf("window=%s applied=%ld close_and_files_seconds=%.3f files_bytes=%lu\n", FormatWindowDay(day).c_str(),
                  static_cast<long>(counters->rbegin()->second.applied_count), close_seconds,
                  static_cast<unsigned long>(DirectoryBytes(output_dir)));
    }
  }
  if (!scratch.empty()) std::filesystem::remove_all(scratch);
  return 0;
}

}  // namespace
}  // namespace yrd

int main(int argc, char** argv) { return yrd::Main(argc, argv); }
