// clearingd's configuration: every refusal names the key and the file line.
#include "tools/clearingd/config.h"

#include "gtest/gtest.h"
#include "tests/support/process.h"

namespace yrd {
namespace {

using testing::TempDir;
using testing::WriteFile;

constexpr const char* kGood =
    "[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\n"
    "[store]\npath = \"state\"\n"
    "[registry]\npath = \"registry.toml\"\n"
    "[privacy]\ncard_token_key_file = \"card.key\"\nmanifest_key_file = \"manifest.key\"\n";

absl::StatusOr<DaemonConfig> Load(const TempDir& dir, const std::string& text) {
  WriteFile(dir / "clearingd.toml", text);
  return LoadDaemonConfig(dir / "clearingd.toml");
}

// kGood with `line` (a key and its value) added to [store], loaded.
absl::StatusOr<DaemonConfig> LoadWithStoreKey(const TempDir& dir, const std::string& line) {
  std::string text = kGood;
  text.replace(text.find("path = \"state\"\n"), 15, "path = \"state\"\n" + line + "\n");
  return Load(dir, text);
}

// Expects `line` in [store] to be refused with a message that contains `message`.
void ExpectStoreKeyRefused(const TempDir& dir, const std::string& line, const std::string& message) {
  auto refused = LoadWithStoreKey(dir, line);
  ASSERT_FALSE(refused.ok()) << line;
  EXPECT_NE(refused.status().message().find(message), std::string::npos) << refused.status();
}

TEST(DaemonConfig, GoodFileGivesDefaultsAndPathsRelativeToTheFile) {
  TempDir dir;
  auto config = Load(dir, kGood);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->store_path, dir / "state");
  EXPECT_EQ(config->output_dir, dir / "clearing-files");
  EXPECT_EQ(config->calendar.grace_ms, 900'000);
  EXPECT_EQ(config->decode.dedup_horizon_ms, 40 * kDayMs);
  EXPECT_EQ(config->store_min_free_bytes, uint64_t{256} << 20);
  EXPECT_EQ(config->recent_txn_records_max, 1'000'000u);
  EXPECT_EQ(config->lines_checkpoint_applied_max, 500'000u);
}

TEST(DaemonConfig, RetentionMaintenanceAndTheAmountCeilingHaveDefaultsAndBounds) {
  TempDir dir;
  auto config = Load(dir, kGood);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->maintenance.window_retention_ms, 93 * kDayMs);
  EXPECT_EQ(config->maintenance.interval, std::chrono::hours(1));
  EXPECT_EQ(config->maintenance.dedup_horizon_ms, config->decode.dedup_horizon_ms);
  EXPECT_EQ(config->decode.amount_fen_max, kAmountFenMaxDefault);
  EXPECT_EQ(config->dead_letter_payload, DeadLetterPayload::kRedacted);
  auto set = LoadWithStoreKey(dir, "window_retention_days = 400\nmaintenance_interval_ms = 60000");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->maintenance.window_retention_ms, 400 * kDayMs);
  EXPECT_EQ(set->maintenance.interval, std::chrono::minutes(1));
  ExpectStoreKeyRefused(dir, "window_retention_days = 0", "store.window_retention_days = 0 is out of range");
  auto ceiling = Load(dir, std::string(kGood) + "[clearing]\namount_fen_max = 281474976710656\n");
  ASSERT_FALSE(ceiling.ok());
  EXPECT_NE(ceiling.status().message().find("clearing.amount_fen_max = 281474976710656 is out of range"),
            std::string::npos)
      << ceiling.status();
}

TEST(DaemonConfig, OnlyTheDocumentedLogLevelsAndDeadLetterFormsAreTaken) {
  TempDir dir;
  auto trace = Load(dir, std::string(kGood) + "[log]\nlevel = \"trace\"\n");
  ASSERT_FALSE(trace.ok());
  EXPECT_NE(trace.status().message().find("log.level must be"), std::string::npos) << trace.status();
  auto original = Load(dir, std::string(kGood) + "[log]\nlevel = \"error\"\n");
  ASSERT_TRUE(original.ok()) << original.status();
  std::string text = kGood;
  text.replace(text.find("[kafka]\n"), 8, "[kafka]\ndead_letter_payload = \"original\"\n");
  auto payload = Load(dir, text);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->dead_letter_payload, DeadLetterPayload::kOriginal);
  text.replace(text.find("\"original\""), 10, "\"clear\"");
  auto clear = Load(dir, text);
  ASSERT_FALSE(clear.ok());
  EXPECT_NE(clear.status().message().find("kafka.dead_letter_payload must be"), std::string::npos) << clear.status();
}

TEST(DaemonConfig, TheGroupAssignmentAndStaticMembershipAreTakenAndCheckedTogether) {
  TempDir dir;
  auto with_kafka = [&](const std::string& lines) {
    std::string text = kGood;
    text.replace(text.find("[kafka]\n"), 8, "[kafka]\n" + lines);
    return Load(dir, text);
  };
  auto fallback = Load(dir, kGood);
  ASSERT_TRUE(fallback.ok()) << fallback.status();
  EXPECT_FALSE(fallback->group_assignment);
  auto group = with_kafka("assignment = \"group\"\ngroup_instance_id = \"clearing-1\"\n");
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_TRUE(group->group_assignment);
  EXPECT_EQ(group->group_instance_id, "clearing-1");
  auto unknown = with_kafka("assignment = \"range\"\n");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("kafka.assignment must be"), std::string::npos) << unknown.status();
  auto alone = with_kafka("group_instance_id = \"clearing-1\"\n");
  ASSERT_FALSE(alone.ok());
  EXPECT_NE(alone.status().message().find("group_instance_id needs"), std::string::npos) << alone.status();
}

