#include "tools/clearingd/config.h"

#include <filesystem>
#include <functional>
#include <map>

#include "engine/base/strings.h"
#include "toml++/toml.h"

namespace yrd {
namespace {

// A changelog topic's name is its source topic's (at most 32 characters here) and the suffix,
// within Kafka's 249.
constexpr size_t kChangelogSuffixBytesMax = 200;
// A partition's changelog grows at most this much between two of its snapshots.
constexpr int64_t kChangelogSnapshotBytesMax = int64_t{1} << 30;
// Kafka's limit on a topic name, and its characters.
constexpr size_t kTopicNameBytesMax = 249;
constexpr std::string_view kTopicNameCharacters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";

// store.recent_txn_records_max: at least a batch's worth is sensible; at most about 30 GiB of
// memory (150 bytes a record, twice while a sort runs).
constexpr int64_t kRecentTxnRecordsMin = 1'000;
constexpr int64_t kRecentTxnRecordsMax = 100'000'000;
// store.lines_checkpoint_applied_max: a start replays at most this many applied records.
constexpr int64_t kLinesCheckpointAppliedMin = 1'000;
constexpr int64_t kLinesCheckpointAppliedMax = 100'000'000;

std::string At(const std::string& file, const toml::node& node) {
  return Cat(file, ":", node.source().begin.line);
}

// Reads one table's keys with per-key handlers; an unknown key is an error naming it.
class Section {
 public:
  Section(const std::string& file, const toml::table& root, std::string name)
      : file_(file), name_(std::move(name)) {
    if (const toml::node* node = root.get(name_)) table_ = node->as_table();
  }

  absl::Status String(std::string_view key, std::string& out) {
    return With(key, [&](const toml::node& node) -> absl::Status {
      const auto* value = node.as_string();
      if (value == nullptr) return Wrong(node, key, "a string");
      out = value->get();
      return absl::OkStatus();
    });
  }
  absl::Status Integer(std::string_view key, int64_t& out, int64_t minimum, int64_t maximum) {
    return With(key, [&](const toml::node& node) -> absl::Status {
      const auto* value = node.as_integer();
      if (value == nullptr) return Wrong(node, key, "an integer");
      if (value->get() < minimum || value->get() > maximum) {
        return absl::InvalidArgumentError(Cat(At(file_, node), ": ", name_, ".", key, " = ", value->get(),
                                              " is out of range [", minimum, ", ", maximum, "]"));
      }
      out = value->get();
      return absl::OkStatus();
    });
  }
  absl::Status Boolean(std::string_view key, bool& out) {
    return With(key, [&](const toml::node& node) -> absl::Status {
      const auto* value = node.as_boolean();
      if (value == nullptr) return Wrong(node, key, "true or false");
      out = value->get();
      return absl::OkStatus();
    });
  }
  // Every key of the section must have been read by a handler above, or be a sub-table in `tables`.
  absl::Status RefuseUnknown(std::initializer_list<std::string_view> tables = {}) {
    if (table_ == nullptr) return absl::OkStatus();
    for (const auto& [key, node] : *table_) {
      const std::string_view name = key.str();
      if (known_.contains(std::string(name))) continue;
      if (std::find(tables.begin(), tables.end(), name) != tables.end()) continue;
      return absl::InvalidArgumentError(Cat(At(file_, node), ": unknown key '", name, "' in [", name_, "]"));
    }
    return absl::OkStatus();
  }
  [[nodiscard]] const toml::table* table() const { return table_; }

 private:
  absl::Status With(std::string_view key, const std::function<absl::Status(const toml::node&)>& handler) {
    known_[std::string(key)] = true;
    if (table_ == nullptr) return absl::OkStatus();
    const toml::node* node = table_->get(key);
    if (node == nullptr) return absl::OkStatus();
    return handler(*node);
  }
  absl::Status Wrong(const toml::node& node, std::string_view key, std::string_view wanted) {
    return absl::InvalidArgumentError(Cat(At(file_, node), ": ", name_, ".", key, " must be ", wanted));
  }

