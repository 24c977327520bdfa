// The admin endpoint and the Prometheus text format. A real AdminServer listens on 127.0.0.1
// with a free port and its io_context runs on a thread of the test; a raw POSIX-socket client
// (receive timeout 10 s, so a server that never answers fails the test instead of hanging it)
// sends bytes exactly as written, including broken ones. Nothing sleeps: every wait is for a
// response or for the server closing the connection.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "adapters/http/admin_server.h"
#include "adapters/http/clearing_metrics.h"
#include "adapters/http/prometheus.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http.hpp"
#include "gtest/gtest.h"

namespace yrd::http {
namespace {

namespace bhttp = boost::beast::http;

constexpr std::string_view kToken = "s3cret-close-token-0123456789";
constexpr int kClientReceiveTimeoutSeconds = 10;
// Attempts to get a slot back after closing connections (the server learns of a client's close
// asynchronously); each attempt is a connect and one read.
constexpr int kReconnectAttemptsMax = 200;

// ---- a tiny Prometheus text-format checker -------------------------------------------------

bool IsNameStart(char c, bool allow_colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
}
bool IsNameChar(char c, bool allow_colon) { return IsNameStart(c, allow_colon) || (c >= '0' && c <= '9'); }

// Reads a name at `pos`; empty when there is none.
std::string ReadName(std::string_view line, size_t& pos, bool allow_colon) {
  const size_t start = pos;
  if (pos >= line.size() || !IsNameStart(line[pos], allow_colon)) return {};
  while (pos < line.size() && IsNameChar(line[pos], allow_colon)) ++pos;
  return std::string(line.substr(start, pos - start));
}

bool IsSampleValue(std::string_view text) {
  if (text == "+Inf" || text == "-Inf" || text == "NaN") return true;
  if (text.empty()) return false;
  const std::string copy(text);
  char* end = nullptr;
  errno = 0;
  (void)std::strtod(copy.c_str(), &end);
  return errno == 0 && end == copy.c_str() + copy.size();
}

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;  // unescaped values
  std::string value;
};

struct PromPage {
  std::map<std::string, std::string> types;  // family -> type
  std::set<std::string> helps;
  std::vector<PromSample> samples;

  [[nodiscard]] std::optional<std::string> Value(std::string_view name,
                                                 const std::map<std::string, std::string>& labels = {}) const {
    for (const PromSample& sample : samples) {
      if (sample.name == name && sample.labels == labels) return sample.value;
    }
    return std::nullopt;
  }
};

// Checks `text` line by line: every comment is HELP, TYPE or free text; every other line is
// `name{label="value",...} value`; every sample belongs to a family whose HELP and TYPE came
// first (a histogram's _bucket/_sum/_count to the histogram). Returns the first problem, or
// nullopt with `page` filled.
std::optional<std::string> ParsePrometheusText(std::string_view text, PromPage& page) {
  if (text.empty() || text.back() != '\n') return "the page must end with a line feed";
  size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text.remove_prefix(end + 1);
    const std::string where = "line " + std::to_string(line_number) + " \"" + std::string(line) + "\": ";
    if (line.empty()) continue;
    if (line.front() == '#') {
      const bool help = line.starts_with("# HELP ");
      const bool type = line.starts_with("# TYPE ");
      if (!help && !type) continue;
      size_t pos = 7;
      const std::string name = ReadName(line, pos, true);
      if (name.empty() || pos >= line.size() || line[pos] != ' ') return where + "bad metric name";
      const std::string_view rest = line.substr(pos + 1);
      if (help) {
        if (!page.helps.insert(name).second) return where + "second HELP";
      } else {
        static const std::set<std::string_view> kTypes = {"counter", "gauge", "histogram", "summary", "untyped"};
        if (!kTypes.contains(rest)) return where + "unknown type";
        if (!page.types.emplace(name, std::string(rest)).second) return where + "second TYPE";
      }
      continue;
    }
    PromSample sample;
    size_t pos = 0;
    sample.name = ReadName(line, pos, true);
    if (sample.name.empty()) return where + "no metric name";
    if (pos < line.size() && line[pos] == '{') {
      ++pos;
      while (pos < line.size() && line[pos] != '}') {
        const std::string label = ReadName(line, pos, false);
        if (label.empty()) return where + "bad label name";
        if (line.substr(pos, 2) != "=\"") return where + "label without =\"";
        pos += 2;
        std::string value;
        while (pos < line.size() && line[pos] != '"') {
          if (line[pos] == '\\') {
            if (pos + 1 >= line.size()) return where + "dangling backslash";
            const char escaped = line[pos + 1];
            if (escaped == 'n') {
              value.push_back('\n');
            } else if (escaped == '\\' || escaped == '"') {
              value.push_back(escaped);
            } else {
              return where + "bad escape";
            }
            pos += 2;
          } else {
            value.push_back(line[pos++]);
          }
        }
        if (pos >= line.size()) return where + "unterminated label value";
        ++pos;  // closing quote
        if (!sample.labels.emplace(label, value).second) return where + "repeated label";
        if (pos < line.size() && line[pos] == ',') ++pos;
      }
      if (pos >= line.size()) return where + "unterminated labels";
      ++pos;  // '}'
    }
    if (pos >= line.size() || line[pos] != ' ') return where + "no space before the value";
    std::string_view value = line.substr(pos + 1);
    if (const size_t space = value.find(' '); space != std::string_view::npos) {
      // An optional integer timestamp may follow.
      const std::string_view timestamp = value.substr(space + 1);
      if (timestamp.empty() || timestamp.find_first_not_of("-0123456789") != std::string_view::npos) {
        return where + "bad timestamp";
      }
      value = value.substr(0, space);
    }
    if (!IsSampleValue(value)) return where + "bad value";
    sample.value = std::string(value);
    std::string family = sample.name;
    if (!page.types.contains(family)) {
      for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
        if (family.ends_with(suffix)) {
          const std::string base = family.substr(0, family.size() - suffix.size());
          if (page.types.contains(base) && page.types[base] == "histogram") family = base;
        }
      }
    }
    if (!page.types.contains(family)) return where + "sample before its TYPE";
    if (!page.helps.contains(family)) return where + "sample before its HELP";
    if (page.types[family] == "histogram" && family == sample.name) return where + "histogram sample without suffix";
    page.samples.push_back(std::move(sample));
  }
  for (const auto& [name, type] : page.types) {
    if (!page.helps.contains(name)) return "family " + name + " has TYPE but no HELP";
  }
  for (const std::string& name : page.helps) {
    if (!page.types.contains(name)) return "family " + name + " has HELP but no TYPE";
  }
  return std::nullopt;
}

