// The daemon's admin endpoint, on a real clearingd over a real broker: metrics that parse as
// Prometheus text and move with the events, readiness, window status, and the token-protected
// close command; SIGHUP reloads of a good and of a bad registry.
#include <signal.h>
#include <sys/wait.h>

#include <cctype>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/scenario.h"

namespace yrd::testing {
namespace {

// Every line is a comment (# HELP / # TYPE) or `name{label="value",...} number`.
bool IsSampleLine(const std::string& line) {
  auto name_char = [](char c, bool first) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
           (!first && std::isdigit(static_cast<unsigned char>(c)));
  };
  size_t i = 0;
  if (line.empty() || !name_char(line[0], true)) return false;
  while (i < line.size() && name_char(line[i], i == 0)) ++i;
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      const size_t label_start = i;
      while (i < line.size() && name_char(line[i], i == label_start)) ++i;
      if (i == label_start || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') return false;
      i += 2;
      while (i < line.size() && line[i] != '"') i += line[i] == '\\' ? 2 : 1;
      if (i >= line.size()) return false;
      ++i;  // closing quote
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return false;
    ++i;  // closing brace
  }
  if (i >= line.size() || line[i] != ' ') return false;
  const std::string value = line.substr(i + 1);
  if (value == "+Inf" || value == "-Inf" || value == "NaN") return true;
  char* end = nullptr;
  std::strtod(value.c_str(), &end);
  return !value.empty() && end == value.c_str() + value.size();
}

std::vector<std::string> PrometheusViolations(const std::string& metrics) {
  std::vector<std::string> bad;
  std::istringstream lines(metrics);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    const bool ok = line[0] == '#' ? (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) : IsSampleLine(line);
    if (!ok) bad.push_back(line);
  }
  return bad;
}

