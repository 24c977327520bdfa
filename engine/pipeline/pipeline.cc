#include "engine/pipeline/pipeline.h"

#include <ctime>

#include "boost/lockfree/spsc_queue.hpp"
#include "engine/base/assert.h"

namespace yrd {

struct Pipeline::Queues {
  explicit Queues(size_t capacity) : to_ledger(capacity), to_commit(capacity), to_ingest(capacity) {}
  // A nullptr on to_ledger tells the ledger thread to return, and it passes it on to the
  // commit thread.
  boost::lockfree::spsc_queue<Batch*> to_ledger;
  boost::lockfree::spsc_queue<Batch*> to_commit;
  boost::lockfree::spsc_queue<Batch*> to_ingest;
  std::atomic<uint32_t> to_ledger_signal{0};
  std::atomic<uint32_t> to_commit_signal{0};
  std::atomic<uint32_t> to_ingest_signal{0};
};

namespace {

void Push(boost::lockfree::spsc_queue<Batch*>& queue, std::atomic<uint32_t>& signal, Batch* batch) {
  // Capacity equals the pool size plus the stop marker, so a push never finds the queue full.
  const bool pushed = queue.push(batch);
  YRD_ASSERT(pushed);
  signal.fetch_add(1, std::memory_order_release);
  signal.notify_one();
}

Batch* PopWaiting(boost::lockfree::spsc_queue<Batch*>& queue, std::atomic<uint32_t>& signal) {
  for (;;) {
    const uint32_t seen = signal.load(std::memory_order_acquire);
    Batch* batch = nullptr;
    if (queue.pop(batch)) return batch;
    signal.wait(seen, std::memory_order_acquire);
  }
}

// Processor time the calling thread has used.
uint64_t ThreadCpuMicros() {
  timespec used{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &used) != 0) return 0;
  return static_cast<uint64_t>(used.tv_sec) * 1'000'000 + static_cast<uint64_t>(used.tv_nsec) / 1000;
}

}  // namespace

Pipeline::Pipeline(PipelineOptions options, MessageSource& source, Ledger& ledger, const Clock& clock,
                   const RegistryHolder& registry, CardTokenizer& tokenizer)
    : options_(options),
      source_(source),
      ledger_(ledger),
      clock_(clock),
      registry_(registry),
      tokenizer_(tokenizer),
      queues_(std::make_unique<Queues>(options.batches_in_flight_max + 1)) {
  YRD_ASSERT(options.batches_in_flight_max >= 1);
  for (size_t i = 0; i < options.batches_in_flight_max; ++i) pool_.push_back(std::make_unique<Batch>(options.batch));
}

Pipeline::~Pipeline() = default;

void Pipeline::RequestStop() {
  stop_requested_.store(true, std::memory_order_release);
  // Wake the ingest thread if it waits for a returned batch.
  queues_->to_ingest_signal.fetch_add(1, std::memory_order_release);
  queues_->to_ingest_signal.notify_all();
}

void Pipeline::SubmitWindowCommand(WindowCommand command) {
  {
    std::lock_guard<std::mutex> lock(commands_mutex_);
    pending_commands_.push_back(command);
  }
  commands_pending_.store(true, std::memory_order_release);
}

void DecodeBatch(Batch& batch, CardTokenizer& tokenizer, const DecodeLimits& limits) {
  DecodeContext context;
  context.registry = batch.registry.get();
  context.tokenizer = &tokenizer;
  context.limits = limits;
  context.now_ms = batch.now_ms;
  for (MessageSlot& slot : batch.slots()) {
    if (slot.fate != Fate::kPending) continue;
    const std::optional<Reason> reason = yrd::Decode(slot.topic, slot.payload, context, slot.event);
    if (!reason) continue;
    slot.fate = Fate::kRejected;
    slot.reason = reason;
    // A message Decode refuses has no content digest: it is identified by its bytes.
    slot.event.digest = DigestOfBytes(slot.payload);
  }
}

void Pipeline::LedgerLoop() {
  for (;;) {
    Batch* batch = PopWaiting(queues_->to_ledger, queues_->to_ledger_signal);
    if (batch == nullptr) {
      stats_.ledger_cpu_us.store(ThreadCpuMicros(), std::memory_order_relaxed);
      Push(queues_->to_commit, queues_->to_commit_signal, nullptr);
      return;
    }
    stats_.ledger_queue_depth.fetch_sub(1, std::memory_order_relaxed);
    // A failure is recorded by the ledger; the commit stage reports it for this batch.
    (void)ledger_.Prepare(*batch);
    stats_.commit_queue_depth.fetch_add(1, std::memory_order_relaxed);
    Push(queues_->to_commit, queues_->to_commit_signal, batch);
  }
}

