// PipelinedSink: hands messages to another MessageSink on a thread of its own, in batches, so
// that generating the next messages overlaps with producing the previous ones to Kafka. Order
// is kept. The calling thread owns the PipelinedSink; Finish() must be called (and its status
// read) before it is destroyed to learn whether every message reached the inner sink.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "tools/clearing-gen/day_gen.h"

namespace yrd::gen {

// Messages per batch handed to the producing thread.
inline constexpr size_t kPipelineBatchMessagesMax = 4096;
// Batches waiting for the producing thread at most; the generator waits when it is ahead.
inline constexpr size_t kPipelineBatchesQueuedMax = 16;

class PipelinedSink final : public MessageSink {
 public:
  explicit PipelinedSink(MessageSink& inner);
  ~PipelinedSink() override;
  PipelinedSink(const PipelinedSink&) = delete;
  PipelinedSink& operator=(const PipelinedSink&) = delete;

  // Queues a copy of the message. Returns the inner sink's first error once it has failed; the
  // messages queued after that are dropped.
  [[nodiscard]] absl::Status Accept(std::string_view topic, std::string_view key, std::string_view payload) override;

  // Hands over the last batch, waits until the producing thread has passed on every message,
  // and returns the inner sink's first error. Later calls return the same status.
  [[nodiscard]] absl::Status Finish();

 private:
  struct Batch {
    std::string bytes;  // topic, key and payload of each message, back to back
    std::vector<uint32_t> lengths;  // three per message
  };

  void Hand(Batch batch);
  void ProduceLoop();

  MessageSink& inner_;
  Batch current_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Batch> queue_;         // guarded by mutex_
  bool closing_ = false;            // guarded by mutex_
  absl::Status status_;             // guarded by mutex_: the inner sink's first error
  bool finished_ = false;
  std::thread thread_;
};

}  // namespace yrd::gen
