#include "adapters/rocksdb/info_log.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "rocksdb/env.h"

namespace yrd {
namespace {

// Longest line kept; RocksDB's statistics dumps are cut there.
constexpr size_t kLineBytesMax = 8192;

class InfoLog final : public rocksdb::Logger {
 public:
  InfoLog(std::string directory, StoreWarningSink on_warning)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL),
        path_(directory + "/LOG"),
        old_path_(directory + "/LOG.old"),
        on_warning_(std::move(on_warning)) {
    OpenLocked();
  }
  ~InfoLog() override {
    if (fd_ >= 0) ::close(fd_);
  }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list arguments) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, arguments);
  }

  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list arguments) override {
    if (level < GetInfoLogLevel()) return;
    char line[kLineBytesMax];
    timeval now {};
    ::gettimeofday(&now, nullptr);
    struct tm utc {};
    const time_t seconds = now.tv_sec;
    gmtime_r(&seconds, &utc);
    int prefix = std::snprintf(line, sizeof line, "%04d/%02d/%02d-%02d:%02d:%02d.%06ld ", utc.tm_year + 1900,
                               utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                               static_cast<long>(now.tv_usec));
    if (prefix < 0) prefix = 0;
    const int body = std::vsnprintf(line + prefix, sizeof line - static_cast<size_t>(prefix) - 1, format, arguments);
    size_t length = static_cast<size_t>(prefix) + (body < 0 ? 0 : static_cast<size_t>(body));
    if (length > sizeof line - 2) length = sizeof line - 2;
    line[length++] = '\n';
    const bool forwarded = level == rocksdb::InfoLogLevel::WARN_LEVEL ||
                           level == rocksdb::InfoLogLevel::ERROR_LEVEL || level == rocksdb::InfoLogLevel::FATAL_LEVEL;
    if (forwarded && on_warning_ && TakeForwardingToken(now.tv_sec)) {
      const char* severity = level == rocksdb::InfoLogLevel::FATAL_LEVEL   ? "fatal"
                             : level == rocksdb::InfoLogLevel::ERROR_LEVEL ? "error"
                                                                           : "warning";
      on_warning_(severity, std::string_view(line + prefix, length - static_cast<size_t>(prefix) - 1));
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (written_bytes_ + length > kInfoLogBytesMax) RotateLocked();
    if (fd_ < 0) OpenLocked();
    if (fd_ < 0) return;
    // A line that does not fit (a full disk) is dropped: this log is diagnostics, not state.
    // One cut short ends the line, so the next one starts on its own.
    const ssize_t written = ::write(fd_, line, length);
    if (written > 0) written_bytes_ += static_cast<size_t>(written);
    if (written > 0 && static_cast<size_t>(written) < length) (void)::write(fd_, "\n", 1);
  }

  // Lines reach the kernel at each write; there is nothing buffered to flush.
  void Flush() override {}

 private:
  void OpenLocked() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd_ < 0) return;
    const off_t size = ::lseek(fd_, 0, SEEK_END);
    written_bytes_ = size > 0 ? static_cast<size_t>(size) : 0;
  }
  void RotateLocked() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    const bool renamed = std::rename(path_.c_str(), old_path_.c_str()) == 0;
    OpenLocked();
    // Could not rotate: go on appending, and try again after another kInfoLogBytesMax.
    if (!renamed) written_bytes_ = 0;
  }

  // At most kForwardedLinesPerMinuteMax forwarded lines in each minute of the clock.
  bool TakeForwardingToken(int64_t now_seconds) {
    const int64_t minute = now_seconds / 60;
    std::lock_guard<std::mutex> lock(forward_mutex_);
    if (minute != forward_minute_) {
      forward_minute_ = minute;
      forwarded_in_minute_ = 0;
    }
    return forwarded_in_minute_++ < kForwardedLinesPerMinuteMax;
  }

  const std::string path_;
  const std::string old_path_;
  const StoreWarningSink on_warning_;
  std::mutex mutex_;
  int fd_ = -1;               // guarded by mutex_
  size_t written_bytes_ = 0;  // guarded by mutex_
  std::mutex forward_mutex_;
  int64_t forward_minute_ = 0;       // guarded by forward_mutex_
  int forwarded_in_minute_ = 0;      // guarded by forward_mutex_
};

}  // namespace

std::shared_ptr<rocksdb::Logger> NewInfoLog(const std::string& directory, StoreWarningSink on_warning) {
  return std::make_shared<InfoLog>(directory, std::move(on_warning));
}

}  // namespace yrd
