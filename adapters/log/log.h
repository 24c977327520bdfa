// Structured logs: one JSON object per line on stderr, with a UTC timestamp, a level, an event
// name and fields. No card number or token is ever passed here; an error line carries an
// `action` field telling the operator what to do. Thread-safe (one write per line).
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

#include "nlohmann/json.hpp"

namespace yrd::log {

enum class Level : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kCritical = 4 };

inline std::atomic<int>& MinimumLevel() {
  static std::atomic<int> level{static_cast<int>(Level::kInfo)};
  return level;
}

inline void Write(Level level, std::string_view event, nlohmann::json fields = nlohmann::json::object()) {
  if (static_cast<int>(level) < MinimumLevel().load(std::memory_order_relaxed)) return;
  static constexpr const char* kNames[] = {"debug", "info", "warning", "error", "critical"};
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const time_t seconds = static_cast<time_t>(ms / 1000);
  struct tm utc {};
  gmtime_r(&seconds, &utc);
  char stamp[96];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<int>(ms % 1000));
  nlohmann::json line = {{"ts", stamp}, {"level", kNames[static_cast<int>(level)]}, {"event", event}};
  for (auto& [key, value] : fields.items()) line[key] = value;
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  text.push_back('\n');
  // One write(2) per line keeps lines whole when threads log at once.
  const ssize_t written = ::write(STDERR_FILENO, text.data(), text.size());
  (void)written;
}

inline void Info(std::string_view event, nlohmann::json fields = nlohmann::json::object()) {
  Write(Level::kInfo, event, std::move(fields));
}
inline void Warning(std::string_view event, nlohmann::json fields = nlohmann::json::object()) {
  Write(Level::kWarning, event, std::move(fields));
}
inline void Error(std::string_view event, nlohmann::json fields = nlohmann::json::object()) {
  Write(Level::kError, event, std::move(fields));
}

}  // namespace yrd::log
