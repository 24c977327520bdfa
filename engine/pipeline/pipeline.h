// Pipeline: the lock-free path from consumed messages to committed state. Three threads share a
// fixed pool of batches (batches_in_flight_max) through bounded single-producer single-consumer
// queues: the ingest thread (the caller of Run) fills a batch from the MessageSource, stamps it
// with the clock and the current registry, decodes and validates every message, and hands it to
// the ledger thread, which deduplicates and nets it and builds its store write (Ledger::Prepare);
// the commit thread writes that in one synced store write (Ledger::Commit) while the ledger
// thread prepares the next batch; the committed batch comes back to the ingest thread, which
// acknowledges it to the source (dead-letter copies, Kafka commit hints) and reuses it. Threads
// wait on atomics, not mutexes, and no stage allocates per message once warm.
//
// RequestStop may be called from any thread: consumption stops, every batch already consumed
// is committed and acknowledged, and Run returns OK. Run returns the first error of the source
// or the store after the same drain (a failed store write leaves its batch unacknowledged).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "engine/base/clock.h"
#include "engine/base/histogram.h"
#include "engine/batch/batch.h"
#include "engine/event/event.h"
#include "engine/ledger/ledger.h"

namespace yrd {

// Where messages come from (Kafka in the daemon, memory in benchmarks). Called on the ingest
// thread only.
class MessageSource {
 public:
  virtual ~MessageSource() = default;
  // Appends messages to `batch` until it is full or `wait` has passed; OK with no message is
  // fine. An error means the source cannot go on (for example a gap in a partition's offsets).
  [[nodiscard]] virtual absl::Status Fill(Batch& batch, std::chrono::milliseconds wait) = 0;
  // The batch is durably committed: its rejected messages may go to the dead-letter topic and
  // its offsets may be reported upstream.
  [[nodiscard]] virtual absl::Status OnCommitted(const Batch& batch) = 0;
  // The highest commit sequence up to which every dead-letter copy is known delivered (0: none
  // or no dead-letter topic). Asked on the ingest thread before each batch is filled.
  [[nodiscard]] virtual uint64_t DeadLettersDeliveredThrough() const { return 0; }
  // Given by the pipeline while it runs (cleared when it stops): waits, on the ingest thread,
  // until every batch handed on is committed and acknowledged (OnCommitted) and returns the first
  // failure. A source that lets go of partitions calls it from Fill first, so nothing consumed
  // from them is still in flight.
  virtual void SetDrain(std::function<absl::Status()> drain) { (void)drain; }
  // The partitions the source consumes now, when they changed since the last call (and at the
  // first); nullopt otherwise. Asked on the ingest thread before each batch is filled.
  virtual std::optional<Ownership> TakeOwnershipChange() { return std::nullopt; }
};

// The registry in force; swapped whole on reload. Thread-safe.
class RegistryHolder {
 public:
  explicit RegistryHolder(std::shared_ptr<const Registry> registry) : registry_(std::move(registry)) {}
  [[nodiscard]] std::shared_ptr<const Registry> Get() const { return registry_.load(); }
  void Set(std::shared_ptr<const Registry> registry) { registry_.store(std::move(registry)); }

 private:
  std::atomic<std::shared_ptr<const Registry>> registry_;
};

struct PipelineOptions {
  BatchLimits batch;
  // When no message arrives for this long, an empty batch still goes to the ledger so that
  // windows close on the clock and operator commands are applied (config window_tick_ms).
  std::chrono::milliseconds window_tick{1000};
  size_t batches_in_flight_max = 4;                  // config pipeline_batches_max
  std::chrono::milliseconds batch_linger{5};         // config batch_linger_ms: how long a batch waits to fill
  DecodeLimits decode;
};

// Counters for metrics and benchmarks; written by the pipeline threads, read by any thread.
struct PipelineStats {
  std::atomic<uint64_t> consumed_count{0};
  std::atomic<uint64_t> applied_count{0};
  std::atomic<uint64_t> exact_duplicate_count{0};
  std::atomic<uint64_t> rejected_count{0};
  std::atomic<uint64_t> late_count{0};
  std::atomic<uint64_t> committed_batch_count{0};
  std::atomic<uint64_t> store_bytes{0};
  std::atomic<uint32_t> ledger_queue_depth{0};
  std::atomic<uint32_t> commit_queue_depth{0};
  std::atomic<uint32_t> done_queue_depth{0};
  LatencyHistogram commit_latency_us;  // from a batch sealed to its commit returning
  // Processor time each stage's thread used, set as Run returns: where the work of a run went,
  // whatever else the machine ran meanwhile (benchmarks).
  std::atomic<uint64_t> ingest_cpu_us{0};
  std::atomic<uint64_t> ledger_cpu_us{0};
  std::atomic<uint64_t> commit_cpu_us{0};
};

// The ingest stage's decoding: every pending slot of `batch` is decoded and validated against
// the batch's registry and clock; a refused one is rejected with its reason and detail, and
// identified by the digest of its bytes.
void DecodeBatch(Batch& batch, CardTokenizer& tokenizer, const DecodeLimits& limits);

class Pipeline {
 public:
  Pipeline(PipelineOptions options, MessageSource& source, Ledger& ledger, const Clock& clock,
           const RegistryHolder& registry, CardTokenizer& tokenizer);
  ~Pipeline();

  [[nodiscard]] absl::Status Run();
  void RequestStop();

  // Queues a window command (close, mark files written); it is committed with the next batch,
  // in order with the events. Thread-safe; takes a mutex, which only these rare commands use.
  void SubmitWindowCommand(WindowCommand command);

  // Called on the ingest thread after a batch that closed windows or marked their files is
  // committed. Set before Run.
  std::function<void(const std::vector<WindowDay>& closed, const std::vector<WindowDay>& files_marked)>
      on_windows_changed;
  [[nodiscard]] const PipelineStats& stats() const { return stats_; }

 private:
  struct Queues;
  void LedgerLoop();
  void CommitLoop();

  PipelineOptions options_;
  MessageSource& source_;
  Ledger& ledger_;
  const Clock& clock_;
  const RegistryHolder& registry_;
  CardTokenizer& tokenizer_;
  std::vector<std::unique_ptr<Batch>> pool_;
  std::unique_ptr<Queues> queues_;
  std::atomic<bool> stop_requested_{false};
  std::mutex commands_mutex_;
  std::vector<WindowCommand> pending_commands_;  // guarded by commands_mutex_
  std::atomic<bool> commands_pending_{false};
  absl::Status ledger_failure_;  // written by the commit thread before it returns a failed batch
  PipelineStats stats_;
};

}  // namespace yrd