// ---- the handler the server is given ---------------------------------------------------------

class FakeHandler final : public AdminHandler {
 public:
  FakeHandler() {
    for (int64_t latency_us : {1, 3, 700, 1500, 250'000, 1'000'000'000}) commit_latency_.Record(latency_us);
  }

  std::string MetricsText() override {
    metrics_calls.fetch_add(1);
    if (throw_from_metrics.load()) throw std::runtime_error("metrics source broken");
    ClearingMetrics metrics;
    metrics.events_consumed_count = 1200;
    metrics.events_applied_count = 1100;
    metrics.events_exact_duplicate_count = 40;
    metrics.events_late_count = 3;
    metrics.batches_committed_count = 12;
    metrics.store_written_bytes = 987654;
    metrics.exception_count_by_reason[static_cast<size_t>(Reason::kDuplicateConflict)] = 7;
    metrics.queue_depths = {{"ledger", 2}, {"done", 0}};
    // A label value that needs every escape.
    metrics.consumer_lags = {{"yrd.taps", 0, 15}, {"yrd.medical", 3, 0}, {"odd\"topic\\with\nbreak", 1, 2}};
    metrics.owned_partitions = {{"yrd.taps", 8}, {"yrd.medical", 8}};
    metrics.rebalance_count = 3;
    metrics.commit_latency = &commit_latency_;
    metrics.windows = {{*ParseWindowDate("20261126"), WindowState::kFilesWritten},
                       {*ParseWindowDate("20261127"), WindowState::kOpen}};
    metrics.last_file_set = ClearingMetrics::FileSet{*ParseWindowDate("20261126"), 1'764'201'600'123, 9};
    PrometheusText page;
    AppendClearingMetrics(metrics, page);
    page.Gauge("yrd_registry_merchants", "Merchants in the registry in force.", 250);
    return page.Take();
  }
  bool Healthy() override { return healthy.load(); }
  bool Ready(std::string& why_not) override {
    if (ready.load()) return true;
    why_not = "consumer lag 15000 messages above ready_lag_messages_max";
    return false;
  }
  nlohmann::json Windows() override {
    window_calls.fetch_add(1);
    return nlohmann::json{{"windows", nlohmann::json::array({{{"date", "20261127"}, {"state", "open"}}})}};
  }
  std::optional<nlohmann::json> Window(WindowDay day) override {
    window_calls.fetch_add(1);
    if (FormatWindowDay(day) != "20261127") return std::nullopt;
    return nlohmann::json{{"date", "20261127"}, {"state", "open"}};
  }
  absl::StatusOr<nlohmann::json> CloseWindow(WindowDay day) override {
    close_calls.fetch_add(1);
    {
      std::lock_guard lock(mutex_);
      closed_days_.push_back(day);
    }
    if (FormatWindowDay(day) == "20261126") return absl::FailedPreconditionError("window 20261126 is already closed");
    return nlohmann::json{{"date", FormatWindowDay(day)}, {"state", "closing"}};
  }

  std::vector<WindowDay> closed_days() {
    std::lock_guard lock(mutex_);
    return closed_days_;
  }

  std::atomic<bool> healthy{true};
  std::atomic<bool> ready{true};
  std::atomic<bool> throw_from_metrics{false};
  std::atomic<int> metrics_calls{0};
  std::atomic<int> window_calls{0};
  std::atomic<int> close_calls{0};

 private:
  LatencyHistogram commit_latency_;
  std::mutex mutex_;
  std::vector<WindowDay> closed_days_;
};

// ---- a raw client ----------------------------------------------------------------------------

