// clearingd: the clearing daemon. Consumes yrd.taps and yrd.medical, deduplicates and nets
// them into the state store with exactly-once effect, closes windows on its clock and writes
// their clearing files. SIGTERM/SIGINT: stop consuming, commit what is in flight, exit 0.
// SIGHUP: reload the registry (a bad one is refused, the old one stays).
//
// Threads: the main thread runs the io_context (signals, timers, the admin endpoint); each
// member (one per ledger shard, pipeline.shards; tools/clearingd/member.h) has a worker thread
// that runs its pipeline's ingest stage (the pipeline owns the ledger thread), and a file writer
// thread. A store or broker failure that may clear by itself stops a member's consumption, and
// it reopens everything from its store after a pause: nothing is acknowledged past what was
// stored, so nothing is lost or doubled. A failure that cannot clear stops the whole process.

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>

#include "CLI/CLI.hpp"
#include "adapters/crypto/hmac.h"
#include "adapters/crypto/payload_sealer.h"
#include "adapters/fs/file_set.h"
#include "adapters/http/admin_server.h"
#include "adapters/http/clearing_metrics.h"
#include "adapters/http/prometheus.h"
#include "adapters/kafka/kafka_source.h"
#include "adapters/log/log.h"
#include "adapters/rocksdb/rocks_store.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/signal_set.hpp"
#include "boost/asio/steady_timer.hpp"
#include "engine/base/strings.h"
#include "tools/clearingd/config.h"
#include "tools/clearingd/member.h"

namespace yrd {
namespace {

// --check-config's look at an existing store (read-only, beside a running daemon): the card-token
// key must be the one its tokens were made with. A store that does not exist yet is fine.
absl::Status CheckStoreCardTokenKey(const std::string& store_path, std::string_view check_value) {
  if (!std::filesystem::exists(std::filesystem::path(store_path) / "CURRENT")) return absl::OkStatus();
  char scratch[] = "/tmp/clearingd-check-XXXXXX";
  if (::mkdtemp(scratch) == nullptr) return absl::InternalError("cannot create a scratch directory in /tmp");
  absl::Status status;
  {
    auto store = RocksStore::OpenSecondary(store_path, scratch);
    if (!store.ok()) {
      status = store.status();
    } else {
      std::string stored;
      bool found = false;
      status = (*store)->Get(Table::kMeta, kCardTokenKeyCheckKey, stored, found);
      if (status.ok() && found && stored != check_value) {
        status = absl::FailedPreconditionError(
            "privacy.card_token_key_file holds another key than the one this store's card tokens were made with");
      }
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(scratch, ignored);
  return status;
}

int Fail(std::string_view event, const absl::Status& status, std::string_view action) {
  log::Error(event, {{"error", status.ToString()}, {"action", action}});
  return 1;
}

// Reads the admin close token: the file's text without surrounding white space. Refuses a
// file readable by others than owner and group.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadSecretFile(path, "token file");
  if (!text.ok()) return text.status();
  std::string token = *std::move(text);
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.front()))) token.erase(token.begin());
  return token;
}


// The admin endpoint's options: the configured address and port, and the close token read from
// its file, checked as the server will check them.
absl::StatusOr<http::AdminServerOptions> AdminOptions(const DaemonConfig& config) {
  http::AdminServerOptions options;
  options.address = config.admin_address;
  options.port = static_cast<uint16_t>(config.admin_port);
  if (!config.admin_close_token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(config.admin_close_token_file);
    if (!token.ok()) return token.status();
    options.close_token = *std::move(token);
  }
  if (absl::Status s = http::CheckAdminServerOptions(options); !s.ok()) return s;
  return options;
}

// The process: signals, the registry, the clock, the admin endpoint and the metrics, over its
// members (one per ledger shard), each run on a worker thread of its own.
class Daemon final : public http::AdminHandler {
 public:
  Daemon(DaemonConfig config, http::AdminServerOptions admin_options, std::shared_ptr<const Registry> registry,
         Digests digests, std::unique_ptr<Clock> clock)
      : config_(std::move(config)),
        admin_options_(std::move(admin_options)),
        registry_(std::move(registry)),
        digests_(std::move(digests)),
        clock_(std::move(clock)) {}