TEST(DaemonConfig, ShardsAreMembersOfAGroupWithoutAStandbyAndBounded) {
  TempDir dir;
  auto with = [&](const std::string& kafka, const std::string& pipeline) {
    std::string text = kGood;
    text.replace(text.find("[kafka]\n"), 8, "[kafka]\n" + kafka);
    return Load(dir, text + "[pipeline]\n" + pipeline);
  };
  auto one = Load(dir, kGood);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->shards, 1);
  auto two = with("assignment = \"group\"\n", "shards = 2\n");
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->shards, 2);
  auto alone = with("", "shards = 2\n");
  ASSERT_FALSE(alone.ok());
  EXPECT_NE(alone.status().message().find("pipeline.shards above 1 needs kafka.assignment = \"group\""),
            std::string::npos)
      << alone.status();
  auto standby = with("assignment = \"group\"\nstandby = true\n", "shards = 2\n");
  ASSERT_FALSE(standby.ok());
  EXPECT_NE(standby.status().message().find("kafka.standby is not available with pipeline.shards"), std::string::npos)
      << standby.status();
  auto many = with("assignment = \"group\"\n", "shards = 17\n");
  ASSERT_FALSE(many.ok());
  EXPECT_NE(many.status().message().find("pipeline.shards = 17 is out of range"), std::string::npos) << many.status();
}

TEST(DaemonConfig, ShardsKeepTheirStoresInTheStoreDirectoryAndJoinAsMembersOfTheirOwn) {
  DaemonConfig config;
  config.store_path = "/var/lib/yrd-clearing/state";
  config.group_instance_id = "clearing-1";
  EXPECT_EQ(ShardConfig(config, 0, 1).store_path, "/var/lib/yrd-clearing/state");
  EXPECT_EQ(ShardConfig(config, 0, 1).group_instance_id, "clearing-1");
  EXPECT_EQ(ShardConfig(config, 1, 2).store_path, "/var/lib/yrd-clearing/state/shard-1");
  EXPECT_EQ(ShardConfig(config, 1, 2).group_instance_id, "clearing-1.shard-1");
  config.group_instance_id.clear();
  EXPECT_EQ(ShardConfig(config, 0, 2).group_instance_id, "");
}

TEST(DaemonConfig, LineCheckpointIntervalHasABoundedLimit) {
  TempDir dir;
  auto set = LoadWithStoreKey(dir, "lines_checkpoint_applied_max = 20000");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->lines_checkpoint_applied_max, 20'000u);
  ExpectStoreKeyRefused(dir, "lines_checkpoint_applied_max = 0",
                        "store.lines_checkpoint_applied_max = 0 is out of range");
}

TEST(DaemonConfig, RecentTransactionRecordsHaveABoundedLimit) {
  TempDir dir;
  auto small = LoadWithStoreKey(dir, "recent_txn_records_max = 5000");
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->recent_txn_records_max, 5000u);
  ExpectStoreKeyRefused(dir, "recent_txn_records_max = 999", "store.recent_txn_records_max = 999 is out of range");
}

TEST(DaemonConfig, StoreFreeSpaceReserveIsInMebibytesAndMayBeOff) {
  TempDir dir;
  auto off = LoadWithStoreKey(dir, "min_free_mib = 0");
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(off->store_min_free_bytes, 0u);
  ExpectStoreKeyRefused(dir, "min_free_mib = -1", "store.min_free_mib = -1 is out of range");
}

TEST(DaemonConfig, UnknownKeyIsRefusedWithItsNameAndLine) {
  TempDir dir;
  auto config = Load(dir, std::string(kGood) + "[clearing]\ngrace_minutes = 15\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("grace_minutes"), std::string::npos) << config.status();
  EXPECT_NE(config.status().message().find("clearingd.toml:11"), std::string::npos) << config.status();
}

TEST(DaemonConfig, UnknownSectionIsRefused) {
  TempDir dir;
  auto config = Load(dir, std::string(kGood) + "[metrics]\nport = 1\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("metrics"), std::string::npos) << config.status();
}

TEST(DaemonConfig, WrongTypeIsRefusedWithTheKey) {
  TempDir dir;
  auto config = Load(dir, std::string(kGood) + "[clearing]\ngrace_ms = \"15 minutes\"\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("clearing.grace_ms must be an integer"), std::string::npos)
      << config.status();
}

TEST(DaemonConfig, OutOfRangeIsRefusedWithTheRange) {
  TempDir dir;
  auto config = Load(dir, std::string(kGood) + "[pipeline]\npipeline_batches_max = 1\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("pipeline.pipeline_batches_max = 1 is out of range [2, 64]"),
            std::string::npos)
      << config.status();
}

TEST(DaemonConfig, MissingManifestKeyIsRefused) {
  TempDir dir;
  std::string text = kGood;
  text.erase(text.find("manifest_key_file"));
  auto config = Load(dir, text);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("privacy.manifest_key_file is required"), std::string::npos)
      << config.status();
}

TEST(DaemonConfig, BadCutoffIsRefused) {
  TempDir dir;
  auto config = Load(dir, std::string(kGood) + "[clearing]\ncutoff_local = \"24:00\"\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("clearing.cutoff_local"), std::string::npos) << config.status();
}

}  // namespace
}  // namespace yrd