struct Reply {
  unsigned status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lowercase names
  bool keep_alive = false;
};

class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval timeout{kClientReceiveTimeoutSeconds, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  [[nodiscard]] bool connected() const { return connected_; }

  // False when the server closed or reset the connection first.
  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t sent = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (sent <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(sent));
    }
    return true;
  }

  // One response, or nullopt if the connection ended (or the receive timed out) first.
  std::optional<Reply> Read() {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(16 * 1024 * 1024);
    while (true) {
      if (!pending_.empty()) {
        boost::system::error_code error;
        const size_t used = parser.put(boost::asio::buffer(pending_.data(), pending_.size()), error);
        pending_.erase(0, used);
        if (!error && parser.is_done()) break;
        if (error && error != bhttp::error::need_more) return std::nullopt;
        if (!error && used > 0) continue;
      }
      char chunk[4096];
      const ssize_t received = ::recv(fd_, chunk, sizeof chunk, 0);
      if (received <= 0) {
        boost::system::error_code error;
        parser.put_eof(error);
        if (error || !parser.is_done()) return std::nullopt;
        break;
      }
      pending_.append(chunk, static_cast<size_t>(received));
    }
    const auto& message = parser.get();
    Reply reply;
    reply.status = message.result_int();
    reply.body = message.body();
    reply.keep_alive = message.keep_alive();
    for (const auto& field : message) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      reply.headers[name] = std::string(field.value());
    }
    return reply;
  }

  // True when the server closes the connection (end of stream or reset) before sending more.
  bool ServerClosed() {
    char chunk[4096];
    while (true) {
      const ssize_t received = ::recv(fd_, chunk, sizeof chunk, 0);
      if (received == 0) return true;
      if (received < 0) return errno == ECONNRESET;
      // Bytes after a response the test already read: not a close.
      return false;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string pending_;
};

std::string Get(std::string_view path, std::string_view extra_headers = "") {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\n" + std::string(extra_headers) + "\r\n";
}
std::string Post(std::string_view path, std::string_view extra_headers = "", std::string_view body = "") {
  return "POST " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + std::string(extra_headers) + "\r\n" + std::string(body);
}
std::string Bearer(std::string_view token) { return "Authorization: Bearer " + std::string(token) + "\r\n"; }

// ---- the fixture: one server on a free port, its io_context on a thread ----------------------

class AdminServerTest : public ::testing::Test {
 protected:
  void StartServer(AdminServerOptions options) {
    options.port = 0;
    auto server = AdminServer::Start(io_, std::move(options), handler_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    io_thread_ = std::thread([this] { io_.run(); });
  }
  AdminServerOptions DefaultOptions() {
    AdminServerOptions options;
    options.close_token = std::string(kToken);
    return options;
  }
  void TearDown() override { StopServer(); }
  // Stops the server on its thread; run() then returns, since nothing else is queued.
  void StopServer() {
    if (!io_thread_.joinable()) return;
    boost::asio::post(io_, [this] { server_->Stop(); });
    io_thread_.join();
  }

  std::optional<Reply> Exchange(std::string_view request) {
    RawClient client(server_->port());
    if (!client.connected() || !client.Send(request)) return std::nullopt;
    return client.Read();
  }

  boost::asio::io_context io_;
  FakeHandler handler_;
  std::unique_ptr<AdminServer> server_;
  std::thread io_thread_;
};

// ---- Prometheus helper -------------------------------------------------------------------------

TEST(PrometheusText, EscapesBackslashQuoteAndLineFeedInLabelValues) {
  EXPECT_EQ(EscapePrometheusLabelValue("plain"), "plain");
  EXPECT_EQ(EscapePrometheusLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(EscapePrometheusLabelValue(""), "");
  EXPECT_EQ(EscapePrometheusLabelValue("上海"), "上海");
}

TEST(PrometheusText, MicrosecondsBecomeExactDecimalSeconds) {
  EXPECT_EQ(MicrosecondsAsSeconds(0), "0");
  EXPECT_EQ(MicrosecondsAsSeconds(1), "0.000001");
  EXPECT_EQ(MicrosecondsAsSeconds(1'500'000), "1.5");
  EXPECT_EQ(MicrosecondsAsSeconds(67'108'864), "67.108864");
  EXPECT_EQ(MicrosecondsAsSeconds(2'000'000), "2");
}

TEST(PrometheusText, NamesFollowTheTextFormatRules) {
  EXPECT_TRUE(IsPrometheusMetricName("yrd_commit_latency_seconds"));
  EXPECT_TRUE(IsPrometheusMetricName("ns:yrd_rate"));
  EXPECT_FALSE(IsPrometheusMetricName("1yrd"));
  EXPECT_FALSE(IsPrometheusMetricName("yrd-events"));
  EXPECT_FALSE(IsPrometheusMetricName(""));
  EXPECT_TRUE(IsPrometheusLabelName("partition"));
  EXPECT_FALSE(IsPrometheusLabelName("a:b"));
  EXPECT_FALSE(IsPrometheusLabelName(""));
}

TEST(PrometheusText, CountersAndLabelledGaugesRenderWithHelpAndType) {
  PrometheusText page;
  page.Counter("yrd_events_applied_total", "Events applied.", uint64_t{42});
  page.Family("yrd_consumer_lag_messages", PrometheusType::kGauge, "Lag with a \\ and a\nline feed.");
  page.Sample({{"topic", "yrd.taps"}, {"partition", "0"}}, int64_t{-1});
  page.Sample({{"topic", "a\"b"}, {"partition", "1"}}, 2.5);
  EXPECT_EQ(page.text(),
            "# HELP yrd_events_applied_total Events applied.\n"
            "# TYPE yrd_events_applied_total counter\n"
            "yrd_events_applied_total 42\n"
            "# HELP yrd_consumer_lag_messages Lag with a \\\\ and a\\nline feed.\n"
            "# TYPE yrd_consumer_lag_messages gauge\n"
            "yrd_consumer_lag_messages{topic=\"yrd.taps\",partition=\"0\"} -1\n"
            "yrd_consumer_lag_messages{topic=\"a\\\"b\",partition=\"1\"} 2.5\n");
  PromPage parsed;
  EXPECT_EQ(ParsePrometheusText(page.text(), parsed), std::nullopt);
}

TEST(PrometheusText, NonFiniteGaugesUseThePrometheusSpelling) {
  PrometheusText page;
  page.Family("yrd_ratio", PrometheusType::kGauge, "A ratio.");
  page.Sample({{"k", "a"}}, std::numeric_limits<double>::infinity());
  page.Sample({{"k", "b"}}, -std::numeric_limits<double>::infinity());
  page.Sample({{"k", "c"}}, std::numeric_limits<double>::quiet_NaN());
  EXPECT_NE(page.text().find("yrd_ratio{k=\"a\"} +Inf\n"), std::string::npos);
  EXPECT_NE(page.text().find("yrd_ratio{k=\"b\"} -Inf\n"), std::string::npos);
  EXPECT_NE(page.text().find("yrd_ratio{k=\"c\"} NaN\n"), std::string::npos);
}

TEST(PrometheusText, HistogramBucketsAreCumulativeSecondsEndingInInfEqualToCount) {
  LatencyHistogram histogram;
  histogram.Record(1);              // bucket le=0.000001
  histogram.Record(3);              // le=0.000004
  histogram.Record(1'000'000);      // le=1.048576
  histogram.Record(10'000'000'000);  // beyond the last bound: only in +Inf
  PrometheusText page;
  page.Family("yrd_commit_latency_seconds", PrometheusType::kHistogram, "Commit latency.");
  page.Histogram({}, histogram);
  const std::string& text = page.text();
  PromPage parsed;
  ASSERT_EQ(ParsePrometheusText(text, parsed), std::nullopt) << text;
  EXPECT_EQ(parsed.Value("yrd_commit_latency_seconds_bucket", {{"le", "0.000001"}}), "1");
  EXPECT_EQ(parsed.Value("yrd_commit_latency_seconds_bucket", {{"le", "0.000002"}}), "1");
  EXPECT_EQ(parsed.Value("yrd_commit_latency_seconds_bucket", {{"le", "0.000004"}}), "2");
  EXPECT_EQ(parsed.Value("yrd_commit_latency_seconds_bucket", {{"le", "1.048576"}}), "3");
  EXPECT_EQ(parsed.Value("yrd_commit_latency_seconds_bucket", {{"le", "33.554432"}}), "3");
  // The last LatencyHistogram bucket also holds overflow, so it has no `le` of its own.
  EXPECT_EQ(parsed.Value("yrd_commit_latency_seconds_bucket", {{"le", "67.108864"}}), std::nullopt);
  EXPECT_EQ(parsed.Value("yrd_commit_latency_seconds_bucket", {{"le", "+Inf"}}), "4");
  EXPECT_EQ(parsed.Value("yrd_commit_latency_seconds_count"), "4");
  EXPECT_EQ(parsed.Value("yrd_commit_latency_seconds_sum"), "10001.000004");
  uint64_t previous = 0;
  size_t bucket_count = 0;
  for (const PromSample& sample : parsed.samples) {
    if (sample.name != "yrd_commit_latency_seconds_bucket") continue;
    const uint64_t value = std::stoull(sample.value);
    EXPECT_GE(value, previous) << sample.labels.at("le");
    previous = value;
    ++bucket_count;
  }
  EXPECT_EQ(bucket_count, LatencyHistogram::kBucketCount);  // kBucketCount - 1 bounds, plus +Inf
}

TEST(PrometheusText, EmptyHistogramStillRendersEveryBucketAtZero) {
  LatencyHistogram histogram;
  PrometheusText page;
  page.Family("yrd_commit_latency_seconds", PrometheusType::kHistogram, "Commit latency.");
  page.Histogram({{"stage", "ledger"}}, histogram);
  PromPage parsed;
  ASSERT_EQ(ParsePrometheusText(page.text(), parsed), std::nullopt);
  EXPECT_EQ(parsed.Value("yrd_commit_latency_seconds_bucket", {{"stage", "ledger"}, {"le", "+Inf"}}), "0");
  EXPECT_EQ(parsed.Value("yrd_commit_latency_seconds_sum", {{"stage", "ledger"}}), "0");
}

TEST(PrometheusTextDeathTest, RepeatedFamilyStopsTheProcess) {
  EXPECT_DEATH(
      {
        PrometheusText page;
        page.Counter("yrd_events_applied_total", "Events applied.", 1);
        page.Counter("yrd_events_applied_total", "Events applied.", 2);
      },
      "invariant_broken");
}

TEST(PrometheusTextDeathTest, BadLabelNameStopsTheProcess) {
  EXPECT_DEATH(
      {
        PrometheusText page;
        page.Family("yrd_x", PrometheusType::kGauge, "x");
        page.Sample({{"bad-label", "v"}}, 1);
      },
      "invariant_broken");
}

TEST(ClearingMetrics, EveryReasonAndWindowStateHasASeries) {
  ClearingMetrics metrics;
  metrics.exception_count_by_reason[static_cast<size_t>(Reason::kStale)] = 5;
  metrics.windows = {{*ParseWindowDate("20261127"), WindowState::kClosing}};
  PrometheusText page;
  AppendClearingMetrics(metrics, page);
  PromPage parsed;
  ASSERT_EQ(ParsePrometheusText(page.text(), parsed), std::nullopt) << page.text();
  for (std::string_view reason : kReasonNames) {
    EXPECT_TRUE(parsed.Value("yrd_exceptions_total", {{"reason", std::string(reason)}}).has_value()) << reason;
  }
  EXPECT_EQ(parsed.Value("yrd_exceptions_total", {{"reason", "stale"}}), "5");
  EXPECT_EQ(parsed.Value("yrd_window_state", {{"window", "20261127"}, {"state", "closing"}}), "1");
  EXPECT_EQ(parsed.Value("yrd_window_state", {{"window", "20261127"}, {"state", "open"}}), "0");
  EXPECT_EQ(parsed.Value("yrd_window_state", {{"window", "20261127"}, {"state", "files_written"}}), "0");
  // No histogram without a source, and no file-set sample before the first set.
  EXPECT_FALSE(parsed.types.contains("yrd_commit_latency_seconds"));
  EXPECT_TRUE(parsed.types.contains("yrd_last_file_set_files"));
  EXPECT_EQ(parsed.Value("yrd_last_file_set_files", {{"window", "20261127"}}), std::nullopt);
}

// ---- the server --------------------------------------------------------------------------------

TEST_F(AdminServerTest, MetricsParseAsPrometheusTextWithHelpAndTypeForEveryFamily) {
  StartServer(DefaultOptions());
  auto reply = Exchange(Get("/metrics"));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200u);
  EXPECT_EQ(reply->headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  PromPage page;
  ASSERT_EQ(ParsePrometheusText(reply->body, page), std::nullopt) << reply->body;
  EXPECT_EQ(page.Value("yrd_events_consumed_total"), "1200");
  EXPECT_EQ(page.Value("yrd_events_applied_total"), "1100");
  EXPECT_EQ(page.Value("yrd_events_exact_duplicate_total"), "40");
  EXPECT_EQ(page.Value("yrd_events_late_total"), "3");
  EXPECT_EQ(page.Value("yrd_exceptions_total", {{"reason", "duplicate_conflict"}}), "7");
  EXPECT_EQ(page.Value("yrd_pipeline_queue_depth_batches", {{"stage", "ledger"}}), "2");
  EXPECT_EQ(page.Value("yrd_consumer_lag_messages", {{"topic", "yrd.taps"}, {"partition", "0"}}), "15");
  EXPECT_EQ(page.Value("yrd_consumer_lag_messages", {{"topic", "odd\"topic\\with\nbreak"}, {"partition", "1"}}), "2");
  EXPECT_EQ(page.Value("yrd_owned_partitions", {{"topic", "yrd.medical"}}), "8");
  EXPECT_EQ(page.Value("yrd_rebalances_total"), "3");
  EXPECT_EQ(page.types["yrd_rebalances_total"], "counter");
  EXPECT_EQ(page.types["yrd_commit_latency_seconds"], "histogram");
  EXPECT_EQ(page.Value("yrd_commit_latency_seconds_count"), "6");
  EXPECT_EQ(page.Value("yrd_window_state", {{"window", "20261126"}, {"state", "files_written"}}), "1");
  EXPECT_EQ(page.Value("yrd_last_file_set_timestamp_seconds", {{"window", "20261126"}}), "1764201600.123");
  EXPECT_EQ(page.Value("yrd_last_file_set_files", {{"window", "20261126"}}), "9");
  EXPECT_EQ(page.Value("yrd_registry_merchants"), "250");
}

TEST_F(AdminServerTest, HealthAndReadinessFollowTheHandler) {
  StartServer(DefaultOptions());
  auto healthy = Exchange(Get("/healthz"));
  ASSERT_TRUE(healthy);
  EXPECT_EQ(healthy->status, 200u);
  EXPECT_EQ(healthy->body, "ok\n");
  auto ready = Exchange(Get("/readyz"));
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200u);

  handler_.healthy = false;
  handler_.ready = false;
  auto unhealthy = Exchange(Get("/healthz"));
  ASSERT_TRUE(unhealthy);
  EXPECT_EQ(unhealthy->status, 503u);
  auto not_ready = Exchange(Get("/readyz"));
  ASSERT_TRUE(not_ready);
  EXPECT_EQ(not_ready->status, 503u);
  EXPECT_EQ(not_ready->body, "not ready: consumer lag 15000 messages above ready_lag_messages_max\n");
}

TEST_F(AdminServerTest, WindowsAreServedAsJson) {
  StartServer(DefaultOptions());
  auto all = Exchange(Get("/v1/windows"));
  ASSERT_TRUE(all);
  EXPECT_EQ(all->status, 200u);
  EXPECT_EQ(all->headers["content-type"], "application/json");
  EXPECT_EQ(nlohmann::json::parse(all->body)["windows"][0]["date"], "20261127");
  auto one = Exchange(Get("/v1/windows/20261127?verbose=1"));
  ASSERT_TRUE(one);
  EXPECT_EQ(one->status, 200u);
  EXPECT_EQ(nlohmann::json::parse(one->body)["state"], "open");
}

TEST_F(AdminServerTest, UnknownWindowIs404AndMalformedDateIs400WithoutAskingTheHandler) {
  StartServer(DefaultOptions());
  auto unknown = Exchange(Get("/v1/windows/20261128"));
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404u);
  const int calls = handler_.window_calls.load();
  for (std::string_view date : {"2026-11-27", "2026112", "202611270", "20261131", "20261300", "abcdefgh", ""}) {
    auto reply = Exchange(Get("/v1/windows/" + std::string(date)));
    ASSERT_TRUE(reply) << date;
    EXPECT_EQ(reply->status, 400u) << date;
  }
  EXPECT_EQ(handler_.window_calls.load(), calls);
}

TEST_F(AdminServerTest, UnknownPathIs404AndWrongMethodIs405) {
  StartServer(DefaultOptions());
  for (std::string_view path : {"/", "/metricsx", "/v1", "/v1/windows/20261127/open", "/v1/windows/20261127/close/x"}) {
    auto reply = Exchange(Get(path));
    ASSERT_TRUE(reply) << path;
    EXPECT_EQ(reply->status, 404u) << path;
  }
  auto post_metrics = Exchange(Post("/metrics"));
  ASSERT_TRUE(post_metrics);
  EXPECT_EQ(post_metrics->status, 405u);
  EXPECT_EQ(post_metrics->headers["allow"], "GET");
  auto delete_window = Exchange("DELETE /v1/windows/20261127 HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(delete_window);
  EXPECT_EQ(delete_window->status, 405u);
  auto get_close = Exchange(Get("/v1/windows/20261127/close", Bearer(kToken)));
  ASSERT_TRUE(get_close);
  EXPECT_EQ(get_close->status, 405u);
  EXPECT_EQ(get_close->headers["allow"], "POST");
  EXPECT_EQ(handler_.close_calls.load(), 0);
}

TEST_F(AdminServerTest, CloseWithoutOrWithAWrongTokenIs401AndNeverReachesTheHandler) {
  StartServer(DefaultOptions());
  const std::string path = "/v1/windows/20261127/close";
  const std::string wrong_tokens[] = {
      "",                                                   // no header at all
      Bearer(""),                                           // scheme, no token
      Bearer("wrong-token-wrong-token-wrong"),              // same length, other bytes
      Bearer(kToken.substr(0, kToken.size() - 1)),          // a prefix
      Bearer(std::string(kToken) + "x"),                    // longer
      "Authorization: Basic " + std::string(kToken) + "\r\n",  // another scheme
      "Authorization: " + std::string(kToken) + "\r\n",     // no scheme
  };
  for (const std::string& headers : wrong_tokens) {
    auto reply = Exchange(Post(path, headers));
    ASSERT_TRUE(reply) << headers;
    EXPECT_EQ(reply->status, 401u) << headers;
    EXPECT_EQ(reply->headers["www-authenticate"], "Bearer realm=\"clearingd\"");
  }
  // Unauthorized requests learn nothing, not even that the date is malformed.
  auto bad_date = Exchange(Post("/v1/windows/2026-11-27/close"));
  ASSERT_TRUE(bad_date);
  EXPECT_EQ(bad_date->status, 401u);
  EXPECT_EQ(handler_.close_calls.load(), 0);
}

TEST_F(AdminServerTest, CloseWithTheRightTokenReachesTheHandlerOnce) {
  StartServer(DefaultOptions());
  auto reply = Exchange(Post("/v1/windows/20261127/close", Bearer(kToken)));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 202u);
  EXPECT_EQ(nlohmann::json::parse(reply->body)["state"], "closing");
  ASSERT_EQ(handler_.closed_days(), std::vector<WindowDay>{*ParseWindowDate("20261127")});
  // The scheme is case-insensitive.
  auto lowercase = Exchange(Post("/v1/windows/20261127/close", "Authorization: bearer " + std::string(kToken) + "\r\n"));
  ASSERT_TRUE(lowercase);
  EXPECT_EQ(lowercase->status, 202u);
  EXPECT_EQ(handler_.close_calls.load(), 2);
}

TEST_F(AdminServerTest, AuthorizedCloseOfAMalformedDateIs400AndAHandlerErrorKeepsItsMeaning) {
  StartServer(DefaultOptions());
  auto bad_date = Exchange(Post("/v1/windows/20261131/close", Bearer(kToken)));
  ASSERT_TRUE(bad_date);
  EXPECT_EQ(bad_date->status, 400u);
  EXPECT_EQ(handler_.close_calls.load(), 0);
  auto already = Exchange(Post("/v1/windows/20261126/close", Bearer(kToken)));
  ASSERT_TRUE(already);
  EXPECT_EQ(already->status, 409u);
  const auto body = nlohmann::json::parse(already->body);
  EXPECT_EQ(body["code"], "FAILED_PRECONDITION");
  EXPECT_EQ(body["error"], "window 20261126 is already closed");
}

TEST_F(AdminServerTest, EmptyConfiguredTokenDisablesClose) {
  AdminServerOptions options = DefaultOptions();
  options.close_token.clear();
  StartServer(options);
  for (const std::string& headers : {std::string(), Bearer(""), Bearer(kToken)}) {
    auto reply = Exchange(Post("/v1/windows/20261127/close", headers));
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 403u);
  }
  EXPECT_EQ(handler_.close_calls.load(), 0);
}

TEST_F(AdminServerTest, OversizedBodyIs413AndTheConnectionCloses) {
  AdminServerOptions options = DefaultOptions();
  options.request_body_bytes_max = 4096;
  StartServer(options);
  // Exactly the maximum is accepted.
  auto at_max = Exchange(Post("/v1/windows/20261127/close", Bearer(kToken), std::string(4096, 'x')));
  ASSERT_TRUE(at_max);
  EXPECT_EQ(at_max->status, 202u);
  EXPECT_EQ(handler_.close_calls.load(), 1);

  RawClient client(server_->port());
  ASSERT_TRUE(client.connected());
  client.Send(Post("/v1/windows/20261127/close", Bearer(kToken), std::string(4097, 'x')));
  auto reply = client.Read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 413u);
  EXPECT_FALSE(reply->keep_alive);
  EXPECT_TRUE(client.ServerClosed());
  EXPECT_EQ(handler_.close_calls.load(), 1);
}

