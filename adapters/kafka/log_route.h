// RouteKafkaLogs: librdkafka's own log lines ("%3|1701...|FAIL|rdkafka#producer-1| ...") go to
// stderr raw by default, between the daemon's JSON lines, so a log reader such as jq fails on
// them. Every handle's configuration gets this callback instead, which writes each line through
// the JSON logger with its level, facility and client name. Thread-safe: librdkafka calls it on
// its own threads, and log::Write writes each line in one write(2).
#pragma once

#include <librdkafka/rdkafka.h>

#include "adapters/log/log.h"

namespace yrd::kafka {

// librdkafka's levels are syslog's: 0-2 emergency to critical, 3 error, 4 warning, 5 notice,
// 6 info, 7 debug.
[[nodiscard]] inline log::Level KafkaLogLevel(int syslog_level) {
  if (syslog_level <= 2) return log::Level::kCritical;
  if (syslog_level == 3) return log::Level::kError;
  if (syslog_level == 4) return log::Level::kWarning;
  if (syslog_level <= 6) return log::Level::kInfo;
  return log::Level::kDebug;
}

inline void RouteKafkaLogs(rd_kafka_conf_t* conf) {
  rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t* handle, int level, const char* facility, const char* text) {
    nlohmann::json fields = {{"kafka_level", level},
                             {"facility", facility},
                             {"client", handle != nullptr ? rd_kafka_name(handle) : ""},
                             {"detail", text}};
    if (level <= 4) {
      fields["action"] = "none if it clears; if it repeats, check the brokers named in the detail";
    }
    log::Write(KafkaLogLevel(level), "kafka_log", std::move(fields));
  });
}

}  // namespace yrd::kafka
