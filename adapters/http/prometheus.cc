#include "adapters/http/prometheus.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "engine/base/assert.h"
#include "fmt/format.h"

namespace yrd::http {
namespace {

constexpr bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

std::string_view TypeName(PrometheusType type) {
  switch (type) {
    case PrometheusType::kCounter: return "counter";
    case PrometheusType::kGauge: return "gauge";
    case PrometheusType::kHistogram: return "histogram";
  }
  return "untyped";
}

// HELP text escapes only backslash and line feed (the text format's rule for docstrings).
void AppendEscapedHelp(std::string& out, std::string_view help) {
  for (char c : help) {
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
}

std::string FormatDouble(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // The shortest text that reads back as the same double.
  return fmt::format("{}", value);
}

}  // namespace

bool IsPrometheusMetricName(std::string_view name) {
  if (name.empty()) return false;
  if (!IsAsciiLetter(name[0]) && name[0] != '_' && name[0] != ':') return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return IsAsciiLetter(c) || IsAsciiDigit(c) || c == '_' || c == ':'; });
}

bool IsPrometheusLabelName(std::string_view name) {
  if (name.empty()) return false;
  if (!IsAsciiLetter(name[0]) && name[0] != '_') return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return IsAsciiLetter(c) || IsAsciiDigit(c) || c == '_'; });
}

std::string EscapePrometheusLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': out.append("\\\\"); break;
      case '"': out.append("\\\""); break;
      case '\n': out.append("\\n"); break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string MicrosecondsAsSeconds(uint64_t microseconds) {
  constexpr uint64_t kMicrosecondsPerSecond = 1'000'000;
  std::string out = std::to_string(microseconds / kMicrosecondsPerSecond);
  uint64_t fraction = microseconds % kMicrosecondsPerSecond;
  if (fraction == 0) return out;
  std::array<char, 6> digits{};
  for (size_t i = digits.size(); i-- > 0;) {
    digits[i] = static_cast<char>('0' + fraction % 10);
    fraction /= 10;
  }
  size_t length = digits.size();
  while (digits[length - 1] == '0') --length;
  out.push_back('.');
  out.append(digits.data(), length);
  return out;
}

void PrometheusText::Family(std::string_view name, PrometheusType type, std::string_view help) {
  YRD_ASSERT(IsPrometheusMetricName(name));
  YRD_ASSERT(std::find(family_names_.begin(), family_names_.end(), name) == family_names_.end());
  family_names_.emplace_back(name);
  family_.assign(name);
  type_ = type;
  text_.append("# HELP ").append(name).push_back(' ');
  AppendEscapedHelp(text_, help);
  text_.append("\n# TYPE ").append(name).push_back(' ');
  text_.append(TypeName(type)).push_back('\n');
}

void PrometheusText::Sample(PrometheusLabels labels, double value) { SampleText(labels, FormatDouble(value)); }

void PrometheusText::SampleText(PrometheusLabels labels, std::string_view value) {
  YRD_ASSERT(!family_.empty());
  YRD_ASSERT(type_ != PrometheusType::kHistogram);
  AppendSeries("", labels, "", "", value);
}

void PrometheusText::Histogram(PrometheusLabels labels, const LatencyHistogram& histogram) {
  YRD_ASSERT(!family_.empty());
  YRD_ASSERT(type_ == PrometheusType::kHistogram);
  for (const auto& [label_name, label_value] : labels) YRD_ASSERT(label_name != "le");
  std::array<uint64_t, LatencyHistogram::kBucketCount> counts{};
  for (size_t i = 0; i < counts.size(); ++i) counts[i] = histogram.BucketCount(i);
  const uint64_t sum_us = histogram.SumUs();
  uint64_t cumulative = 0;
  // The last bucket also counts every latency above its bound, so its bound is not an honest
  // `le`: its observations are only counted in +Inf.
  for (size_t i = 0; i + 1 < counts.size(); ++i) {
    cumulative += counts[i];
    AppendSeries("_bucket", labels, "le",
                 MicrosecondsAsSeconds(static_cast<uint64_t>(LatencyHistogram::BucketUpperBoundUs(i))),
                 std::to_string(cumulative));
  }
  cumulative += counts.back();
  const std::string total = std::to_string(cumulative);
  AppendSeries("_bucket", labels, "le", "+Inf", total);
  AppendSeries("_sum", labels, "", "", MicrosecondsAsSeconds(sum_us));
  AppendSeries("_count", labels, "", "", total);
}

void PrometheusText::AppendSeries(std::string_view suffix, PrometheusLabels labels,
                                  std::string_view extra_label_name, std::string_view extra_label_value,
                                  std::string_view value) {
  text_.append(family_).append(suffix);
  const bool has_labels = labels.size() > 0 || !extra_label_name.empty();
  if (has_labels) {
    text_.push_back('{');
    bool first = true;
    auto append_label = [&](std::string_view label_name, std::string_view label_value) {
      YRD_ASSERT(IsPrometheusLabelName(label_name));
      YRD_ASSERT(!label_name.starts_with("__"));
      if (!first) text_.push_back(',');
      first = false;
      text_.append(label_name).append("=\"").append(EscapePrometheusLabelValue(label_value)).push_back('"');
    };
    for (const auto& [label_name, label_value] : labels) append_label(label_name, label_value);
    if (!extra_label_name.empty()) append_label(extra_label_name, extra_label_value);
    text_.push_back('}');
  }
  text_.push_back(' ');
  text_.append(value).push_back('\n');
}

std::string PrometheusText::Take() {
  std::string page = std::move(text_);
  text_.clear();
  family_.clear();
  family_names_.clear();
  return page;
}

}  // namespace yrd::http