  // What a member shares with the others; valid while the daemon lives.
  ProcessParts Parts(std::string card_key_check) {
    return {.registry = &registry_holder_,
            .clock = clock_.get(),
            .digests = &digests_,
            .card_key_check = std::move(card_key_check),
            .file_sets = &file_sets_};
  }
  // Before Run.
  void AddMember(std::unique_ptr<Member> member) { members_.push_back(std::move(member)); }

  // Runs until SIGTERM/SIGINT (returns 0) or a failure that cannot clear by itself (returns 1).
  int Run() {
    boost::asio::signal_set stop_signals(io_, SIGTERM, SIGINT);
    stop_signals.async_wait([this](const boost::system::error_code& error, int signal) {
      if (error) return;
      log::Info("stopping", {{"signal", signal}, {"detail", "finishing and committing the batches in flight"}});
      RequestStop();
    });
    boost::asio::signal_set reload_signals(io_, SIGHUP);
    std::function<void(const boost::system::error_code&, int)> on_reload = [&](const boost::system::error_code& error,
                                                                                int) {
      if (error) return;
      ReloadRegistry();
      reload_signals.async_wait(on_reload);
    };
    reload_signals.async_wait(on_reload);
    boost::asio::steady_timer progress(io_);
    std::function<void(const boost::system::error_code&)> on_progress = [&](const boost::system::error_code& error) {
      if (error) return;
      for (const std::unique_ptr<Member>& member : members_) member->LogProgress();
      progress.expires_after(config_.progress_log_interval);
      progress.async_wait(on_progress);
    };
    if (config_.progress_log_interval.count() > 0) {
      progress.expires_after(config_.progress_log_interval);
      progress.async_wait(on_progress);
    }

    auto admin = http::AdminServer::Start(io_, admin_options_, *this);
    if (!admin.ok()) {
      return Fail("admin_endpoint_failed", admin.status(), "free the port named by admin.port or choose another");
    }
    log::Info("admin_endpoint", {{"address", config_.admin_address}, {"port", (*admin)->port()}});

    std::vector<absl::Status> statuses(members_.size());
    std::atomic<size_t> running{members_.size()};
    std::vector<std::thread> workers;
    for (size_t i = 0; i < members_.size(); ++i) {
      workers.emplace_back([this, i, &statuses, &running, server = admin->get()] {
        statuses[i] = members_[i]->Run();
        // A member that cannot go on stops the process (its unit starts it again): the others
        // finish and commit their batches in flight.
        if (!statuses[i].ok()) RequestStop();
        if (running.fetch_sub(1) == 1) {
          boost::asio::post(io_, [this, server] {
            server->Stop();
            io_.stop();
          });
        }
      });
    }
    io_.run();
    for (std::thread& worker : workers) worker.join();
    const auto failed = std::find_if(statuses.begin(), statuses.end(), [](const absl::Status& s) { return !s.ok(); });
    if (failed != statuses.end()) {
      return Fail("stopped_on_error", *failed,
                  failed->code() == absl::StatusCode::kDataLoss
                      ? "messages are missing upstream; see the detail: nothing after the gap was applied"
                      : "fix the cause named in the error and start clearingd again; it resumes from its last commit");
    }
    log::Info("stopped", {});
    return 0;
  }

  // ---- AdminHandler: called on the io_context thread ----

  std::string MetricsText() override {
    http::ClearingMetrics m;
    LatencyHistogram commit_latency;
    bool consuming = false;
    for (const std::unique_ptr<Member>& member : members_) consuming = member->AddMetrics(m, commit_latency) || consuming;
    if (consuming) m.commit_latency = &commit_latency;
    if (const std::optional<WindowTable> windows = MergedWindows()) {
      for (const auto& [day, info] : *windows) {
        m.windows.push_back({day, info.state});
        for (size_t i = 0; i < kReasonCount; ++i) {
          m.exception_count_by_reason[i] += static_cast<uint64_t>(info.counters.exception_counts[i]);
        }
      }
    }
    if (const FileSetNote::Set last = file_sets_.Get(); last.day != 0) {
      m.last_file_set = http::ClearingMetrics::FileSet{last.day, last.written_at_ms, last.file_count};
    }
    http::PrometheusText page;
    http::AppendClearingMetrics(m, page);
    return page.Take();
  }

  bool Healthy() override { return true; }