TEST_F(AdminServerTest, OversizedChunkedBodyIs413) {
  StartServer(DefaultOptions());
  RawClient client(server_->port());
  ASSERT_TRUE(client.connected());
  std::string request = "POST /v1/windows/20261127/close HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" +
                        Bearer(kToken) + "\r\n";
  for (int i = 0; i < 5; ++i) request += "400\r\n" + std::string(1024, 'y') + "\r\n";
  request += "0\r\n\r\n";
  client.Send(request);
  auto reply = client.Read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 413u);
  EXPECT_EQ(handler_.close_calls.load(), 0);
}

TEST_F(AdminServerTest, OversizedHeaderIs431AndTheConnectionCloses) {
  AdminServerOptions options = DefaultOptions();
  options.request_header_bytes_max = 8192;
  StartServer(options);
  RawClient client(server_->port());
  ASSERT_TRUE(client.connected());
  client.Send(Get("/metrics", "X-Padding: " + std::string(9000, 'p') + "\r\n"));
  auto reply = client.Read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 431u);
  EXPECT_TRUE(client.ServerClosed());
  EXPECT_EQ(handler_.metrics_calls.load(), 0);
}

TEST_F(AdminServerTest, MalformedRequestIs400) {
  StartServer(DefaultOptions());
  auto reply = Exchange("NOT HTTP AT ALL\r\n\r\n");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 400u);
}

