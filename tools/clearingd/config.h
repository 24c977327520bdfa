// DaemonConfig: clearingd's configuration, read from a TOML file (docs/configuration.md lists
// every key with its unit, default, range and whether SIGHUP reloads it) and overridden by
// flags. Parsing refuses unknown keys, wrong types and out-of-range values with a message that
// names the key and the file line.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "adapters/kafka/producer.h"
#include "engine/base/window.h"
#include "engine/event/event.h"
#include "engine/ledger/ledger.h"
#include "engine/pipeline/pipeline.h"
#include "tools/clearingd/maintenance.h"

namespace yrd {

// pipeline.shards: at most this many ledger shards in one process (each has a store, a Kafka
// consumer and producer, and three threads of its own).
inline constexpr int64_t kPipelineShardsMax = 16;

struct DaemonConfig {
  // [kafka]
  std::string bootstrap_servers = "127.0.0.1:9092";
  std::string group_id = "yrd-clearingd";
  // assignment: "partitions" (every partition to this instance, false) or "group" (the group's
  // share, true).
  bool group_assignment = false;
  std::string group_instance_id;              // group_instance_id: static membership, "group" only
  // "group" only: the changelog topics (<source topic><changelog_topic_suffix>) that carry each
  // partition's state between members, and how long an append and a restore may take.
  std::string changelog_topic_suffix = ".changelog";
  int64_t changelog_append_timeout_ms = 30'000;
  int64_t changelog_restore_timeout_ms = 300'000;
  int64_t changelog_snapshot_bytes = 4 << 20;  // 0: never
  bool standby = false;  // keep a standby of the partitions not owned in <store.path>.standby
  // "group" only: the topic whose partition 0 carries the closes and files-written facts to every
  // member (adapters/kafka/control_channel.h).
  std::string control_topic = "yrd.control";
  kafka::Settings kafka_settings;            // [kafka.settings]: librdkafka properties, strings
  bool dead_letter = true;
  DeadLetterPayload dead_letter_payload = DeadLetterPayload::kRedacted;  // dead_letter_payload
  // [store]
  std::string store_path;
  uint64_t store_min_free_bytes = 256u << 20;  // min_free_mib: writes pause below it, resume above
  uint64_t recent_txn_records_max = LedgerOptions{}.recent_txn_records_max;
  uint64_t lines_checkpoint_applied_max = LedgerOptions{}.lines_checkpoint_applied_max;
  // window_retention_days, maintenance_interval_ms; the horizon from clearing.dedup_horizon_days.
  StoreMaintenanceOptions maintenance;
  // [registry]
  std::string registry_path;
  // [privacy]
  std::string card_token_key_file;
  std::string manifest_key_file;             // HMAC key of the clearing files' MANIFEST
  // [output]
  std::string output_dir = "clearing-files";  // files go to <dir>/<YYYYMMDD>/
  // [clearing]
  WindowCalendar calendar;                   // cutoff_local "HH:MM", grace_ms
  DecodeLimits decode;                       // dedup_horizon_days, clock_skew_ms_max, message_bytes_max
  int64_t clock_fixed_ms = 0;                // 0: the system clock
  // [pipeline]
  PipelineOptions pipeline;
  int64_t shards = 1;  // ledger shards in this process (members of the group), 1..kPipelineShardsMax
  // [admin]
  std::string admin_address = "127.0.0.1";
  int64_t admin_port = 9464;                 // 0: any free port (its number is logged)
  std::string admin_close_token_file;        // empty: the close command is disabled
  // [log]
  std::string log_level = "info";
  std::chrono::milliseconds progress_log_interval{10'000};
};

[[nodiscard]] absl::StatusOr<DaemonConfig> LoadDaemonConfig(const std::string& path);

// Shard `shard` of `shards` (pipeline.shards): its store `<store.path>/shard-<k>` and static
// membership `<group_instance_id>.shard-<k>`; `config` itself when the process runs one shard.
[[nodiscard]] DaemonConfig ShardConfig(const DaemonConfig& config, int shard, int shards);

}  // namespace yrd
