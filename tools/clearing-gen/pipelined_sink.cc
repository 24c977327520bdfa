#include "tools/clearing-gen/pipelined_sink.h"

#include <utility>

namespace yrd::gen {

PipelinedSink::PipelinedSink(MessageSink& inner) : inner_(inner), thread_([this] { ProduceLoop(); }) {}

PipelinedSink::~PipelinedSink() {
  // Finish() is the way to learn the outcome; here the thread is only stopped.
  if (!finished_) (void)Finish();
}

absl::Status PipelinedSink::Accept(std::string_view topic, std::string_view key, std::string_view payload) {
  for (const std::string_view field : {topic, key, payload}) {
    current_.bytes.append(field);
    current_.lengths.push_back(static_cast<uint32_t>(field.size()));
  }
  if (current_.lengths.size() < 3 * kPipelineBatchMessagesMax) return absl::OkStatus();
  Hand(std::exchange(current_, Batch{}));
  std::lock_guard lock(mutex_);
  return status_;
}

void PipelinedSink::Hand(Batch batch) {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return queue_.size() < kPipelineBatchesQueuedMax || !status_.ok(); });
  if (!status_.ok()) return;  // the producing thread stopped: nothing more will be taken
  queue_.push_back(std::move(batch));
  changed_.notify_all();
}

void PipelinedSink::ProduceLoop() {
  while (true) {
    Batch batch;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return !queue_.empty() || closing_; });
      if (queue_.empty()) return;
      batch = std::move(queue_.front());
      queue_.pop_front();
      changed_.notify_all();
    }
    std::string_view rest = batch.bytes;
    for (size_t i = 0; i + 2 < batch.lengths.size(); i += 3) {
      const std::string_view topic = rest.substr(0, batch.lengths[i]);
      rest.remove_prefix(batch.lengths[i]);
      const std::string_view key = rest.substr(0, batch.lengths[i + 1]);
      rest.remove_prefix(batch.lengths[i + 1]);
      const std::string_view payload = rest.substr(0, batch.lengths[i + 2]);
      rest.remove_prefix(batch.lengths[i + 2]);
      if (absl::Status status = inner_.Accept(topic, key, payload); !status.ok()) {
        std::lock_guard lock(mutex_);
        status_ = status;
        queue_.clear();
        changed_.notify_all();
        return;
      }
    }
  }
}

absl::Status PipelinedSink::Finish() {
  if (!finished_) {
    finished_ = true;
    if (!current_.lengths.empty()) Hand(std::exchange(current_, Batch{}));
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
      changed_.notify_all();
    }
    thread_.join();
  }
  std::lock_guard lock(mutex_);
  return status_;
}

}  // namespace yrd::gen
