// FileWriter: writes the clearing files of closed windows on a thread of its own, so that a
// large window's files never hold up ingest. The ledger closes a window (one atomic write); the
// pipeline tells the FileWriter, which re-checks the invariants, renders the files from the
// store into <output_dir>/<YYYYMMDD>/ (temporary names, sync, rename, directory sync) and then
// asks the pipeline to mark the window files_written. A crash at any point leaves the window
// closed, and the next start writes the same bytes again (existing identical files are kept).
// Enqueue is thread-safe; the callback runs on the writer thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "engine/clearing/clearing_files.h"
#include "engine/pipeline/pipeline.h"
#include "engine/store/state_store.h"

namespace yrd {

class FileWriter {
 public:
  // How a window's file set is written when not from `store` (a member of a consumer group
  // merges it from every partition's changelog, docs/scale-out.md section 5): true once written,
  // false when there is nothing to write here (another instance wrote it), Unavailable when it
  // cannot be written yet (the message says why): the window waits and is tried again every
  // kHoldRetry. Any other error as a failed write.
  using WriteOverride = std::function<absl::StatusOr<bool>(WindowDay)>;
  FileWriter(StateStore& store, const RegistryHolder& registry, std::string output_dir, Digests digests,
             std::function<void(WindowDay)> on_written, WriteOverride write = nullptr);
  static constexpr std::chrono::milliseconds kHoldRetry{5000};
  // Windows waiting to be tried again. Thread-safe.
  [[nodiscard]] size_t held_count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return held_.size();
  }
  ~FileWriter();  // finishes the window being written, drops the rest (the next start resumes them)

  void Enqueue(WindowDay day);
  [[nodiscard]] uint64_t written_count() const { return written_count_.load(); }
  [[nodiscard]] int64_t last_written_day() const { return last_written_day_.load(); }
  [[nodiscard]] uint64_t failed_count() const { return failed_count_.load(); }

 private:
  void Loop();
  [[nodiscard]] absl::Status Write(WindowDay day);

  StateStore& store_;
  const RegistryHolder& registry_;
  std::string output_dir_;
  Digests digests_;
  std::function<void(WindowDay)> on_written_;
  WriteOverride write_override_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<WindowDay> queue_;  // guarded by mutex_
  std::deque<WindowDay> held_;   // guarded by mutex_: the override said Unavailable
  bool stopping_ = false;        // guarded by mutex_
  std::atomic<uint64_t> written_count_{0};
  std::atomic<uint64_t> failed_count_{0};
  std::atomic<int64_t> last_written_day_{0};
  std::thread thread_;
};

}  // namespace yrd
