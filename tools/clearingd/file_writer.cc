#include "tools/clearingd/file_writer.h"

#include <algorithm>

#include "adapters/fs/file_set.h"
#include "adapters/log/log.h"
#include "engine/base/strings.h"
#include "engine/store/records.h"

namespace yrd {

FileWriter::FileWriter(StateStore& store, const RegistryHolder& registry, std::string output_dir, Digests digests,
                       std::function<void(WindowDay)> on_written, WriteOverride write)
    : store_(store),
      registry_(registry),
      output_dir_(std::move(output_dir)),
      digests_(std::move(digests)),
      on_written_(std::move(on_written)),
      write_override_(std::move(write)),
      thread_([this] { Loop(); }) {}

FileWriter::~FileWriter() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void FileWriter::Enqueue(WindowDay day) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(day);
  }
  wake_.notify_all();
}

void FileWriter::Loop() {
  for (;;) {
    WindowDay day = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (held_.empty()) {
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      } else {
        // Held windows are tried again after a while, in the order they closed.
        if (!wake_.wait_for(lock, kHoldRetry, [this] { return stopping_ || !queue_.empty(); })) {
          queue_.insert(queue_.begin(), held_.begin(), held_.end());
          held_.clear();
        }
      }
      if (stopping_) return;
      day = queue_.front();
      queue_.pop_front();
    }
    const std::string date = FormatWindowDay(day);
    absl::StatusOr<bool> written = true;
    if (write_override_) {
      written = write_override_(day);
    } else if (absl::Status s = Write(day); !s.ok()) {
      written = s;
    }
    if (written.ok() && !*written) {
      log::Info("clearing_files_elsewhere", {{"window", date}, {"detail", "another instance wrote its file set"}});
      continue;
    }
    if (written.status().code() == absl::StatusCode::kUnavailable) {
      std::lock_guard<std::mutex> lock(mutex_);
      const bool first = std::find(held_.begin(), held_.end(), day) == held_.end();
      if (first) held_.push_back(day);
      log::Info("clearing_files_held",
                {{"window", date},
                 {"reason", written.status().message()},
                 {"action", Cat("none: tried again every ", kHoldRetry.count() / 1000, " s")}});
      continue;
    }
    if (absl::Status s = written.status(); !s.ok()) {
      ++failed_count_;
      const bool invariant = s.code() == absl::StatusCode::kFailedPrecondition;
      log::Error("clearing_files_not_written",
                 {{"window", date},
                  {"error", s.ToString()},
                  {"action", invariant ? "no file was written and the window stays closed: a total is off, as named; "
                                         "report it to the engine's maintainers before settling this window"
                                       : "fix the cause (disk space, permissions of output.dir) and restart "
                                         "clearingd; it writes the files again"}});
      continue;
    }
    ++written_count_;
    last_written_day_ = day;
    log::Info("clearing_files_written", {{"window", date}, {"dir", output_dir_ + "/" + date}});
    on_written_(day);
  }
}

absl::Status FileWriter::Write(WindowDay day) {
  const std::shared_ptr<const Registry> registry = registry_.Get();
  absl::StatusOr<ClosedWindow> window = LoadClosedWindow(store_, day, *registry);
  if (!window.ok()) return window.status();
  auto sink = DirectoryFileSet::Open(output_dir_, day);
  if (!sink.ok()) return sink.status();
  return RenderWindowFiles(store_, *window, **sink, digests_);
}

}  // namespace yrd