void Pipeline::CommitLoop() {
  for (;;) {
    Batch* batch = PopWaiting(queues_->to_commit, queues_->to_commit_signal);
    if (batch == nullptr) {
      stats_.commit_cpu_us.store(ThreadCpuMicros(), std::memory_order_relaxed);
      return;
    }
    stats_.commit_queue_depth.fetch_sub(1, std::memory_order_relaxed);
    const absl::Status status = ledger_.Commit(*batch);
    batch->committed_at = std::chrono::steady_clock::now();
    if (status.ok()) {
      const BatchResult& result = batch->ledger_result;
      batch->committed = true;
      stats_.applied_count.fetch_add(result.applied_count, std::memory_order_relaxed);
      stats_.exact_duplicate_count.fetch_add(result.exact_duplicate_count, std::memory_order_relaxed);
      stats_.rejected_count.fetch_add(result.rejected_count, std::memory_order_relaxed);
      stats_.late_count.fetch_add(result.late_count, std::memory_order_relaxed);
      stats_.store_bytes.fetch_add(result.store_bytes, std::memory_order_relaxed);
      if (!batch->empty()) {
        stats_.committed_batch_count.fetch_add(1, std::memory_order_relaxed);
        stats_.commit_latency_us.Record(
            std::chrono::duration_cast<std::chrono::microseconds>(batch->committed_at - batch->sealed_at).count());
      }
    } else if (ledger_failure_.ok()) {
      ledger_failure_ = status;
    }
    stats_.done_queue_depth.fetch_add(1, std::memory_order_relaxed);
    Push(queues_->to_ingest, queues_->to_ingest_signal, batch);
  }
}

absl::Status Pipeline::Run() {
  const uint64_t ingest_cpu_start_us = ThreadCpuMicros();
  std::vector<Batch*> free;
  for (auto& batch : pool_) free.push_back(batch.get());
  size_t in_flight = 0;
  absl::Status failure;
  auto last_sent = std::chrono::steady_clock::now();
  std::thread ledger_thread([this] { LedgerLoop(); });
  std::thread commit_thread([this] { CommitLoop(); });

  auto take_back = [&](Batch* batch) {
    stats_.done_queue_depth.fetch_sub(1, std::memory_order_relaxed);
    --in_flight;
    if (batch->committed) {
      if (absl::Status s = source_.OnCommitted(*batch); !s.ok() && failure.ok()) failure = s;
      if (on_windows_changed && (!batch->windows_closed.empty() || !batch->windows_files_marked.empty())) {
        on_windows_changed(batch->windows_closed, batch->windows_files_marked);
      }
    } else if (failure.ok()) {
      // The ledger recorded why; it is read once the ledger thread has stopped.
      failure = absl::InternalError("a batch was not committed");
    }
    batch->Clear();
    free.push_back(batch);
  };

  auto drain = [&] {
    while (in_flight > 0) take_back(PopWaiting(queues_->to_ingest, queues_->to_ingest_signal));
    return failure;
  };
  source_.SetDrain(drain);

  while (failure.ok() && !stop_requested_.load(std::memory_order_acquire)) {
    Batch* returned = nullptr;
    while (queues_->to_ingest.pop(returned)) take_back(returned);
    if (!failure.ok()) break;
    if (free.empty()) {
      take_back(PopWaiting(queues_->to_ingest, queues_->to_ingest_signal));
      continue;
    }
    // Off the free list while it fills: a drain in Fill returns other batches to it.
    Batch* batch = free.back();
    free.pop_back();
    batch->now_ms = clock_.NowMs();
    batch->registry = registry_.Get();
    batch->dead_letters_delivered_through = source_.DeadLettersDeliveredThrough();
    const absl::Status fill_status = source_.Fill(*batch, options_.batch_linger);
    // The commands after the fill: one submitted during it (the close of a window that a
    // partition claimed in a rebalance of this fill had closed elsewhere) applies before the
    // batch's messages, as every command of a batch does.
    if (commands_pending_.exchange(false, std::memory_order_acq_rel)) {
      std::lock_guard<std::mutex> lock(commands_mutex_);
      batch->commands.swap(pending_commands_);
    }
    // After the fill: a rebalance during it is in this batch's ownership already.
    batch->ownership = source_.TakeOwnershipChange();
    const auto now = std::chrono::steady_clock::now();
    const bool tick_due = now - last_sent >= options_.window_tick;
    if (!batch->empty() || !batch->commands.empty() || batch->ownership || tick_due) {
      last_sent = now;
      DecodeBatch(*batch, tokenizer_, options_.decode);
      batch->sealed_at = std::chrono::steady_clock::now();
      ++in_flight;
      stats_.consumed_count.fetch_add(batch->size(), std::memory_order_relaxed);
      stats_.ledger_queue_depth.fetch_add(1, std::memory_order_relaxed);
      Push(queues_->to_ledger, queues_->to_ledger_signal, batch);
    } else {
      free.push_back(batch);
    }
    if (!fill_status.ok()) failure = fill_status;
  }
  source_.SetDrain(nullptr);
  // Drain: everything consumed is committed (or fails) and acknowledged before returning.
  while (in_flight > 0) {
    Batch* returned = nullptr;
    if (queues_->to_ingest.pop(returned)) {
      take_back(returned);
    } else {
      take_back(PopWaiting(queues_->to_ingest, queues_->to_ingest_signal));
    }
  }
  stats_.ingest_cpu_us.store(ThreadCpuMicros() - ingest_cpu_start_us, std::memory_order_relaxed);
  Push(queues_->to_ledger, queues_->to_ledger_signal, nullptr);
  ledger_thread.join();
  commit_thread.join();
  if (!ledger_failure_.ok()) return ledger_failure_;
  return failure;
}

}  // namespace yrd