TEST_F(AdminServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  StartServer(DefaultOptions());
  RawClient client(server_->port());
  ASSERT_TRUE(client.connected());
  // Two pipelined requests, then a third after the answers.
  ASSERT_TRUE(client.Send(Get("/healthz") + Get("/v1/windows")));
  auto first = client.Read();
  auto second = client.Read();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->status, 200u);
  EXPECT_TRUE(first->keep_alive);
  EXPECT_EQ(second->status, 200u);
  ASSERT_TRUE(client.Send(Get("/readyz", "Connection: close\r\n")));
  auto third = client.Read();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->status, 200u);
  EXPECT_FALSE(third->keep_alive);
  EXPECT_TRUE(client.ServerClosed());
}

TEST_F(AdminServerTest, Http10WithoutKeepAliveIsClosedAfterTheResponse) {
  StartServer(DefaultOptions());
  RawClient client(server_->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("GET /healthz HTTP/1.0\r\n\r\n"));
  auto reply = client.Read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200u);
  EXPECT_TRUE(client.ServerClosed());
}

TEST_F(AdminServerTest, IncompleteRequestIsClosedAfterTheTimeout) {
  AdminServerOptions options = DefaultOptions();
  options.request_timeout = kAdminRequestTimeoutMin;
  StartServer(options);
  RawClient client(server_->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("GET /metrics HTTP/1.1\r\nHost: x\r\n"));  // never finished
  EXPECT_TRUE(client.ServerClosed());
  EXPECT_EQ(handler_.metrics_calls.load(), 0);
}