  const std::string& file_;
  std::string name_;
  const toml::table* table_ = nullptr;
  std::map<std::string, bool> known_;
};

std::string Resolve(const std::string& config_path, const std::string& path) {
  if (path.empty() || std::filesystem::path(path).is_absolute()) return path;
  return (std::filesystem::path(config_path).parent_path() / path).lexically_normal().string();
}

// [pipeline], after [kafka] and [clearing] (it checks against them).
absl::Status LoadPipelineSection(const std::string& path, const toml::table& root, DaemonConfig& config) {
  absl::Status s;
  auto check = [&](absl::Status status) {
    if (s.ok() && !status.ok()) s = std::move(status);
  };
  Section pipeline(path, root, "pipeline");
  int64_t batch_messages_max = static_cast<int64_t>(config.pipeline.batch.messages_max);
  int64_t batch_bytes_max = static_cast<int64_t>(config.pipeline.batch.arena_bytes_max);
  int64_t batch_linger_ms = config.pipeline.batch_linger.count();
  int64_t batches_max = static_cast<int64_t>(config.pipeline.batches_in_flight_max);
  int64_t window_tick_ms = config.pipeline.window_tick.count();
  check(pipeline.Integer("window_tick_ms", window_tick_ms, 10, 60'000));
  check(pipeline.Integer("batch_messages_max", batch_messages_max, 1, 1 << 20));
  check(pipeline.Integer("batch_bytes_max", batch_bytes_max, 1 << 20, 1 << 30));
  check(pipeline.Integer("batch_linger_ms", batch_linger_ms, 0, 1000));
  check(pipeline.Integer("pipeline_batches_max", batches_max, 2, 64));
  check(pipeline.Integer("shards", config.shards, 1, kPipelineShardsMax));
  check(pipeline.RefuseUnknown());
  // Shards are members of the group in one process: the group splits the partitions between
  // them and the coordinator merges the window from the changelogs (docs/scale-out.md, section 2).
  if (config.shards > 1 && !config.group_assignment) {
    check(absl::InvalidArgumentError(Cat(path, ": pipeline.shards above 1 needs kafka.assignment = \"group\"")));
  }
  if (config.shards > 1 && config.standby) {
    check(absl::InvalidArgumentError(Cat(path, ": kafka.standby is not available with pipeline.shards above 1 yet")));
  }
  config.pipeline.batch.messages_max = static_cast<size_t>(batch_messages_max);
  config.pipeline.batch.arena_bytes_max = static_cast<size_t>(batch_bytes_max);
  config.pipeline.batch_linger = std::chrono::milliseconds(batch_linger_ms);
  config.pipeline.batches_in_flight_max = static_cast<size_t>(batches_max);
  config.pipeline.window_tick = std::chrono::milliseconds(window_tick_ms);
  if (config.pipeline.batch.arena_bytes_max < config.decode.message_bytes_max + 1024) {
    check(absl::InvalidArgumentError(Cat(path, ": pipeline.batch_bytes_max must exceed clearing.message_bytes_max")));
  }
  return s;
}

// [kafka]: brokers, the group and its changelog, dead-letter copies, librdkafka settings. The
// first error, if any.
absl::Status LoadKafkaSection(const std::string& path, const toml::table& root, DaemonConfig& config) {
  absl::Status s;
  auto check = [&](absl::Status status) {
    if (s.ok() && !status.ok()) s = std::move(status);
  };
  Section kafka(path, root, "kafka");
  check(kafka.String("bootstrap_servers", config.bootstrap_servers));
  check(kafka.String("group_id", config.group_id));
  std::string assignment = config.group_assignment ? "group" : "partitions";
  check(kafka.String("assignment", assignment));
  if (assignment == "partitions") {
    config.group_assignment = false;
  } else if (assignment == "group") {
    config.group_assignment = true;
  } else {
    check(absl::InvalidArgumentError(
        Cat(path, ": kafka.assignment must be \"partitions\" or \"group\", got '", assignment, "'")));
  }
  check(kafka.String("group_instance_id", config.group_instance_id));
  if (!config.group_instance_id.empty() && !config.group_assignment) {
    check(absl::InvalidArgumentError(Cat(path, ": kafka.group_instance_id needs kafka.assignment = \"group\"")));
  }
  check(kafka.String("changelog_topic_suffix", config.changelog_topic_suffix));
  if (config.changelog_topic_suffix.empty() || config.changelog_topic_suffix.size() > kChangelogSuffixBytesMax ||
      config.changelog_topic_suffix.find_first_not_of(kTopicNameCharacters) != std::string::npos) {
    check(absl::InvalidArgumentError(Cat(path, ": kafka.changelog_topic_suffix must be 1 to ", kChangelogSuffixBytesMax,
                                         " characters of [a-zA-Z0-9._-], got '", config.changelog_topic_suffix, "'")));
  }
  check(kafka.String("control_topic", config.control_topic));
  if (config.control_topic.empty() || config.control_topic.size() > kTopicNameBytesMax ||
      config.control_topic.find_first_not_of(kTopicNameCharacters) != std::string::npos) {
    check(absl::InvalidArgumentError(Cat(path, ": kafka.control_topic must be 1 to ", kTopicNameBytesMax,
                                         " characters of [a-zA-Z0-9._-], got '", config.control_topic, "'")));
  }
  check(kafka.Integer("changelog_append_timeout_ms", config.changelog_append_timeout_ms, 1'000, 600'000));
  check(kafka.Integer("changelog_restore_timeout_ms", config.changelog_restore_timeout_ms, 1'000, 86'400'000));
  check(kafka.Integer("changelog_snapshot_bytes", config.changelog_snapshot_bytes, 0, kChangelogSnapshotBytesMax));
  check(kafka.Boolean("standby", config.standby));
  if (config.standby && !config.group_assignment) {
    check(absl::InvalidArgumentError(Cat(path, ": kafka.standby needs kafka.assignment = \"group\"")));
  }
  check(kafka.Boolean("dead_letter", config.dead_letter));
  std::string dead_letter_payload(DeadLetterPayloadName(config.dead_letter_payload));
  check(kafka.String("dead_letter_payload", dead_letter_payload));
  if (dead_letter_payload == "original") {
    config.dead_letter_payload = DeadLetterPayload::kOriginal;
  } else if (dead_letter_payload == "redacted") {
    config.dead_letter_payload = DeadLetterPayload::kRedacted;
  } else {
    check(absl::InvalidArgumentError(
        Cat(path, ": kafka.dead_letter_payload must be \"original\" or \"redacted\", got '", dead_letter_payload, "'")));
  }
  check(kafka.RefuseUnknown({"settings"}));
  if (kafka.table() != nullptr) {
    if (const toml::node* settings = kafka.table()->get("settings")) {
      const auto* table = settings->as_table();
      if (table == nullptr) check(absl::InvalidArgumentError(Cat(At(path, *settings), ": kafka.settings must be a table")));
      for (const auto& [key, value] : table ? *table : toml::table{}) {
        const auto* text = value.as_string();
        if (text == nullptr) {
          check(absl::InvalidArgumentError(Cat(At(path, value), ": kafka.settings.", key.str(), " must be a string")));
        } else {
          config.kafka_settings.emplace_back(std::string(key.str()), text->get());
        }
      }
    }
  }
  return s;
}

}  // namespace

absl::StatusOr<DaemonConfig> LoadDaemonConfig(const std::string& path) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& error) {
    return absl::InvalidArgumentError(Cat(path, ":", error.source().begin.line, ": ", error.description()));
  }
  for (const auto& [key, node] : root) {
    static constexpr std::string_view kSections[] = {"kafka",    "store",    "registry", "privacy",
                                                     "clearing", "pipeline", "log",      "output", "admin"};
    if (std::find(std::begin(kSections), std::end(kSections), key.str()) == std::end(kSections)) {
      return absl::InvalidArgumentError(Cat(At(path, node), ": unknown section or key '", key.str(), "'"));
    }
  }
  DaemonConfig config;
  absl::Status s;
  auto check = [&](absl::Status status) {
    if (s.ok() && !status.ok()) s = std::move(status);
  };

  check(LoadKafkaSection(path, root, config));

  Section store(path, root, "store");
  int64_t min_free_mib = static_cast<int64_t>(config.store_min_free_bytes >> 20);
  check(store.String("path", config.store_path));
  int64_t recent_txn_records_max = static_cast<int64_t>(config.recent_txn_records_max);
  int64_t lines_checkpoint_applied_max = static_cast<int64_t>(config.lines_checkpoint_applied_max);
  check(store.Integer("min_free_mib", min_free_mib, 0, 1 << 24));
  check(store.Integer("recent_txn_records_max", recent_txn_records_max, kRecentTxnRecordsMin, kRecentTxnRecordsMax));
  check(store.Integer("lines_checkpoint_applied_max", lines_checkpoint_applied_max, kLinesCheckpointAppliedMin,
                      kLinesCheckpointAppliedMax));
  int64_t retention_days = config.maintenance.window_retention_ms / kDayMs;
  int64_t maintenance_interval_ms = config.maintenance.interval.count();
  check(store.Integer("window_retention_days", retention_days, 1, 3660));
  check(store.Integer("maintenance_interval_ms", maintenance_interval_ms, 1'000, 86'400'000));
  check(store.RefuseUnknown());
  config.maintenance.window_retention_ms = retention_days * kDayMs;
  config.maintenance.interval = std::chrono::milliseconds(maintenance_interval_ms);
  config.store_min_free_bytes = static_cast<uint64_t>(min_free_mib) << 20;
  config.recent_txn_records_max = static_cast<uint64_t>(recent_txn_records_max);
  config.lines_checkpoint_applied_max = static_cast<uint64_t>(lines_checkpoint_applied_max);
  Section registry(path, root, "registry");
  check(registry.String("path", config.registry_path));
  check(registry.RefuseUnknown());
  Section privacy(path, root, "privacy");
  check(privacy.String("card_token_key_file", config.card_token_key_file));
  check(privacy.String("manifest_key_file", config.manifest_key_file));
  check(privacy.RefuseUnknown());
  Section output(path, root, "output");
  check(output.String("dir", config.output_dir));
  check(output.RefuseUnknown());

  Section clearing(path, root, "clearing");
  std::string cutoff = "00:00";
  int64_t horizon_days = 40, grace_ms = config.calendar.grace_ms, skew_ms = config.decode.clock_skew_ms_max;
  int64_t message_bytes_max = static_cast<int64_t>(config.decode.message_bytes_max);
  check(clearing.String("cutoff_local", cutoff));
  check(clearing.Integer("grace_ms", grace_ms, 0, 12 * 3'600'000));
  check(clearing.Integer("dedup_horizon_days", horizon_days, 1, 400));
  check(clearing.Integer("clock_skew_ms_max", skew_ms, 0, 86'400'000));
  check(clearing.Integer("message_bytes_max", message_bytes_max, 256, 1 << 20));
  check(clearing.Integer("amount_fen_max", config.decode.amount_fen_max, 1, kPartitionWindowGrossFenMax));
  check(clearing.Integer("clock_fixed_ms", config.clock_fixed_ms, 0, INT64_MAX / 2));
  check(clearing.RefuseUnknown());
  const std::optional<int64_t> cutoff_ms = ParseLocalTimeOfDay(cutoff);
  if (!cutoff_ms) check(absl::InvalidArgumentError(Cat(path, ": clearing.cutoff_local must be HH:MM, got '", cutoff, "'")));
  config.calendar.cutoff_ms_of_day = cutoff_ms.value_or(0);
  config.calendar.grace_ms = grace_ms;
  config.decode.dedup_horizon_ms = horizon_days * kDayMs;
  config.maintenance.dedup_horizon_ms = config.decode.dedup_horizon_ms;
  config.decode.clock_skew_ms_max = skew_ms;
  config.decode.message_bytes_max = static_cast<size_t>(message_bytes_max);
  config.pipeline.decode = config.decode;

  check(LoadPipelineSection(path, root, config));

  Section admin(path, root, "admin");
  check(admin.String("address", config.admin_address));
  check(admin.Integer("port", config.admin_port, 0, 65535));
  check(admin.String("close_token_file", config.admin_close_token_file));
  check(admin.RefuseUnknown());

  Section log(path, root, "log");
  int64_t progress_ms = config.progress_log_interval.count();
  check(log.String("level", config.log_level));
  if (config.log_level != "debug" && config.log_level != "info" && config.log_level != "warning" &&
      config.log_level != "error") {
    check(absl::InvalidArgumentError(
        Cat(path, ": log.level must be \"debug\", \"info\", \"warning\" or \"error\", got '", config.log_level, "'")));
  }
  check(log.Integer("progress_interval_ms", progress_ms, 0, 3'600'000));
  check(log.RefuseUnknown());
  config.progress_log_interval = std::chrono::milliseconds(progress_ms);
  if (!s.ok()) return s;

  if (config.store_path.empty()) return absl::InvalidArgumentError(Cat(path, ": store.path is required"));
  if (config.registry_path.empty()) return absl::InvalidArgumentError(Cat(path, ": registry.path is required"));
  if (config.card_token_key_file.empty()) {
    return absl::InvalidArgumentError(Cat(path, ": privacy.card_token_key_file is required (the HMAC key for card tokens)"));
  }
  config.store_path = Resolve(path, config.store_path);
  config.registry_path = Resolve(path, config.registry_path);
  if (config.manifest_key_file.empty()) {
    return absl::InvalidArgumentError(Cat(path, ": privacy.manifest_key_file is required (the HMAC key that signs each MANIFEST)"));
  }
  config.card_token_key_file = Resolve(path, config.card_token_key_file);
  config.manifest_key_file = Resolve(path, config.manifest_key_file);
  config.output_dir = Resolve(path, config.output_dir);
  config.admin_close_token_file = Resolve(path, config.admin_close_token_file);
  return config;
}

DaemonConfig ShardConfig(const DaemonConfig& config, int shard, int shards) {
  if (shards <= 1) return config;
  DaemonConfig member = config;
  member.store_path = (std::filesystem::path(config.store_path) / Cat("shard-", shard)).string();
  if (!config.group_instance_id.empty()) member.group_instance_id = Cat(config.group_instance_id, ".shard-", shard);
  return member;
}

}  // namespace yrd