TEST(Admin, MetricsMoveWithEventsAndCloseNeedsTheToken) {
  Scenario scenario;
  scenario.StartBroker(4);
  scenario.Prepare(/*merchants=*/100, /*seed=*/31);
  auto daemon = scenario.StartDaemon();
  ASSERT_TRUE(WaitFor([&] { return scenario.AdminPort() != 0; }, std::chrono::seconds(60)))
      << ReadFile(scenario.daemon_log());
  ASSERT_TRUE(WaitFor([&] { return scenario.Http("GET", "/healthz").first == 200; }, std::chrono::seconds(30)));
  const auto [before_code, before] = scenario.Http("GET", "/metrics");
  ASSERT_EQ(before_code, 200);
  EXPECT_EQ(MetricSample(before, "yrd_events_consumed_total"), 0);

  scenario.Generate(20'000, /*seed=*/37);
  ASSERT_TRUE(scenario.WaitCaughtUp(std::chrono::minutes(2))) << ReadFile(scenario.daemon_log());
  std::string after;
  ASSERT_TRUE(WaitFor(
      [&] {
        after = scenario.Http("GET", "/metrics").second;
        return MetricSample(after, "yrd_events_consumed_total") == static_cast<double>(scenario.messages());
      },
      std::chrono::seconds(30)))
      << after;
  EXPECT_GT(MetricSample(after, "yrd_events_applied_total"), 0);
  EXPECT_GT(MetricSample(after, "yrd_commit_latency_seconds_count"), 0);
  for (const std::string& line : PrometheusViolations(after)) ADD_FAILURE() << "not Prometheus text: " << line;
  EXPECT_NE(after.find("yrd_consumer_lag_messages{"), std::string::npos);
  EXPECT_TRUE(WaitFor([&] { return scenario.Http("GET", "/readyz").first == 200; }, std::chrono::seconds(30)));

  const auto [window_code, window] = scenario.Http("GET", "/v1/windows/20261127");
  EXPECT_EQ(window_code, 200);
  EXPECT_NE(window.find("\"state\":\"open\""), std::string::npos) << window;

  // Without the token, or with a wrong one: 401 and nothing closes.
  EXPECT_EQ(scenario.Http("POST", "/v1/windows/20261127/close").first, 401);
  EXPECT_EQ(scenario.Http("POST", "/v1/windows/20261127/close", "wrong-token-wrong-token").first, 401);
  EXPECT_NE(scenario.Http("GET", "/v1/windows/20261127").second.find("\"state\":\"open\""), std::string::npos);
  // With it: accepted, closed, and its files are written.
  EXPECT_EQ(scenario.Http("POST", "/v1/windows/20261127/close", kAdminToken).first, 202);
  EXPECT_TRUE(WaitFor(
      [&] { return scenario.Http("GET", "/v1/windows/20261127").second.find("files_written") != std::string::npos; },
      std::chrono::minutes(2)))
      << ReadFile(scenario.daemon_log());
  EXPECT_FALSE(ReadFile(scenario.files_dir() + "/MANIFEST").empty());
  // The file set is in the metrics: its window, when, and how many files (MANIFEST included).
  const std::string manifest = ReadFile(scenario.files_dir() + "/MANIFEST");
  const int64_t manifest_files = std::count(manifest.begin(), manifest.end(), '\n');  // its lines but the last, plus itself
  auto file_set_files = [&] {
    const std::string metrics = scenario.Http("GET", "/metrics").second;
    const std::string sample = "yrd_last_file_set_files{window=\"20261127\"} ";
    const size_t at = metrics.find(sample);
    return at == std::string::npos ? -1 : std::stoll(metrics.substr(at + sample.size()));
  };
  EXPECT_EQ(file_set_files(), manifest_files);
  EXPECT_NE(scenario.Http("GET", "/metrics").second.find("yrd_last_file_set_timestamp_seconds{window=\"20261127\"}"),
            std::string::npos);
  // A second close of the closed window: 409. A day that never was: 404, and no file set.
  const auto [again_code, again] = scenario.Http("POST", "/v1/windows/20261127/close", kAdminToken);
  EXPECT_EQ(again_code, 409) << again;
  EXPECT_NE(again.find("already files_written"), std::string::npos) << again;
  const auto [never_code, never] = scenario.Http("POST", "/v1/windows/20261115/close", kAdminToken);
  EXPECT_EQ(never_code, 404) << never;
  EXPECT_EQ(scenario.Http("GET", "/v1/windows/20261115").first, 404);
  EXPECT_FALSE(std::filesystem::exists(scenario.dir() / "files/20261115"));

  // SIGHUP with a broken registry: refused, the daemon goes on; with a good one: reloaded.
  const std::string registry = ReadFile(scenario.dir() / "registry.toml");
  WriteFile(scenario.dir() / "registry.toml", registry + "\n[[bank]]\nbank_id = \"B9\"\n");
  daemon->Signal(SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return ReadFile(scenario.daemon_log()).find("registry_reload_refused") != std::string::npos; },
                      std::chrono::seconds(30)));
  EXPECT_TRUE(daemon->running());
  WriteFile(scenario.dir() / "registry.toml", registry);
  daemon->Signal(SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return ReadFile(scenario.daemon_log()).find("registry_reloaded") != std::string::npos; },
                      std::chrono::seconds(30)));

  daemon->Signal(SIGTERM);
  const std::optional<int> status = daemon->Wait(std::chrono::seconds(60));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << ReadFile(scenario.daemon_log());

  // After a restart the last file set is still in the metrics, so "no file set for a day" can
  // fire (or not) from the first scrape.
  auto restarted = scenario.StartDaemon();
  ASSERT_TRUE(WaitFor([&] { return scenario.Http("GET", "/healthz").first == 200; }, std::chrono::seconds(60)))
      << ReadFile(scenario.daemon_log());
  EXPECT_TRUE(WaitFor([&] { return file_set_files() == manifest_files; }, std::chrono::seconds(30)));
  restarted->Signal(SIGTERM);
  EXPECT_TRUE(restarted->Wait(std::chrono::seconds(60)).has_value());
  // Every line the daemon logged is JSON (librdkafka's own lines included).
  std::istringstream lines(ReadFile(scenario.daemon_log()));
  for (std::string line; std::getline(lines, line);) {
    EXPECT_FALSE(nlohmann::json::parse(line, nullptr, false).is_discarded()) << line;
  }
}

}  // namespace
}  // namespace yrd::testing