TEST_F(AdminServerTest, ConnectionsBeyondTheMaximumAreRefusedWith503) {
  AdminServerOptions options = DefaultOptions();
  options.connections_max = 2;
  StartServer(options);
  RawClient first(server_->port());
  RawClient second(server_->port());
  ASSERT_TRUE(first.connected() && second.connected());
  // A served request proves each connection holds a slot.
  ASSERT_TRUE(first.Send(Get("/healthz")));
  ASSERT_TRUE(second.Send(Get("/healthz")));
  auto first_reply = first.Read();
  auto second_reply = second.Read();
  ASSERT_TRUE(first_reply && second_reply);
  EXPECT_EQ(first_reply->status, 200u);
  EXPECT_EQ(second_reply->status, 200u);

  for (int i = 0; i < 3; ++i) {
    RawClient extra(server_->port());
    ASSERT_TRUE(extra.connected());
    auto refused = extra.Read();
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 503u);
    EXPECT_EQ(refused->headers["retry-after"], "1");
    EXPECT_FALSE(refused->keep_alive);
    EXPECT_TRUE(extra.ServerClosed());
  }
  // The kept-alive connections are still served.
  ASSERT_TRUE(first.Send(Get("/healthz")));
  auto again = first.Read();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200u);
}

TEST_F(AdminServerTest, ASlotFreedByAClosedConnectionIsReused) {
  AdminServerOptions options = DefaultOptions();
  options.connections_max = 1;
  StartServer(options);
  {
    RawClient only(server_->port());
    ASSERT_TRUE(only.Send(Get("/healthz", "Connection: close\r\n")));
    auto reply = only.Read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 200u);
    EXPECT_TRUE(only.ServerClosed());
  }
  // The server notices the close asynchronously; a refused attempt is answered at once, so this
  // loop is bounded by the attempt count, not by time.
  std::optional<Reply> served;
  for (int attempt = 0; attempt < kReconnectAttemptsMax && !served; ++attempt) {
    RawClient next(server_->port());
    ASSERT_TRUE(next.Send(Get("/healthz")));
    auto reply = next.Read();
    ASSERT_TRUE(reply);
    if (reply->status == 200u) served = reply;
  }
  ASSERT_TRUE(served);
}

