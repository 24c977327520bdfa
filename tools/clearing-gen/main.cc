// clearing-gen: workload generator and producer of the YRD clearing engine.
//
//   clearing-gen registry --out reg.toml [--banks 12] [--merchants 2000] [--funds 10] [--seed 1]
//   clearing-gen day --registry reg.toml --date 20261127 --events N [--seed 1]
//                    (--brokers HOST:PORT | --out events.bin) [--oracle oracle.json] [--now-ms MS]
//                    [--duplicate-share 0.05 ...] [-X librdkafka.property=value ...]
//   clearing-gen json (--brokers HOST:PORT | --out events.bin) [-X property=value ...] < events.jsonl
//
// Exit status: 0 on success; 1 when a JSON line was rejected or a message could not be delivered;
// 2 on a usage or set-up error.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "adapters/kafka/producer.h"
#include "engine/base/window.h"
#include "engine/event/event_file.h"
#include "engine/registry/registry.h"
#include "fmt/format.h"
#include "tools/clearing-gen/day_gen.h"
#include "tools/clearing-gen/json_convert.h"
#include "tools/clearing-gen/pipelined_sink.h"
#include "tools/clearing-gen/registry_gen.h"

namespace yrd::gen {
namespace {

// How long the end of a run waits for Kafka to acknowledge what is still queued.
constexpr std::chrono::milliseconds kFlushTimeout{120'000};

// Producer settings for a fast bulk load, applied before the user's -X settings.
const kafka::Settings kThroughputSettings = {
    {"linger.ms", "20"},
    {"compression.type", "lz4"},
};

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

void Fail(const std::string& text) { std::fprintf(stderr, "clearing-gen: %s\n", text.c_str()); }

// Debian's abseil has its own string_view, which fmt cannot format.
std::string Text(const absl::Status& status) { return std::string(status.message()); }

// Sends the messages to Kafka.
class KafkaSink final : public MessageSink {
 public:
  explicit KafkaSink(kafka::Producer& producer) : producer_(producer) {}
  absl::Status Accept(std::string_view topic, std::string_view key, std::string_view payload) override {
    return producer_.Produce(topic, key, payload);
  }

 private:
  kafka::Producer& producer_;
};

// Where messages go: exactly one of a Kafka producer or an event file.
struct Output {
  std::unique_ptr<kafka::Producer> producer;
  std::unique_ptr<EventFileWriter> file;
  std::unique_ptr<MessageSink> sink;
  std::string description;

  // Waits for delivery (Kafka) or closes the file; the status says whether everything arrived.
  absl::Status Finish() {
    if (producer) {
      absl::Status status = producer->Flush(kFlushTimeout);
      if (status.ok() && producer->failed_count() > 0) {
        status = absl::UnavailableError(fmt::format("{} messages were not delivered", producer->failed_count()));
      }
      return status;
    }
    return file->Close();
  }
};

absl::StatusOr<Output> OpenOutput(const std::string& brokers, const std::string& out_path,
                                  const std::vector<std::string>& properties) {
  Output output;
  if (!out_path.empty()) {
    absl::StatusOr<std::unique_ptr<EventFileWriter>> file = EventFileWriter::Create(out_path);
    if (!file.ok()) return file.status();
    output.file = *std::move(file);
    output.sink = std::make_unique<EventFileSink>(*output.file);
    output.description = out_path;
    return output;
  }
  kafka::Settings settings = kThroughputSettings;
  for (const std::string& property : properties) {
    const size_t equals = property.find('=');
    if (equals == std::string::npos || equals == 0) {
      return absl::InvalidArgumentError(fmt::format("-X {}: expected property=value", property));
    }
    settings.emplace_back(property.substr(0, equals), property.substr(equals + 1));
  }
  absl::StatusOr<std::unique_ptr<kafka::Producer>> producer = kafka::Producer::Create(brokers, settings);
  if (!producer.ok()) return producer.status();
  output.producer = *std::move(producer);
  output.sink = std::make_unique<KafkaSink>(*output.producer);
  output.description = fmt::format("kafka {}", brokers);
  return output;
}

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::NotFoundError(fmt::format("cannot create {}", path));
  out << text;
  out.close();
  if (!out) return absl::InternalError(fmt::format("cannot write {}", path));
  return absl::OkStatus();
}

int RunRegistry(const RegistryOptions& options, const std::string& out_path) {
  absl::StatusOr<std::shared_ptr<const Registry>> registry = GenerateRegistry(options);
  if (!registry.ok()) {
    Fail(Text(registry.status()));
    return kExitUsage;
  }
  if (absl::Status status = WriteTextFile(out_path, (*registry)->ToToml()); !status.ok()) {
    Fail(std::string(Text(status)));
    return kExitFailure;
  }
  std::printf("clearing-gen: wrote %s: %zu provinces, %zu banks, %zu funds, %zu merchants\n", out_path.c_str(),
              (*registry)->provinces().size(), (*registry)->banks().size(), (*registry)->funds().size(),
              (*registry)->merchants().size());
  return 0;
}

struct DayFlags {
  std::string registry_path;
  std::string date;
  std::string brokers;
  std::string out_path;
  std::string oracle_path;
  std::optional<int64_t> now_ms;  // absent: DefaultNowMs(date)
  std::vector<std::string> properties;
};

int RunDay(const DayFlags& flags, DayOptions options) {
  const std::optional<WindowDay> day = ParseWindowDate(flags.date);
  if (!day) {
    Fail(fmt::format("--date {}: expected a date as YYYYMMDD", flags.date));
    return kExitUsage;
  }
  options.day = *day;
  options.now_ms = flags.now_ms.value_or(DefaultNowMs(*day));
  if (absl::Status status = ValidateDayOptions(options); !status.ok()) {
    Fail(std::string(Text(status)));
    return kExitUsage;
  }
  absl::StatusOr<std::shared_ptr<const Registry>> registry = Registry::FromFile(flags.registry_path);
  if (!registry.ok()) {
    Fail(Text(registry.status()));
    return kExitUsage;
  }
  absl::StatusOr<Output> output = OpenOutput(flags.brokers, flags.out_path, flags.properties);
  if (!output.ok()) {
    Fail(Text(output.status()));
    return kExitUsage;
  }

  const auto start = std::chrono::steady_clock::now();
  DayGenerator generator(*registry, options);
  PipelinedSink pipeline(*output->sink);
  absl::Status status = generator.Run(pipeline);
  const absl::Status handed = pipeline.Finish();
  if (status.ok()) status = handed;
  if (!status.ok()) {
    Fail(fmt::format("after {} messages: {}", generator.stats().message_count, Text(status)));
    return absl::IsFailedPrecondition(status) ? kExitUsage : kExitFailure;
  }
  if (absl::Status status = output->Finish(); !status.ok()) {
    Fail(std::string(Text(status)));
    return kExitFailure;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (!flags.oracle_path.empty()) {
    if (absl::Status status = WriteTextFile(flags.oracle_path, generator.OracleJson().dump(2) + "\n"); !status.ok()) {
      Fail(std::string(Text(status)));
      return kExitFailure;
    }
  }
  const DayStats& stats = generator.stats();
  std::printf("clearing-gen: produced %llu messages to %s in %.2f s (%.0f msg/s)\n",
              static_cast<unsigned long long>(stats.message_count), output->description.c_str(), seconds,
              seconds > 0 ? static_cast<double>(stats.message_count) / seconds : 0.0);
  return 0;
}

int RunJson(const std::string& brokers, const std::string& out_path, const std::vector<std::string>& properties) {
  absl::StatusOr<JsonConverter> converter = JsonConverter::Create();
  if (!converter.ok()) {
    Fail(Text(converter.status()));
    return kExitFailure;
  }
  absl::StatusOr<Output> output = OpenOutput(brokers, out_path, properties);
  if (!output.ok()) {
    Fail(Text(output.status()));
    return kExitUsage;
  }
  uint64_t produced_count = 0;
  uint64_t rejected_count = 0;
  uint64_t line_number = 0;
  std::string line;
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    absl::StatusOr<ConvertedMessage> message = converter->Convert(line);
    if (!message.ok()) {
      Fail(fmt::format("line {}: {}", line_number, Text(message.status())));
      ++rejected_count;
      continue;
    }
    if (absl::Status status = output->sink->Accept(message->topic, message->key, message->payload); !status.ok()) {
      Fail(fmt::format("line {}: {}", line_number, Text(status)));
      return kExitFailure;
    }
    ++produced_count;
  }
  if (absl::Status status = output->Finish(); !status.ok()) {
    Fail(std::string(Text(status)));
    return kExitFailure;
  }
  std::printf("clearing-gen: produced %llu messages to %s, %llu lines rejected\n",
              static_cast<unsigned long long>(produced_count), output->description.c_str(),
              static_cast<unsigned long long>(rejected_count));
  return rejected_count == 0 ? 0 : kExitFailure;
}

int Main(int argc, char** argv) {
  CLI::App app{"clearing-gen: workload generator and producer for the YRD clearing engine"};
  app.require_subcommand(1);

  RegistryOptions registry_options;
  std::string registry_out;
  CLI::App* registry = app.add_subcommand("registry", "write a generated participant registry (TOML)");
  registry->add_option("--out", registry_out, "registry file to write")->required();
  registry->add_option("--banks", registry_options.bank_count, "number of banks")
      ->capture_default_str()->check(CLI::Range(1, kBankCountMax));
  registry->add_option("--merchants", registry_options.merchant_count, "number of merchants")
      ->capture_default_str()->check(CLI::Range(0, kMerchantCountMax));
  registry->add_option("--funds", registry_options.fund_count, "number of medical-insurance funds")
      ->capture_default_str()->check(CLI::Range(0, kFundCountMax));
  registry->add_option("--seed", registry_options.seed, "random seed")->capture_default_str();

  DayFlags day_flags;
  DayOptions day_options;
  CLI::App* day = app.add_subcommand("day", "generate one day of events and the expected outcome");
  day->add_option("--registry", day_flags.registry_path, "registry file (TOML)")->required();
  day->add_option("--date", day_flags.date, "business day, YYYYMMDD")->required();
  day->add_option("--events", day_options.event_count, "messages to produce, of every kind")
      ->required()->check(CLI::Range(uint64_t{0}, kEventCountMax));
  day->add_option("--seed", day_options.seed, "random seed")->capture_default_str();
  CLI::Option* day_brokers = day->add_option("--brokers", day_flags.brokers, "Kafka bootstrap servers HOST:PORT");
  CLI::Option* day_out = day->add_option("--out", day_flags.out_path, "event file to write instead of Kafka");
  day_brokers->excludes(day_out);
  day->add_option("--oracle", day_flags.oracle_path, "expected outcome (JSON) to write");
  int64_t now_ms = 0;
  CLI::Option* now_ms_option =
      day->add_option("--now-ms", now_ms,
                      "the daemon's frozen clock, UTC epoch ms (default: the date's 23:59:00.000 +08:00)");
  day->add_option("--duplicate-share", day_options.duplicate_share, "exact redeliveries")->capture_default_str();
  day->add_option("--conflict-share", day_options.conflict_share, "same id, different content")
      ->capture_default_str();
  day->add_option("--malformed-share", day_options.malformed_share, "undecodable payloads")->capture_default_str();
  day->add_option("--refund-share", day_options.refund_share, "tap refunds")->capture_default_str();
  day->add_option("--cancellation-share", day_options.cancellation_share,
                  "cancellations, as a share of medical settlements")
      ->capture_default_str();
  day->add_option("--late-share", day_options.late_share, "events dated in a closed window")->capture_default_str();
  day->add_option("--medical-share", day_options.medical_share, "medical settlements")->capture_default_str();
  day->add_option("--cross-province-share", day_options.cross_province_share,
                  "of taps and settlements: card or insured fund from another province")
      ->capture_default_str();
  day->add_option("--invalid-share", day_options.invalid_share, "events rejected by a validation rule")
      ->capture_default_str();
  day->add_option("-X", day_flags.properties, "librdkafka producer property=value (repeatable)");

  std::string json_brokers;
  std::string json_out;
  std::vector<std::string> json_properties;
  CLI::App* json = app.add_subcommand("json", "produce events given as JSON lines on stdin");
  CLI::Option* json_brokers_option = json->add_option("--brokers", json_brokers, "Kafka bootstrap servers");
  CLI::Option* json_out_option = json->add_option("--out", json_out, "event file to write instead of Kafka");
  json_brokers_option->excludes(json_out_option);
  json->add_option("-X", json_properties, "librdkafka producer property=value (repeatable)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : kExitUsage;
  }

  if (registry->parsed()) return RunRegistry(registry_options, registry_out);
  if (day->parsed()) {
    if (now_ms_option->count() > 0) day_flags.now_ms = now_ms;
    if (day_flags.brokers.empty() && day_flags.out_path.empty()) {
      Fail("day: give --brokers HOST:PORT or --out FILE");
      return kExitUsage;
    }
    return RunDay(day_flags, day_options);
  }
  if (json_brokers.empty() && json_out.empty()) {
    Fail("json: give --brokers HOST:PORT or --out FILE");
    return kExitUsage;
  }
  return RunJson(json_brokers, json_out, json_properties);
}

}  // namespace
}  // namespace yrd::gen

int main(int argc, char** argv) { return yrd::gen::Main(argc, argv); }