  bool Ready(std::string& why_not) override {
    for (size_t i = 0; i < members_.size(); ++i) {
      if (members_[i]->Ready(why_not)) continue;
      if (members_.size() > 1) why_not = Cat("shard ", i, ": ", why_not);
      return false;
    }
    return true;
  }

  nlohmann::json Windows() override {
    nlohmann::json list = nlohmann::json::array();
    const std::optional<WindowTable> windows = MergedWindows();
    if (!windows) return list;
    for (const auto& [day, info] : *windows) list.push_back(WindowJson(day, info));
    return list;
  }

  std::optional<nlohmann::json> Window(WindowDay day) override {
    const std::optional<WindowTable> windows = MergedWindows();
    if (!windows) return std::nullopt;
    const auto it = windows->find(day);
    if (it == windows->end()) return std::nullopt;
    return WindowJson(day, it->second);
  }

  absl::StatusOr<nlohmann::json> CloseWindow(WindowDay day) override {
    const WindowDay today = config_.calendar.DayOf(clock_->NowMs());
    if (day > today) {
      return absl::FailedPreconditionError(Cat("window ", FormatWindowDay(day), " has not begun; only today's or an earlier window can be closed"));
    }
    const std::optional<WindowTable> windows = MergedWindows();
    if (!windows) return absl::UnavailableError("not consuming right now; try again when /readyz is ready");
    // Only a window that exists can close: one with activity (applied, duplicate or rejected
    // messages) or a persisted state. A day that never was gets no file set.
    const auto window = windows->find(day);
    if (window == windows->end()) {
      return absl::NotFoundError(Cat("window ", FormatWindowDay(day), " has no activity and no state: there is "
                                     "nothing to close and no file set to write"));
    }
    if (window->second.state >= WindowState::kClosed) {
      return absl::FailedPreconditionError(Cat("window ", FormatWindowDay(day), " is already ",
                                               WindowStateName(window->second.state)));
    }
    log::Info("window_close_requested", {{"window", FormatWindowDay(day)}});
    if (config_.group_assignment) {
      // One member's command reaches every member of the group, this process's included.
      if (absl::Status s = members_.front()->Close(day); !s.ok()) return s;
      return nlohmann::json{{"window", FormatWindowDay(day)},
                            {"detail", "the close is sent to every instance of the group through " +
                                           config_.control_topic + "; follow GET /v1/windows/" +
                                           FormatWindowDay(day)}};
    }
    for (const std::unique_ptr<Member>& member : members_) {
      if (absl::Status s = member->Close(day); !s.ok()) return s;
    }
    return nlohmann::json{{"window", FormatWindowDay(day)},
                          {"detail", "the close is committed with the next batch; follow GET /v1/windows/" +
                                         FormatWindowDay(day)}};
  }

 private:
  static nlohmann::json WindowJson(WindowDay day, const WindowInfo& info) {
    nlohmann::json exceptions = nlohmann::json::object();
    for (size_t i = 0; i < kReasonCount; ++i) {
      if (info.counters.exception_counts[i] != 0) exceptions[std::string(kReasonNames[i])] = info.counters.exception_counts[i];
    }
    nlohmann::json window = {{"window", FormatWindowDay(day)},
                             {"state", WindowStateName(info.state)},
                             {"applied", info.counters.applied_count},
                             {"exact_duplicates", info.counters.exact_duplicate_count},
                             {"late", info.counters.late_count},
                             {"exceptions", exceptions}};
    if (info.closed_at_ms != 0) window["closed_at"] = FormatChinaTime(info.closed_at_ms);
    return window;
  }

  // The windows of every member's ledger as one table: counters summed, the state of the least
  // advanced member (a window is files_written once every member marked it), the latest
  // instants. nullopt while a member is not consuming: its share would be missing.
  std::optional<WindowTable> MergedWindows() {
    WindowTable merged;
    for (const std::unique_ptr<Member>& member : members_) {
      const std::shared_ptr<const WindowTable> table = member->Windows();
      if (table == nullptr) return std::nullopt;
      for (const auto& [day, info] : *table) {
        const auto [at, fresh] = merged.try_emplace(day, info);
        if (fresh) continue;
        WindowInfo& into = at->second;
        // Counts of messages: an overflow is not reachable, but a wrong sum is never shown.
        if (!AddWindowCounters(info.counters, into.counters)) return std::nullopt;
        into.state = std::min(into.state, info.state);
        into.closed_at_ms = std::max(into.closed_at_ms, info.closed_at_ms);
        into.files_written_at_ms = std::max(into.files_written_at_ms, info.files_written_at_ms);
        into.retired_at_ms = std::max(into.retired_at_ms, info.retired_at_ms);
      }
    }
    return merged;
  }