TEST_F(AdminServerTest, HandlerExceptionIs500AndTheServerGoesOn) {
  StartServer(DefaultOptions());
  handler_.throw_from_metrics = true;
  auto failed = Exchange(Get("/metrics"));
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, 500u);
  handler_.throw_from_metrics = false;
  auto served = Exchange(Get("/metrics"));
  ASSERT_TRUE(served);
  EXPECT_EQ(served->status, 200u);
}

TEST_F(AdminServerTest, StopClosesConnectionsAndLetsTheIoContextReturn) {
  StartServer(DefaultOptions());
  RawClient idle(server_->port());
  ASSERT_TRUE(idle.connected());
  ASSERT_TRUE(idle.Send(Get("/healthz")));
  ASSERT_TRUE(idle.Read());
  const uint16_t port = server_->port();
  StopServer();  // joins the io thread: run() returned
  EXPECT_TRUE(idle.ServerClosed());
  RawClient late(port);
  EXPECT_FALSE(late.connected());
}

TEST(AdminServerStart, RefusesOptionsOutOfRange) {
  boost::asio::io_context io;
  FakeHandler handler;
  auto start = [&](auto change) {
    AdminServerOptions options;
    options.port = 0;
    change(options);
    return AdminServer::Start(io, options, handler).status();
  };
  EXPECT_TRUE(start([](AdminServerOptions&) {}).ok());
  EXPECT_EQ(start([](AdminServerOptions& o) { o.connections_max = 0; }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(start([](AdminServerOptions& o) { o.connections_max = kAdminConnectionsMaxLimit + 1; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(start([](AdminServerOptions& o) { o.request_body_bytes_max = kAdminRequestBodyBytesMaxLimit + 1; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(start([](AdminServerOptions& o) { o.request_header_bytes_max = kAdminRequestHeaderBytesMaxMin - 1; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(start([](AdminServerOptions& o) { o.request_timeout = std::chrono::milliseconds(99); }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(start([](AdminServerOptions& o) { o.close_token = "short"; }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(start([](AdminServerOptions& o) { o.close_token = "has a space in the token"; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(start([](AdminServerOptions& o) { o.address = "localhost"; }).code(), absl::StatusCode::kInvalidArgument);
  const absl::Status short_token = start([](AdminServerOptions& o) { o.close_token = "short-secret"; });
  EXPECT_EQ(std::string(short_token.message()).find("short-secret"), std::string::npos) << short_token;
}

TEST(AdminServerStart, TakenPortIsUnavailable) {
  boost::asio::io_context io;
  FakeHandler handler;
  AdminServerOptions options;
  options.port = 0;
  auto first = AdminServer::Start(io, options, handler);
  ASSERT_TRUE(first.ok()) << first.status();
  options.port = (*first)->port();
  auto second = AdminServer::Start(io, options, handler);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace yrd::http
