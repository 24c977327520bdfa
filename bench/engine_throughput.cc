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
#include <thread>

#include "CLI/CLI.hpp"
#include "adapters/crypto/hmac.h"
#include "adapters/fs/file_set.h"
#include "adapters/kafka/embedded_broker.h"
#include "adapters/kafka/kafka_changelog.h"
#include "adapters/rocksdb/rocks_store.h"
#include "engine/base/money.h"
#include "engine/base/strings.h"
#include "engine/changelog/changelog.h"
#include "engine/clearing/clearing_files.h"
#include "engine/clearing/positions.h"
#include "engine/event/event_file.h"
#include "engine/ledger/ledger.h"
#include "engine/merge/window_merge.h"
#include "engine/pipeline/pipeline.h"
#include "engine/readers/store_readers.h"
#include "nlohmann/json.hpp"
#include "xxhash.h"

namespace yrd {
namespace {

// Microseconds of processor time a message.
double PerEvent(const std::atomic<uint64_t>& cpu_us, size_t message_count) {
  return message_count == 0 ? 0.0 : static_cast<double>(cpu_us.load()) / static_cast<double>(message_count);
}

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

// The windows' outcome in `stores` (one, or the shards': lines and counters summed per window)
// against the oracle; the counters of every window when they agree.
absl::StatusOr<std::map<WindowDay, WindowCounters>> CheckOracle(const std::vector<StateStore*>& stores,
                                                                const Registry& registry, const nlohmann::json& oracle) {
  std::map<WindowDay, WindowCounters> counters;
  std::map<WindowDay, std::map<std::string, LineTotals>> lines;
  for (StateStore* store : stores) {
    absl::StatusOr<std::map<WindowDay, WindowCounters>> of_store = ReadAllWindowCounters(*store);
    if (!of_store.ok()) return of_store.status();
    for (const auto& [day, c] : *of_store) {
      if (!AddWindowCounters(c, counters[day])) return absl::DataLossError("counters overflow");
      absl::StatusOr<std::vector<WindowLine>> store_lines = ReadWindowLines(*store, day);
      if (!store_lines.ok()) return store_lines.status();
      for (const WindowLine& line : *store_lines) {
        if (!AddLineTotals(line.totals, lines[day][line.line_key])) return absl::DataLossError("lines overflow");
      }
    }
  }
  Outcome actual;
  for (const auto& [day, c] : counters) {
    std::vector<WindowLine> merged;
    for (const auto& [key, totals] : lines[day]) merged.push_back({key, totals});
    auto w = ComputeWindowOutcome(merged, c, FeeSchedule::FromRegistry(registry));
    if (!w.ok()) return w.status();
    actual.windows[day] = *w;
  }
  auto expected = OutcomeFromJson(oracle);
  if (!expected.ok()) return expected.status();
  const std::vector<std::string> diff = DiffOutcomes(*expected, actual);
  for (const std::string& line : diff) std::printf("oracle mismatch: %s\n", line.c_str());
  if (!diff.empty()) return absl::DataLossError(Cat(diff.size(), " differences from the oracle"));
  return counters;
}

// Source partitions per topic, as the daemon's default topics have.
constexpr int32_t kPartitions = 16;
// At most this many ledger shards (--shards).
constexpr int kShardsMax = 16;

// The partition MemorySource gives a record.
int32_t PartitionOf(const EventRecord& r) {
  return static_cast<int32_t>(XXH3_64bits(r.key.data(), r.key.size()) % static_cast<uint64_t>(kPartitions));
}

// Commits one batch with nothing but `command` through `ledger`.
absl::Status ApplyCommand(Ledger& ledger, WindowCommand command, std::shared_ptr<const Registry> registry,
                          int64_t now_ms) {
  Batch batch(BatchLimits{.messages_max = 1, .arena_bytes_max = 1 << 20});
  batch.now_ms = now_ms;
  batch.registry = std::move(registry);
  batch.commands.push_back(std::move(command));
  BatchResult ignored;
  return ledger.Apply(batch, ignored);
}

// Every shard's share of closed `day` (shard k holds partitions k, k + N, ... of either topic)
// into a merge store at `merge_path`, the window closed there and its file set rendered to
// `output_dir`.
absl::Status MergeAndRender(const std::vector<StateStore*>& shards, WindowDay day,
                            const std::shared_ptr<const Registry>& registry, int64_t closed_at_ms,
                            const std::string& merge_path, const std::string& output_dir) {
  auto merge = RocksStore::Open(merge_path, RocksStoreOptions{});
  if (!merge.ok()) return merge.status();
  {
    auto restore = ChangelogRestore::Open(**merge);
    if (!restore.ok()) return restore.status();
    const auto shard_count = static_cast<int32_t>(shards.size());
    for (int32_t k = 0; k < shard_count; ++k) {
      StateStore& shard = *shards[static_cast<size_t>(k)];
      absl::StatusOr<LineIds> line_ids = LoadLineIds(shard);
      if (!line_ids.ok()) return line_ids.status();
      for (const SourceTopic topic : {SourceTopic::kTaps, SourceTopic::kMedical}) {
        for (int32_t partition = k; partition < kPartitions; partition += shard_count) {
          if (absl::Status s = CopyWindowShare(shard, *line_ids, day, {topic, partition}, **restore); !s.ok()) return s;
        }
      }
    }
    if (absl::Status s = (*restore)->Flush(); !s.ok()) return s;
  }
  absl::StatusOr<ClosedWindow> window =
      CloseMergedWindow(**merge, WindowCalendar{}, day, closed_at_ms, registry, closed_at_ms);
  if (!window.ok()) return window.status();
  auto sink = DirectoryFileSet::Open(output_dir, day);
  if (!sink.ok()) return sink.status();
  auto digests = MakeFileSetDigests("benchmark-manifest-key");
  if (!digests.ok()) return digests.status();
  return RenderWindowFiles(**merge, *window, **sink, *digests);
}

// --shards N: the partitions split over N ledgers, each with its own store and pipeline threads,
// run at once; the outcome is the merge of the shards'. With --close every shard closes the day,
// and the file set is rendered from a merge store holding every shard's share of it.
int RunShards(int shards, std::vector<EventRecord> records, const std::shared_ptr<const Registry>& registry,
              const nlohmann::json& oracle, int64_t clock_ms, const std::string& store_path,
              size_t batch_messages_max, bool close_window, const std::string& output_dir) {
  std::vector<std::vector<EventRecord>> split(static_cast<size_t>(shards));
  const size_t message_count = records.size();
  for (EventRecord& r : records) split[static_cast<size_t>(PartitionOf(r) % shards)].push_back(std::move(r));
  std::vector<std::unique_ptr<RocksStore>> stores;
  std::vector<std::unique_ptr<Ledger>> ledgers;
  std::vector<std::unique_ptr<MemorySource>> sources;
  std::vector<std::unique_ptr<Pipeline>> pipelines;
  std::vector<std::unique_ptr<HmacSha256>> tokenizers;  // one per shard: a tokenizer is not thread-safe
  ManualClock clock(clock_ms);
  RegistryHolder holder(registry);
  PipelineOptions options;
  options.batch.messages_max = batch_messages_max;
  for (int k = 0; k < shards; ++k) {
    auto store = RocksStore::Open(Cat(store_path, "-shard-", k), RocksStoreOptions{});
    if (!store.ok()) return std::cerr << store.status() << "\n", 2;
    stores.push_back(*std::move(store));
    ledgers.push_back(std::make_unique<Ledger>(*stores.back(), LedgerOptions{}));
    if (absl::Status s = ledgers.back()->Load(clock_ms); !s.ok()) return std::cerr << s << "\n", 2;
    sources.push_back(std::make_unique<MemorySource>(std::move(split[static_cast<size_t>(k)]), kPartitions));
    auto tokenizer = HmacSha256::Create("benchmark-card-token-key");
    if (!tokenizer.ok()) return std::cerr << tokenizer.status() << "\n", 2;
    tokenizers.push_back(*std::move(tokenizer));
    pipelines.push_back(
        std::make_unique<Pipeline>(options, *sources.back(), *ledgers.back(), clock, holder, *tokenizers.back()));
    Pipeline* pipeline = pipelines.back().get();
    sources.back()->OnDrained([pipeline] { pipeline->RequestStop(); });
  }
  std::vector<absl::Status> statuses(static_cast<size_t>(shards));
  const auto start = std::chrono::steady_clock::now();
  {
    std::vector<std::thread> threads;
    for (int k = 0; k < shards; ++k) {
      threads.emplace_back([&, k] { statuses[static_cast<size_t>(k)] = pipelines[static_cast<size_t>(k)]->Run(); });
    }
    for (std::thread& thread : threads) thread.join();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const absl::Status& status : statuses) {
    if (!status.ok()) return std::cerr << status << "\n", 1;
  }
  std::printf("shards=%d messages=%zu seconds=%.3f events_per_s=%.0f\n", shards, message_count, seconds,
              static_cast<double>(message_count) / seconds);
  std::vector<StateStore*> shard_stores;
  for (const std::unique_ptr<RocksStore>& store : stores) shard_stores.push_back(store.get());
  if (absl::Status s = CheckOracle(shard_stores, *registry, oracle).status(); !s.ok()) return std::cerr << s << "\n", 1;
  std::printf("oracle=match (the shards' lines and counters merged)\n");
  if (!close_window) return 0;

  const WindowDay day = WindowCalendar{}.DayOf(clock_ms);
  const auto close_start = std::chrono::steady_clock::now();
  for (std::unique_ptr<Ledger>& ledger : ledgers) {
    if (absl::Status s = ApplyCommand(*ledger, WindowCommand::RegionClose(day, clock_ms), registry, clock_ms); !s.ok()) {
      return std::cerr << s << "\n", 1;
    }
  }
  if (absl::Status s = MergeAndRender(shard_stores, day, registry, clock_ms, store_path + "-merge", output_dir); !s.ok()) {
    return std::cerr << s << "\n", 1;
  }
  const double close_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - close_start).count();
  std::printf("window=%s merge_close_and_files_seconds=%.3f files_bytes=%lu\n", FormatWindowDay(day).c_str(),
              close_seconds, static_cast<unsigned long>(DirectoryBytes(output_dir)));
  return 0;
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
  bool changelog = false;
  app.add_flag("--changelog", changelog,
               "as a consumer-group member: every commit also goes to the changelog on an embedded broker; "
               "then a fresh store restores every partition from it (timed)");
  uint64_t snapshot_bytes = kafka::KafkaChangelogOptions{}.snapshot_bytes;
  app.add_option("--snapshot-bytes", snapshot_bytes,
                 "with --changelog: a partition's snapshot once its changelog grew by this many bytes "
                 "(kafka.changelog_snapshot_bytes; 0 never)");
  int shards = 1;
  app.add_option("--shards", shards,
                 "ledger shards over disjoint sets of partitions, each with its own store and pipeline, run at once; "
                 "the outcome (and with --close the file set) is the merge of theirs")
      ->check(CLI::Range(1, kShardsMax));
  CLI11_PARSE(app, argc, argv);
  if (shards > 1 && changelog) return std::cerr << "--shards and --changelog do not go together\n", 2;

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
  if (shards > 1) {
    const int code = RunShards(shards, *std::move(records), *registry, oracle, clock_ms, store_path, batch_messages_max,
                               close_window, scratch.empty() ? store_path + ".files" : scratch + "/files");
    if (!scratch.empty()) std::filesystem::remove_all(scratch);
    return code;
  }
  {
    RocksStoreOptions store_options;
    store_options.sync_writes = !no_sync;
    auto store = RocksStore::Open(store_path, store_options);
    if (!store.ok()) return std::cerr << store.status() << "\n", 2;
    LedgerOptions ledger_options;
    ledger_options.recent_txn_records_max = recent_txn_records_max;
    std::unique_ptr<kafka::EmbeddedBroker> broker;
    std::unique_ptr<kafka::KafkaChangelog> changelog_sink;
    std::vector<SourcePartition> owners;
    std::unique_ptr<RocksStore> restored_store;  // rebuilt from the changelog alone
    if (changelog) {
      auto started = kafka::EmbeddedBroker::Start({.partition_count = kPartitions,
                                                   .topics = {"yrd.taps.changelog", "yrd.medical.changelog"}});
      if (!started.ok()) return std::cerr << started.status() << "\n", 2;
      broker = *std::move(started);
      auto created = kafka::KafkaChangelog::Create(
          {.bootstrap_servers = broker->bootstrap_servers(), .snapshot_bytes = snapshot_bytes});
      if (!created.ok()) return std::cerr << created.status() << "\n", 2;
      changelog_sink = *std::move(created);
      for (const SourceTopic topic : {SourceTopic::kTaps, SourceTopic::kMedical}) {
        for (int32_t partition = 0; partition < kPartitions; ++partition) owners.push_back({topic, partition});
      }
      for (const SourcePartition owner : owners) {
        if (auto claim = changelog_sink->Claim(**store, owner); !claim.ok()) return std::cerr << claim.status() << "\n", 2;
      }
      ledger_options.changelog = changelog_sink.get();
    }
    Ledger ledger(**store, ledger_options);
    if (absl::Status s = ledger.Load(clock_ms); !s.ok()) return std::cerr << s << "\n", 2;
    auto tokenizer = HmacSha256::Create("benchmark-card-token-key");
    MemorySource source(*std::move(records), kPartitions);
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
    std::printf("cpu_us_per_event ingest=%.3f ledger=%.3f commit=%.3f\n", PerEvent(stats.ingest_cpu_us, message_count),
                PerEvent(stats.ledger_cpu_us, message_count), PerEvent(stats.commit_cpu_us, message_count));
    std::printf("commit_latency_us_p50<=%ld commit_latency_us_p99<=%ld store_write_bytes=%lu\n",
                static_cast<long>(stats.commit_latency_us.QuantileUpperBoundUs(0.5)),
                static_cast<long>(stats.commit_latency_us.QuantileUpperBoundUs(0.99)),
                static_cast<unsigned long>(stats.store_bytes.load()));
    std::printf("recent_txn_sorts=%lu recent_txn_records=%lu lines_held=%zu\n",
                static_cast<unsigned long>(ledger.recent_txn_sorts()),
                static_cast<unsigned long>(ledger.recent_txn_records()), ledger.lines_held());
    if (changelog) {
      std::printf("changelog_snapshots=%lu changelog_snapshot_bytes=%lu\n",
                  static_cast<unsigned long>(changelog_sink->snapshots_appended()),
                  static_cast<unsigned long>(changelog_sink->snapshot_bytes_appended()));
      std::printf("changelog_records=%lu changelog_bytes=%lu changelog_bytes_per_message=%.1f (before lz4)\n",
                  static_cast<unsigned long>(changelog_sink->records_appended()),
                  static_cast<unsigned long>(changelog_sink->bytes_appended()),
                  static_cast<double>(changelog_sink->bytes_appended()) / static_cast<double>(message_count));
      // A new instance takes every partition over: its store is rebuilt from the changelog alone.
      auto fresh = RocksStore::Open(store_path + ".restored", RocksStoreOptions{});
      if (!fresh.ok()) return std::cerr << fresh.status() << "\n", 2;
      restored_store = *std::move(fresh);
      auto taker = kafka::KafkaChangelog::Create({.bootstrap_servers = broker->bootstrap_servers()});
      if (!taker.ok()) return std::cerr << taker.status() << "\n", 2;
      uint64_t commits = 0, bytes = 0;
      const auto restore_start = std::chrono::steady_clock::now();
      for (const SourcePartition owner : owners) {
        absl::StatusOr<kafka::ClaimResult> claim = (*taker)->Claim(*restored_store, owner);
        if (!claim.ok()) return std::cerr << claim.status() << "\n", 1;
        commits += claim->commits_restored;
        bytes += claim->bytes_read;
      }
      const double restore_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - restore_start).count();
      std::printf("restore_partitions=%zu restore_commits=%lu restore_bytes=%lu restore_seconds=%.3f "
                  "restore_messages_per_s=%.0f\n",
                  owners.size(), static_cast<unsigned long>(commits), static_cast<unsigned long>(bytes),
                  restore_seconds, static_cast<double>(message_count) / restore_seconds);
    }
    if (absl::Status s = (*store)->Flush(); !s.ok()) return std::cerr << s << "\n", 1;
    std::printf("store_bytes_on_disk=%lu store_bytes_per_message=%.1f\n",
                static_cast<unsigned long>(DirectoryBytes(store_path)),
                static_cast<double>(DirectoryBytes(store_path)) / static_cast<double>(message_count));

    // Check against the oracle from the store itself.
    absl::StatusOr<std::map<WindowDay, WindowCounters>> counters = CheckOracle({store->get()}, **registry, oracle);
    if (!counters.ok()) return std::cerr << counters.status() << "\n", 1;
    std::printf("oracle=match\n");
    if (restored_store != nullptr) {
      if (absl::Status s = CheckOracle({restored_store.get()}, **registry, oracle).status(); !s.ok()) {
        return std::cerr << "restored store: " << s << "\n", 1;
      }
      std::printf("restored_oracle=match\n");
    }

    if (close_window) {
      const WindowDay day = counters->rbegin()->first;
      const auto close_start = std::chrono::steady_clock::now();
      if (absl::Status s = ApplyCommand(ledger, WindowCommand{WindowCommand::Kind::kClose, day}, *registry, clock_ms);
          !s.ok()) {
        return std::cerr << s << "\n", 1;
      }
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
