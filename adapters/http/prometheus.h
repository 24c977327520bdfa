// PrometheusText: builds a page in the Prometheus text exposition format, version 0.0.4 (the
// body of GET /metrics). A page is a sequence of metric families; each family is opened with
// Family (which writes its # HELP and # TYPE lines once) and then receives its samples, every one
// with the family's name, so a sample can never land under the wrong HELP/TYPE. Label values are
// escaped (backslash, double quote, line feed) and may hold any UTF-8 text; metric and label names
// are fixed by the program and checked, and a malformed or repeated one is a programming error
// that stops the process (YRD_ASSERT), since a page Prometheus cannot parse hides every metric.
//
// Histograms are rendered from engine/base/histogram.h's LatencyHistogram: its microsecond buckets
// become cumulative `le` buckets in seconds, plus `+Inf`, `_sum` (seconds) and `_count`.
//
// One PrometheusText per page, built and read by one thread; not thread-safe.
#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/base/histogram.h"

namespace yrd::http {

// The Content-Type of a page built by PrometheusText.
inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

// Label pairs of one sample: {{"stage", "ledger"}, {"partition", "3"}}. Names must match
// [a-zA-Z_][a-zA-Z0-9_]* and not start with "__" (reserved); values are escaped.
using PrometheusLabels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

enum class PrometheusType { kCounter, kGauge, kHistogram };

class PrometheusText {
 public:
  // Opens the family `name` ([a-zA-Z_:][a-zA-Z0-9_:]*, units last: yrd_commit_latency_seconds,
  // yrd_events_applied_total) and writes its HELP and TYPE lines. A name may be opened once per
  // page. `help` is one line of plain text (a line feed or backslash in it is escaped).
  void Family(std::string_view name, PrometheusType type, std::string_view help);

  // A sample of the open counter or gauge family. Integers are written exactly.
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  void Sample(PrometheusLabels labels, T value) {
    SampleText(labels, std::to_string(value));
  }
  // A gauge or counter value that is not an integer (a timestamp in seconds, a ratio). NaN and
  // infinities are written as Prometheus spells them.
  void Sample(PrometheusLabels labels, double value);

  // The open histogram family's series for `labels`: one _bucket line per LatencyHistogram bucket
  // whose upper bound is exact (the last bucket also holds everything above it, so it only
  // counts toward +Inf), then +Inf, _sum in seconds and _count. Counts are cumulative and read
  // once, so the series is consistent with itself even while another thread records.
  void Histogram(PrometheusLabels labels, const LatencyHistogram& histogram);

  // Shorthands for a family with one unlabelled sample.
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  void Counter(std::string_view name, std::string_view help, T value) {
    Family(name, PrometheusType::kCounter, help);
    Sample({}, value);
  }
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  void Gauge(std::string_view name, std::string_view help, T value) {
    Family(name, PrometheusType::kGauge, help);
    Sample({}, value);
  }

  // The page so far.
  [[nodiscard]] const std::string& text() const { return text_; }
  // Moves the page out; the object may then be reused for a new page.
  [[nodiscard]] std::string Take();

 private:
  void SampleText(PrometheusLabels labels, std::string_view value);
  void AppendSeries(std::string_view suffix, PrometheusLabels labels, std::string_view extra_label_name,
                    std::string_view extra_label_value, std::string_view value);

  std::string text_;
  std::string family_;  // name of the open family; empty before the first Family call
  PrometheusType type_ = PrometheusType::kCounter;
  std::vector<std::string> family_names_;  // every family opened on this page
};

// Helpers, public so the tests can check them directly.
// A label value with \ " and line feed escaped, as the text format requires.
[[nodiscard]] std::string EscapePrometheusLabelValue(std::string_view value);
// Microseconds written as exact decimal seconds: 1 -> "0.000001", 1500000 -> "1.5", 0 -> "0".
[[nodiscard]] std::string MicrosecondsAsSeconds(uint64_t microseconds);
// True for a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or label name ([a-zA-Z_][a-zA-Z0-9_]*).
[[nodiscard]] bool IsPrometheusMetricName(std::string_view name);
[[nodiscard]] bool IsPrometheusLabelName(std::string_view name);

}  // namespace yrd::http
