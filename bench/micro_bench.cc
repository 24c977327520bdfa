// Micro benchmarks of each stage, with Google Benchmark: verification and decoding, validation
// with the card token, dedup (miss and hit) with netting, the synced commit, fee rounding, and
// rendering a window's clearing files. They print figures; they assert nothing about time.
//
//   build/release/bench/micro_bench [--benchmark_filter=Ledger]
#include <benchmark/benchmark.h>

#include <algorithm>

#include "adapters/crypto/hmac.h"
#include "adapters/fs/file_set.h"
#include "adapters/kafka/embedded_broker.h"
#include "adapters/kafka/producer.h"
#include "adapters/rocksdb/rocks_store.h"
#include "engine/base/money.h"
#include "engine/batch/batch.h"
#include "engine/clearing/clearing_files.h"
#include "engine/ledger/ledger.h"
#include "schemas/events_generated.h"
#include "tests/support/events.h"

namespace yrd {
namespace {

constexpr size_t kBatchMessages = 4096;

int64_t Now() { return test::ChinaTimeMs(2026, 11, 27, 12, 0); }

std::string TapPayload(uint64_t index) {
  test::TapFields tap;
  tap.txn_id = "T" + std::to_string(1'000'000'000ULL + index);
  tap.occurred_at_ms = Now() - 60'000;
  return test::TapBytes(tap);
}

void BM_VerifyEnvelope(benchmark::State& state) {
  const std::string payload = TapPayload(1);
  for (auto _ : state) {
    flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
    benchmark::DoNotOptimize(schema::VerifyEnvelopeBuffer(verifier));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_VerifyEnvelope);

// Verification, every validation rule, registry lookups, the HMAC card token, the mask and the
// content digest: the whole ingest-stage cost of one tap.
void BM_DecodeAndValidateTap(benchmark::State& state) {
  const std::string payload = TapPayload(1);
  auto registry = test::TestRegistry();
  auto tokenizer = HmacSha256::Create("micro-benchmark-card-key");
  DecodeContext context;
  context.registry = registry.get();
  context.tokenizer = tokenizer->get();
  context.now_ms = Now();
  DecodedEvent event;
  for (auto _ : state) benchmark::DoNotOptimize(Decode(SourceTopic::kTaps, payload, context, event));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeAndValidateTap);

void BM_CardToken(benchmark::State& state) {
  auto tokenizer = HmacSha256::Create("micro-benchmark-card-key");
  CardToken token;
  for (auto _ : state) {
    (*tokenizer)->Tokenize(test::kCardNumber19, token);
    benchmark::DoNotOptimize(token);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CardToken);

void BM_FeeFen(benchmark::State& state) {
  int64_t net_fen = 12'345'678;
  for (auto _ : state) {
    benchmark::DoNotOptimize(FeeFen(net_fen, 60));
    ++net_fen;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FeeFen);

// Applies batches of kBatchMessages taps through the ledger into a real RocksDB store:
// state.range(0) = 0 for new ids (dedup misses), 1 for the same ids again (exact duplicates);
// state.range(1) = 1 to sync each commit, 0 to measure the ledger without the fsync.
void BM_LedgerApplyBatch(benchmark::State& state) {
  const bool duplicates = state.range(0) == 1;
  test::TempDir dir;
  RocksStoreOptions options;
  options.sync_writes = state.range(1) == 1;
  auto store = RocksStore::Open(dir.path() + "/state", options);
  Ledger ledger(**store, LedgerOptions{});
  if (!ledger.Load(Now()).ok()) state.SkipWithError("load failed");
  auto registry = test::TestRegistry();
  auto tokenizer = HmacSha256::Create("micro-benchmark-card-key");
  std::vector<std::string> payloads;
  uint64_t next_id = 0;
  Batch batch(BatchLimits{.messages_max = kBatchMessages, .arena_bytes_max = 16u << 20});
  int64_t offset = 0;
  auto fill = [&] {
    batch.Clear();
    batch.now_ms = Now();
    batch.registry = registry;
    if (!duplicates || payloads.empty()) {
      payloads.clear();
      for (size_t i = 0; i < kBatchMessages; ++i) payloads.push_back(TapPayload(next_id++));
    }
    for (const std::string& payload : payloads) batch.Add(SourceTopic::kTaps, 0, offset++, "k", payload, 65'536);
    test::DecodeBatch(batch, **tokenizer);
  };
  if (duplicates) {  // the first pass registers the ids; every timed pass finds them
    fill();
    BatchResult warm;
    if (!ledger.Apply(batch, warm).ok()) state.SkipWithError("apply failed");
  }
  for (auto _ : state) {
    state.PauseTiming();
    fill();
    state.ResumeTiming();
    BatchResult result;
    if (!ledger.Apply(batch, result).ok()) state.SkipWithError("apply failed");
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kBatchMessages));
}
BENCHMARK(BM_LedgerApplyBatch)->ArgNames({"duplicates", "sync"})->Args({0, 0})->Args({1, 0})->Args({0, 1})
    ->Unit(benchmark::kMillisecond);

// Inserting a batch of 16,384 transaction records (15-character ids, 60-byte values, WAL
// unsynced) into the dedup table one by one, whose memtable fills up and flushes as the
// benchmark runs: how the ledger stored them before it kept recent records in memory (compare
// BM_StoreTxnIngestSorted, how it stores them now). order:0 ids in order (a counter), order:1
// ids in no order, order:2 the same ids sorted within each batch. The difference between 0 and
// 1 is what the ids' order costs in service.
void BM_StoreTxnInsert(benchmark::State& state) {
  constexpr size_t kRecords = 16'384;
  const int64_t order = state.range(0);
  test::TempDir dir;
  RocksStoreOptions options;
  options.sync_writes = false;
  auto store = RocksStore::Open(dir.path() + "/state", options);
  std::unique_ptr<StateWriteBatch> batch = (*store)->NewWriteBatch();
  const std::string value(60, 'v');
  std::vector<std::string> keys(kRecords);
  uint64_t counter = 0;
  for (auto _ : state) {
    state.PauseTiming();
    batch->Clear();
    for (std::string& key : keys) {
      ++counter;
      // A bijection of [0, 10^10) scrambles the counter, as clearing-gen does.
      using Wide = unsigned __int128;
      const uint64_t id =
          order == 0 ? counter : static_cast<uint64_t>(Wide{counter} * Wide{6'364'136'223u} % Wide{10'000'000'000u});
      key = "T1127" + std::to_string(10'000'000'000u + id).substr(1);
    }
    if (order == 2) std::sort(keys.begin(), keys.end());
    for (const std::string& key : keys) batch->Put(Table::kTxn, key, value);
    state.ResumeTiming();
    if (!(*store)->Write(*batch).ok()) state.SkipWithError("write failed");
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kRecords));
}
BENCHMARK(BM_StoreTxnInsert)->ArgName("order")->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)
    ->MinTime(5.0);

// The store's half of dedup as the ledger does it: 262,144 transaction records with ids in no
// order (as recent records pile up in memory) are sorted and stored into the dedup table as one
// table file (StateStore::IngestSorted), as the ledger's sort thread does with each
// store.recent_txn_records_max of them. Per record, against BM_StoreTxnInsert.
void BM_StoreTxnIngestSorted(benchmark::State& state) {
  constexpr size_t kRecords = 262'144;
  test::TempDir dir;
  auto store = RocksStore::Open(dir.path() + "/state");
  const std::string value(60, 'v');
  std::vector<std::string> keys(kRecords);
  std::vector<std::pair<std::string_view, std::string_view>> records(kRecords);
  uint64_t counter = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (size_t i = 0; i < kRecords; ++i) {
      using Wide = unsigned __int128;
      const auto id = static_cast<uint64_t>(Wide{++counter} * Wide{6'364'136'223u} % Wide{10'000'000'000u});
      keys[i] = "1T1127" + std::to_string(10'000'000'000u + id).substr(1);
      records[i] = {keys[i], value};
    }
    state.ResumeTiming();
    std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) {
      const OrderPrefix pa = OrderPrefixOf(a.first), pb = OrderPrefixOf(b.first);
      return pa == pb ? a.first < b.first : pa < pb;
    });
    if (!(*store)->IngestSorted(Table::kTxn, records).ok()) state.SkipWithError("ingestion failed");
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kRecords));
}
BENCHMARK(BM_StoreTxnIngestSorted)->Unit(benchmark::kMillisecond)->MinTime(5.0);

// Renders (in memory) every clearing file of a window of state.range(0) applied taps.
void BM_RenderWindowFiles(benchmark::State& state) {
  test::TempDir dir;
  RocksStoreOptions options;
  options.sync_writes = false;
  auto store = RocksStore::Open(dir.path() + "/state", std::move(options));
  Ledger ledger(**store, LedgerOptions{});
  (void)ledger.Load(Now());
  auto registry = test::TestRegistry();
  auto tokenizer = HmacSha256::Create("micro-benchmark-card-key");
  const int64_t events = state.range(0);
  int64_t offset = 0;
  for (int64_t done = 0; done < events;) {
    Batch batch(BatchLimits{.messages_max = kBatchMessages, .arena_bytes_max = 16u << 20});
    batch.now_ms = Now();
    batch.registry = registry;
    std::vector<std::string> payloads;
    for (; done < events && batch.size() < kBatchMessages; ++done) payloads.push_back(TapPayload(done));
    for (const std::string& payload : payloads) batch.Add(SourceTopic::kTaps, 0, offset++, "k", payload, 65'536);
    test::DecodeBatch(batch, **tokenizer);
    BatchResult result;
    (void)ledger.Apply(batch, result);
  }
  const WindowDay day = WindowCalendar{}.DayOf(Now());
  Batch close(BatchLimits{.messages_max = 1, .arena_bytes_max = 1 << 20});
  close.now_ms = Now();
  close.registry = registry;
  close.commands.push_back(WindowCommand{WindowCommand::Kind::kClose, day});
  BatchResult result;
  (void)ledger.Apply(close, result);
  auto digests = MakeFileSetDigests("micro-benchmark-manifest-key");
  const absl::StatusOr<ClosedWindow> loaded = LoadClosedWindow(**store, day, *registry);
  if (!loaded.ok()) {
    state.SkipWithError("the window did not close");
    return;
  }
  const ClosedWindow& window = *loaded;
  for (auto _ : state) {
    MemoryFileSet sink;
    if (!RenderWindowFiles(**store, window, sink, *digests).ok()) state.SkipWithError("render failed");
  }
  state.SetItemsProcessed(state.iterations() * events);
}
BENCHMARK(BM_RenderWindowFiles)->Arg(20'000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace yrd

// One acknowledged produce (idempotent, acks=all) to each of 8 partitions of the embedded broker
// and the wait for its delivery: what a changelog append or a claim's fence costs a commit. With
// Nagle's algorithm on the mock's sockets this was about 44 ms (the client's delayed ACK).
static void BM_EmbeddedBrokerAckedProduce(benchmark::State& state) {
  auto broker = yrd::kafka::EmbeddedBroker::Start({.partition_count = 8, .topics = {"bench"}});
  auto producer = broker.ok() ? yrd::kafka::Producer::Create((*broker)->bootstrap_servers(), {{"linger.ms", "0"}})
                              : absl::StatusOr<std::unique_ptr<yrd::kafka::Producer>>(broker.status());
  if (!producer.ok()) {
    state.SkipWithError(std::string(producer.status().message()).c_str());
    return;
  }
  const std::string record(1024, 'r');
  for (auto _ : state) {
    for (int32_t partition = 0; partition < 8; ++partition) {
      if (!(*producer)->ProduceToPartition("bench", partition, "k", record).ok()) state.SkipWithError("produce failed");
    }
    if (!(*producer)->Flush(std::chrono::seconds(10)).ok()) state.SkipWithError("flush failed");
  }
}
BENCHMARK(BM_EmbeddedBrokerAckedProduce)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
