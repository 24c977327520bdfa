// InfoLog: RocksDB's diagnostic log (the LOG file in the store directory), written by us
// instead of RocksDB's own file logger. RocksDB 7.8's logger aborts the process (an assertion in
// WritableFileWriter) the first time it appends after a failed append, which is what a full disk
// produces; this one drops a line it cannot write, counts it, and carries on, so a full disk
// turns into an error the daemon can wait out. Warnings and errors also go to `on_warning`
// (at most kForwardedLinesPerMinuteMax a minute, so a storm of write-stall warnings does not
// flood the daemon's log), so they reach the daemon's own log. The file is rotated to LOG.old
// at kInfoLogBytesMax. Thread-safe (RocksDB logs from its background threads).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace rocksdb {
class Logger;
}

namespace yrd {

// Size of the LOG file before it is rotated to LOG.old (one old file is kept), bytes.
inline constexpr size_t kInfoLogBytesMax = 16u << 20;
// RocksDB warnings and errors passed on to `on_warning` per minute; the rest only reach LOG.
inline constexpr int kForwardedLinesPerMinuteMax = 30;

// Called with a severity and a line: "warning", "error" or "fatal" for what RocksDB logged;
// kBackgroundError when a flush, compaction or write failed and RocksDB stopped writes;
// kRecovered / kRecoveryFailed when its own recovery from such an error ended. Called on
// RocksDB's threads, outside any lock of ours: it must be thread-safe and must not block.
using StoreWarningSink = std::function<void(std::string_view severity, std::string_view message)>;
inline constexpr std::string_view kBackgroundError = "background_error";
inline constexpr std::string_view kRecovered = "recovered";
inline constexpr std::string_view kRecoveryFailed = "recovery_failed";

// A logger writing `directory`/LOG. The directory must exist.
std::shared_ptr<rocksdb::Logger> NewInfoLog(const std::string& directory, StoreWarningSink on_warning);

}  // namespace yrd
