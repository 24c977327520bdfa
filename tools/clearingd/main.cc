// clearingd: the clearing daemon. Consumes yrd.taps and yrd.medical, deduplicates and nets
// them into the state store with exactly-once effect. SIGTERM/SIGINT: stop consuming, commit
// what is in flight, exit 0. SIGHUP: reload the registry (a bad one is refused, the old stays).
#include <atomic>
#include <cstdlib>
#include <thread>

#include "CLI/CLI.hpp"
#include "adapters/crypto/hmac.h"
#include "adapters/kafka/kafka_source.h"
#include "adapters/log/log.h"
#include "adapters/rocksdb/rocks_store.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/signal_set.hpp"
#include "boost/asio/steady_timer.hpp"
#include "engine/ledger.h"
#include "engine/pipeline.h"
#include "tools/clearingd/config.h"

namespace yrd {
namespace {

int Fail(std::string_view event, const absl::Status& status, std::string_view action) {
  log::Error(event, {{"error", status.ToString()}, {"action", action}});
  return 1;
}

int Run(DaemonConfig config, bool check_only) {
  if (config.log_level == "debug") log::MinimumLevel() = static_cast<int>(log::Level::kDebug);
  if (config.log_level == "warning") log::MinimumLevel() = static_cast<int>(log::Level::kWarning);
  auto registry = Registry::FromFile(config.registry_path);
  if (!registry.ok()) return Fail("registry_invalid", registry.status(), "fix the registry file and start again");
  auto key = ReadKeyFile(config.card_token_key_file);
  if (!key.ok()) return Fail("card_token_key_invalid", key.status(), "provide the HMAC key file named by privacy.card_token_key_file");
  auto tokenizer = HmacSha256::Create(*key);
  if (!tokenizer.ok()) return Fail("card_token_key_invalid", tokenizer.status(), "check the key file");
  if (check_only) {
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
  auto store = RocksStore::Open(config.store_path);
  if (!store.ok()) return Fail("store_open_failed", store.status(), "check store.path, free disk space, and that no other clearingd runs on it");
  (*store)->SetHorizonStartMs(clock->NowMs() - config.decode.dedup_horizon_ms);
  Ledger ledger(**store, LedgerOptions{config.calendar});
  if (absl::Status s = ledger.Load(clock->NowMs()); !s.ok()) {
    return Fail("store_load_failed", s, "the state store is damaged; restore it from backup or contact the maintainers");
  }
  kafka::KafkaSourceOptions source_options;
  source_options.bootstrap_servers = config.bootstrap_servers;
  source_options.group_id = config.group_id;
  source_options.settings = config.kafka_settings;
  source_options.message_bytes_max = config.decode.message_bytes_max;
  source_options.dead_letter = config.dead_letter;
  source_options.on_warning = [](const std::string& text) {
    log::Warning("kafka_transient_error", {{"detail", text}, {"action", "none if it clears; check the brokers if it repeats"}});
  };
  auto source = kafka::KafkaSource::Create(source_options, ledger.offsets());
  if (!source.ok()) return Fail("kafka_connect_failed", source.status(), "check kafka.bootstrap_servers and that the topics exist");

  RegistryHolder registry_holder(*registry);
  Pipeline pipeline(config.pipeline, **source, ledger, *clock, registry_holder, **tokenizer);
  log::Info("started", {{"store", config.store_path},
                        {"bootstrap_servers", config.bootstrap_servers},
                        {"commit_sequence", ledger.commit_sequence()},
                        {"clock_fixed_ms", config.clock_fixed_ms}});

  boost::asio::io_context io;
  absl::Status pipeline_status;
  std::atomic<bool> pipeline_done{false};
  std::thread worker([&] {
    pipeline_status = pipeline.Run();
    pipeline_done = true;
    boost::asio::post(io, [&io] { io.stop(); });
  });

  boost::asio::signal_set stop_signals(io, SIGTERM, SIGINT);
  std::function<void(const boost::system::error_code&, int)> on_stop = [&](const boost::system::error_code& error, int signal) {
    if (error) return;
    log::Info("stopping", {{"signal", signal}, {"detail", "finishing and committing the batches in flight"}});
    pipeline.RequestStop();
  };
  stop_signals.async_wait(on_stop);
  boost::asio::signal_set reload_signals(io, SIGHUP);
  std::function<void(const boost::system::error_code&, int)> on_reload = [&](const boost::system::error_code& error, int) {
    if (error) return;
    auto fresh = Registry::FromFile(config.registry_path);
    if (fresh.ok()) {
      registry_holder.Set(*fresh);
      log::Info("registry_reloaded", {{"banks", (*fresh)->banks().size()}, {"merchants", (*fresh)->merchants().size()}});
    } else {
      log::Error("registry_reload_refused", {{"error", fresh.status().ToString()},
                                             {"action", "fix the registry file and send SIGHUP again; the previous registry stays in force"}});
    }
    reload_signals.async_wait(on_reload);
  };
  reload_signals.async_wait(on_reload);

  boost::asio::steady_timer progress(io);
  std::function<void(const boost::system::error_code&)> on_progress = [&](const boost::system::error_code& error) {
    if (error) return;
    const PipelineStats& stats = pipeline.stats();
    log::Info("progress", {{"consumed", stats.consumed_count.load()},
                           {"applied", stats.applied_count.load()},
                           {"exact_duplicates", stats.exact_duplicate_count.load()},
                           {"rejected", stats.rejected_count.load()},
                           {"late", stats.late_count.load()},
                           {"batches", stats.committed_batch_count.load()},
                           {"commit_latency_us_p99", stats.commit_latency_us.QuantileUpperBoundUs(0.99)}});
    progress.expires_after(config.progress_log_interval);
    progress.async_wait(on_progress);
  };
  if (config.progress_log_interval.count() > 0) {
    progress.expires_after(config.progress_log_interval);
    progress.async_wait(on_progress);
  }
  io.run();
  worker.join();
  if (absl::Status s = (*source)->FlushDeadLetters(std::chrono::seconds(10)); !s.ok()) {
    log::Warning("dead_letter_flush_incomplete", {{"error", s.ToString()}, {"action", "the exception store holds every rejected message; list them with clearing-report"}});
  }
  const PipelineStats& stats = pipeline.stats();
  log::Info("stopped", {{"consumed", stats.consumed_count.load()},
                        {"applied", stats.applied_count.load()},
                        {"batches", stats.committed_batch_count.load()},
                        {"commit_latency_us_p50", stats.commit_latency_us.QuantileUpperBoundUs(0.50)},
                        {"commit_latency_us_p99", stats.commit_latency_us.QuantileUpperBoundUs(0.99)},
                        {"commit_sequence", ledger.commit_sequence()}});
  if (!pipeline_status.ok()) {
    return Fail("pipeline_stopped", pipeline_status,
                pipeline_status.code() == absl::StatusCode::kDataLoss
                    ? "messages are missing upstream; see the detail, nothing after the gap was applied"
                    : "restart clearingd; it resumes from the last commit (check disk space and the brokers first)");
  }
  return 0;
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
  app.add_flag("--check-config", check_config, "check the configuration, registry and key, then exit");
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
  return yrd::Run(*std::move(config), check_config);
}