  void RequestStop() {
    for (const std::unique_ptr<Member>& member : members_) member->RequestStop();
  }

  void ReloadRegistry() {
    auto fresh = Registry::FromFile(config_.registry_path);
    if (!fresh.ok()) {
      log::Error("registry_reload_refused",
                 {{"error", fresh.status().ToString()},
                  {"action", "fix the registry file and send SIGHUP again; the previous registry stays in force"}});
      return;
    }
    registry_holder_.Set(*fresh);
    log::Info("registry_reloaded", {{"banks", (*fresh)->banks().size()}, {"merchants", (*fresh)->merchants().size()}});
  }

  DaemonConfig config_;
  http::AdminServerOptions admin_options_;
  std::shared_ptr<const Registry> registry_;
  RegistryHolder registry_holder_{registry_};
  Digests digests_;
  std::unique_ptr<Clock> clock_;
  FileSetNote file_sets_;
  boost::asio::io_context io_;
  std::vector<std::unique_ptr<Member>> members_;  // set before Run
};

// Each member's keyed parts (none is shared between threads): a card tokenizer under the
// card-token key, and two dead-letter sealers under the key derived from it.
absl::StatusOr<std::vector<Member::Keys>> MakeMemberKeys(const std::string& card_key, const std::string& seal_key,
                                                         int64_t shards) {
  std::vector<Member::Keys> keys;
  for (int64_t shard = 0; shard < shards; ++shard) {
    auto tokenizer = HmacSha256::Create(card_key);
    if (!tokenizer.ok()) return tokenizer.status();
    auto ledger_sealer = AesGcmSealer::Create(seal_key);
    if (!ledger_sealer.ok()) return ledger_sealer.status();
    auto start_sealer = AesGcmSealer::Create(seal_key);
    if (!start_sealer.ok()) return start_sealer.status();
    keys.push_back({*std::move(tokenizer), *std::move(ledger_sealer), *std::move(start_sealer)});
  }
  return keys;
}

// One shard keeps its store at store.path, several keep theirs in store.path/shard-<k>: a
// directory laid out for the other count is refused, not half used.
absl::Status CheckShardLayout(const std::string& store_path, int shards) {
  const std::filesystem::path path(store_path);
  if (shards > 1 && std::filesystem::exists(path / "CURRENT")) {
    return absl::FailedPreconditionError(Cat("store.path ", store_path, " holds the store of one shard, and "
                                             "pipeline.shards = ", shards, " keeps one store per shard in it"));
  }
  if (shards == 1 && std::filesystem::exists(path / "shard-0" / "CURRENT")) {
    return absl::FailedPreconditionError(Cat("store.path ", store_path, " holds the stores of several shards "
                                             "(shard-<k>), and pipeline.shards = 1 keeps one store there"));
  }
  return absl::OkStatus();
}

