// clearing-broker: librdkafka's mock Kafka cluster in a process of its own, for the demo and for
// tests, so that stopping or killing clearingd does not lose what the broker holds. It listens on
// 127.0.0.1 only, prints "bootstrap=ADDRESS" on stdout once clients can connect, optionally
// writes ADDRESS to a file (atomically), and runs until SIGTERM or SIGINT, then exits 0.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "adapters/kafka/embedded_broker.h"
#include "fmt/format.h"
#include "fmt/ranges.h"

namespace {

std::string LimitsText() {
  using yrd::kafka::EmbeddedBroker;
  return fmt::format(
      "Limits of librdkafka's mock cluster (this is not a real Kafka broker):\n"
      "  - everything is held in memory and is gone when the process exits;\n"
      "  - each partition keeps at most {} MiB or {} message sets (produce batches) and\n"
      "    silently drops the oldest beyond that: a consumer further behind loses messages\n"
      "    (it sees OFFSET_OUT_OF_RANGE), so use enough partitions and keep consumers running;\n"
      "  - read_committed isolation is not emulated; no SSL, no SASL;\n"
      "  - the largest message is set by the producer (message.max.bytes); the mock has no\n"
      "    broker-side limit to set, hence no --message-bytes-max flag.\n"
      "Exit status: 0 after SIGTERM/SIGINT, 1 when the broker cannot start.",
      EmbeddedBroker::kPartitionBytesMax / (1024 * 1024), EmbeddedBroker::kPartitionMessageSetsMax);
}

// One structured line on stderr; stdout carries only the bootstrap line.
void Log(std::string_view level, std::string_view event, std::string_view detail) {
  fmt::print(stderr, "{{\"level\":\"{}\",\"event\":\"{}\",\"detail\":\"{}\"}}\n", level, event, detail);
  std::fflush(stderr);
}

// Writes `content` to `path` so that a reader never sees a partial file: a temporary file in
// the same directory, then rename over `path`.
bool WriteFileAtomically(const std::string& path, const std::string& content, std::string* error) {
  const std::string temporary_path = fmt::format("{}.tmp.{}", path, getpid());
  std::FILE* file = std::fopen(temporary_path.c_str(), "w");
  if (file == nullptr) {
    *error = fmt::format("cannot create {}: {}", temporary_path, std::strerror(errno));
    return false;
  }
  const bool written = std::fwrite(content.data(), 1, content.size(), file) == content.size();
  const bool closed = std::fclose(file) == 0;
  if (!written || !closed) {
    *error = fmt::format("cannot write {}: {}", temporary_path, std::strerror(errno));
    std::remove(temporary_path.c_str());
    return false;
  }
  if (std::rename(temporary_path.c_str(), path.c_str()) != 0) {
    *error = fmt::format("cannot rename {} to {}: {}", temporary_path, path, std::strerror(errno));
    std::remove(temporary_path.c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  yrd::kafka::EmbeddedBrokerOptions options;
  options.port = 9092;
  std::string address_file;

  CLI::App app{
      "clearing-broker: an embedded Kafka broker (librdkafka's mock cluster) on 127.0.0.1, for the "
      "demo and tests. Prints bootstrap=127.0.0.1:PORT[,...] on stdout when ready."};
  app.footer(LimitsText());
  app.add_option("--port", options.port,
                 "TCP port of broker 1 on 127.0.0.1; broker i uses port+i-1. 0 = any free port "
                 "(read the real one from stdout or --address-file)")
      ->capture_default_str();
  app.add_option("--partitions", options.partition_count, "Partitions per topic")
      ->capture_default_str()
      ->check(CLI::Range(1, yrd::kafka::EmbeddedBroker::kPartitionCountMax));
  app.add_option("--brokers", options.broker_count, "Brokers in the cluster")
      ->capture_default_str()
      ->check(CLI::Range(1, yrd::kafka::EmbeddedBroker::kBrokerCountMax));
  app.add_option("--topics", options.topics, "Topics to create, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--address-file", address_file,
                 "Write the bootstrap address to this file once ready (written to a temporary file "
                 "and renamed, so waiting for the file to appear is safe); removed at start and on "
                 "exit so a stale address is never read");
  CLI11_PARSE(app, argc, argv);

  // Signals are blocked before librdkafka starts its threads, which inherit the mask, so that
  // SIGTERM and SIGINT reach only the sigwait below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  if (const int error = pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr); error != 0) {
    Log("error", "signal_mask_failed", std::strerror(error));
    return 1;
  }

  if (!address_file.empty()) std::remove(address_file.c_str());

  auto broker = yrd::kafka::EmbeddedBroker::Start(options);
  if (!broker.ok()) {
    const auto message = broker.status().message();
    Log("error", "broker_start_failed",
        fmt::format("{}; nothing is listening. Fix the flag or free the port, then start again",
                    std::string_view(message.data(), message.size())));
    return 1;
  }
  const std::string& bootstrap_servers = (*broker)->bootstrap_servers();

  if (!address_file.empty()) {
    std::string error;
    if (!WriteFileAtomically(address_file, bootstrap_servers + "\n", &error)) {
      Log("error", "address_file_failed", error);
      return 1;
    }
  }
  fmt::print("bootstrap={}\n", bootstrap_servers);
  std::fflush(stdout);
  Log("info", "broker_ready",
      fmt::format("bootstrap={} brokers={} partitions={} topics={}", bootstrap_servers,
                  options.broker_count, options.partition_count, fmt::join(options.topics, ",")));

  int received_signal = 0;
  if (const int error = sigwait(&stop_signals, &received_signal); error != 0) {
    Log("error", "sigwait_failed", std::strerror(error));
    return 1;
  }
  Log("info", "broker_stopping", fmt::format("signal {}; messages held in memory are dropped",
                                             strsignal(received_signal)));
  if (!address_file.empty()) std::remove(address_file.c_str());
  broker->reset();
  Log("info", "broker_stopped", "");
  return 0;
}