// Everything a start needs is checked here, before anything is opened, so that --check-config
// (the unit's ExecStartPre) refuses exactly what a start would.
int Start(DaemonConfig config, bool check_only) {
  if (config.log_level == "debug") log::MinimumLevel() = static_cast<int>(log::Level::kDebug);
  if (config.log_level == "warning") log::MinimumLevel() = static_cast<int>(log::Level::kWarning);
  if (config.log_level == "error") log::MinimumLevel() = static_cast<int>(log::Level::kError);
  auto registry = Registry::FromFile(config.registry_path);
  if (!registry.ok()) return Fail("registry_invalid", registry.status(), "fix the registry file and start again");
  auto key = ReadKeyFile(config.card_token_key_file);
  if (!key.ok()) {
    return Fail("card_token_key_invalid", key.status(), "provide the HMAC key file named by privacy.card_token_key_file");
  }
  // Dead-letter copies are sealed in the store under a key derived from the card-token key.
  auto seal_key = DeriveKey(*key, kDeadLetterKeyLabel);
  if (!seal_key.ok()) return Fail("card_token_key_invalid", seal_key.status(), "check the key file");
  auto key_check = DeriveKey(*key, kCardTokenKeyCheckLabel);
  if (!key_check.ok()) return Fail("card_token_key_invalid", key_check.status(), "check the key file");
  absl::StatusOr<std::vector<Member::Keys>> member_keys = MakeMemberKeys(*key, *seal_key, config.shards);
  if (!member_keys.ok()) return Fail("card_token_key_invalid", member_keys.status(), "check the key file");
  auto manifest_key = ReadKeyFile(config.manifest_key_file);
  if (!manifest_key.ok()) {
    return Fail("manifest_key_invalid", manifest_key.status(),
                "provide the HMAC key file named by privacy.manifest_key_file");
  }
  auto digests = MakeFileSetDigests(*manifest_key);
  if (!digests.ok()) return Fail("manifest_key_invalid", digests.status(), "check the key file");
  auto admin_options = AdminOptions(config);
  if (!admin_options.ok()) {
    return Fail("admin_config_invalid", admin_options.status(),
                "fix admin.address (an IP address) or admin.close_token_file (16 to 1024 visible ASCII characters, "
                "readable by clearingd only)");
  }
  if (absl::Status s = kafka::KafkaSource::CheckOptions(SourceOptions(config)); !s.ok()) {
    return Fail("kafka_config_invalid", s, "fix or remove the named property in [kafka.settings]");
  }
  const int shards = static_cast<int>(config.shards);
  if (absl::Status s = CheckShardLayout(config.store_path, shards); !s.ok()) {
    return Fail("store_layout_invalid", s, "point store.path at a new directory (a member of a group restores its "
                                           "partitions from their changelogs) or set pipeline.shards back");
  }
  if (check_only) {
    for (int shard = 0; shard < shards; ++shard) {
      if (absl::Status s = CheckStoreCardTokenKey(ShardConfig(config, shard, shards).store_path, *key_check);
          !s.ok()) {
        return Fail("card_token_key_invalid", s, "give privacy.card_token_key_file the key this store was made with");
      }
    }
    log::Info("config_ok", {{"registry_banks", (*registry)->banks().size()},
                            {"registry_merchants", (*registry)->merchants().size()}});
    return 0;
  }
  std::unique_ptr<Clock> clock;
  if (config.clock_fixed_ms != 0) {
    clock = std::make_unique<ManualClock>(config.clock_fixed_ms);
  } else {
    clock = std::make_unique<SystemClock>();
  }
  std::vector<DaemonConfig> member_configs;
  for (int shard = 0; shard < shards; ++shard) member_configs.push_back(ShardConfig(config, shard, shards));
  Daemon daemon(std::move(config), *std::move(admin_options), *std::move(registry), *std::move(digests),
                std::move(clock));
  for (int shard = 0; shard < shards; ++shard) {
    daemon.AddMember(Member::Create(std::move(member_configs[static_cast<size_t>(shard)]), shard,
                                    daemon.Parts(*key_check), std::move((*member_keys)[static_cast<size_t>(shard)])));
  }
  return daemon.Run();
}

}  // namespace
}  // namespace yrd

int main(int argc, char** argv) {
  CLI::App app{"clearingd: the YRD one-card clearing daemon"};
  std::string config_path;
  std::string bootstrap_servers, store_path;
  int64_t clock_fixed_ms = -1;
  bool check_config = false;
  app.add_option("-c,--config", config_path, "configuration file (TOML)")->required()->check(CLI::ExistingFile);
  app.add_flag("--check-config", check_config, "check the configuration, registry and keys, then exit");
  app.add_option("--bootstrap-servers", bootstrap_servers, "overrides kafka.bootstrap_servers");
  app.add_option("--store", store_path, "overrides store.path");
  app.add_option("--clock-fixed-ms", clock_fixed_ms, "overrides clearing.clock_fixed_ms (0: system clock)");
  CLI11_PARSE(app, argc, argv);
  auto config = yrd::LoadDaemonConfig(config_path);
  if (!config.ok()) {
    yrd::log::Error("config_invalid", {{"error", config.status().ToString()}, {"action", "fix the named key and start again"}});
    return 2;
  }
  if (!bootstrap_servers.empty()) config->bootstrap_servers = bootstrap_servers;
  if (!store_path.empty()) config->store_path = store_path;
  if (clock_fixed_ms >= 0) config->clock_fixed_ms = clock_fixed_ms;
  return yrd::Start(*std::move(config), check_config);
}
