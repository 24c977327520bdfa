// The changelog carried by Kafka against a real (embedded) broker: a store that claims a
// partition gets exactly the state of the former owner's last commit, a former owner that goes on
// committing after the claim (a zombie) changes nothing any later claimer restores, and a
// changelog whose oldest records the broker dropped is refused.
#include "adapters/kafka/kafka_changelog.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "adapters/crypto/hmac.h"
#include "adapters/kafka/embedded_broker.h"
#include "adapters/rocksdb/rocks_store.h"
#include "engine/base/strings.h"
#include "engine/ledger/ledger.h"
#include "gtest/gtest.h"
#include "tests/support/events.h"
#include "tests/support/store_answers.h"

namespace yrd::kafka {
namespace {

constexpr int64_t kMinuteMs = 60'000;
constexpr SourcePartition kTaps0{SourceTopic::kTaps, 0};
constexpr SourcePartition kTaps1{SourceTopic::kTaps, 1};
constexpr SourcePartition kMedical0{SourceTopic::kMedical, 0};
const std::vector<std::string> kTxnIds = {"TAP1", "TAP2", "TAP3", "R1", "SETTLE1", "CANCEL1", "LATE"};

// One instance: a store, its ledger and its changelog.
struct Instance {
  std::unique_ptr<RocksStore> store;
  std::unique_ptr<KafkaChangelog> changelog;
  std::unique_ptr<Ledger> ledger;
};

class KafkaChangelogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto broker = EmbeddedBroker::Start(EmbeddedBrokerOptions{
        .partition_count = 2, .topics = {"yrd.taps", "yrd.medical", "yrd.taps.changelog", "yrd.medical.changelog"}});
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = *std::move(broker);
    auto hmac = HmacSha256::Create("changelog-test-key-not-a-secret");
    ASSERT_TRUE(hmac.ok());
    tokenizer_ = *std::move(hmac);
  }

  // An instance on a new store under `name` that claims `owners`; its ledger is loaded after.
  Instance Start(const std::string& name, const std::vector<SourcePartition>& owners,
                 std::vector<ClaimResult>* claims = nullptr) {
    Instance instance;
    auto store = RocksStore::Open(dir_.path() + "/" + name, {});
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return instance;
    instance.store = *std::move(store);
    auto changelog = KafkaChangelog::Create({.bootstrap_servers = broker_->bootstrap_servers()});
    EXPECT_TRUE(changelog.ok()) << changelog.status();
    if (!changelog.ok()) return instance;
    instance.changelog = *std::move(changelog);
    for (const SourcePartition owner : owners) {
      absl::StatusOr<ClaimResult> claim = instance.changelog->Claim(*instance.store, owner);
      EXPECT_TRUE(claim.ok()) << claim.status();
      if (claim.ok() && claims != nullptr) claims->push_back(*claim);
    }
    LedgerOptions options;
    options.changelog = instance.changelog.get();
    instance.ledger = std::make_unique<Ledger>(*instance.store, options);
    const absl::Status loaded = instance.ledger->Load(now_ms_);
    EXPECT_TRUE(loaded.ok()) << loaded;
    return instance;
  }

  // Applies `payloads` of `topic`/`partition` at the offsets `offsets` keeps for that instance.
  std::vector<Fate> Apply(Instance& instance, std::map<SourcePartition, int64_t>& offsets, SourceTopic topic,
                          int32_t partition, const std::vector<std::string>& payloads) {
    batches_.push_back(std::make_unique<Batch>(BatchLimits{.messages_max = 64, .arena_bytes_max = 1 << 20}));
    Batch& batch = *batches_.back();
    batch.now_ms = now_ms_;
    batch.registry = registry_;
    for (const std::string& payload : payloads) {
      batch.Add(topic, partition, offsets[{topic, partition}]++, "key", payload, DecodeLimits{}.message_bytes_max);
    }
    test::DecodeBatch(batch, *tokenizer_);
    BatchResult result;
    const absl::Status status = instance.ledger->Apply(batch, result);
    EXPECT_TRUE(status.ok()) << status;
    std::vector<Fate> fates;
    for (const MessageSlot& slot : batch.slots()) fates.push_back(slot.fate);
    return fates;
  }

  test::TapFields Tap(std::string txn_id, int64_t amount_fen) const {
    test::TapFields tap;
    tap.txn_id = std::move(txn_id);
    tap.amount_fen = amount_fen;
    tap.occurred_at_ms = now_ms_ - kMinuteMs;
    return tap;
  }

  // A day's worth of the three partitions: taps, a duplicate, a refund, junk, a settlement and its
  // cancellation.
  void ApplyDay(Instance& instance, std::map<SourcePartition, int64_t>& offsets) {
    test::RefundFields refund;
    refund.txn_id = "R1";
    refund.amount_fen = 120;
    refund.occurred_at_ms = now_ms_ - kMinuteMs / 2;
    test::SettlementFields settlement;
    settlement.occurred_at_ms = now_ms_ - kMinuteMs;
    test::CancellationFields cancellation;
    cancellation.txn_id = "CANCEL1";
    cancellation.occurred_at_ms = now_ms_ - kMinuteMs / 2;
    Apply(instance, offsets, SourceTopic::kTaps, 0, {test::TapBytes(Tap("TAP1", 300)), test::TapBytes(Tap("TAP2", 500))});
    Apply(instance, offsets, SourceTopic::kTaps, 1, {test::TapBytes(Tap("TAP3", 700)), test::TapBytes(Tap("TAP3", 700))});
    Apply(instance, offsets, SourceTopic::kTaps, 0, {test::RefundBytes(refund), "junk"});
    Apply(instance, offsets, SourceTopic::kMedical, 0, {test::SettlementBytes(settlement)});
    Apply(instance, offsets, SourceTopic::kMedical, 0, {test::CancellationBytes(cancellation)});
  }

  test::TempDir dir_;
  std::unique_ptr<EmbeddedBroker> broker_;
  std::unique_ptr<HmacSha256> tokenizer_;
  std::shared_ptr<const Registry> registry_ = test::TestRegistry();
  int64_t now_ms_ = test::ChinaTimeMs(2026, 11, 27, 10, 0);
  std::vector<std::unique_ptr<Batch>> batches_;
};

TEST_F(KafkaChangelogTest, AClaimRestoresTheFormerOwnersStateAndFencesIt) {
  const std::vector<SourcePartition> owners = {kTaps0, kTaps1, kMedical0};
  std::vector<ClaimResult> first_claims;
  Instance writer = Start("writer", owners, &first_claims);
  ASSERT_EQ(first_claims.size(), 3u);
  for (const ClaimResult& claim : first_claims) {
    EXPECT_EQ(claim.epoch, 1u);
    EXPECT_EQ(claim.commits_restored, 0u);
  }
  std::map<SourcePartition, int64_t> writer_offsets;
  ApplyDay(writer, writer_offsets);
  EXPECT_EQ(writer.changelog->records_appended(), 5u);
  const std::vector<std::string> written = test::StoreAnswers(*writer.store, kTxnIds);

  // A new instance takes the partitions over (the writer was paused past its session timeout).
  std::vector<ClaimResult> claims;
  Instance taker = Start("taker", owners, &claims);
  ASSERT_EQ(claims.size(), 3u);
  EXPECT_EQ(claims[0].epoch, 2u);
  EXPECT_EQ(claims[0].commits_restored, 2u);  // yrd.taps/0: two commits
  EXPECT_EQ(claims[2].commits_restored, 2u);  // yrd.medical/0
  EXPECT_EQ(test::StoreAnswers(*taker.store, kTxnIds), written);

  // The writer wakes and commits once more (it does not know yet): its commit reaches the broker,
  // but no one who claims the partition later restores it.
  auto zombie_offsets = writer_offsets;
  EXPECT_EQ(Apply(writer, zombie_offsets, SourceTopic::kTaps, 0, {test::TapBytes(Tap("LATE", 999))}),
            std::vector<Fate>{Fate::kApplied});
  Instance third = Start("third", owners);
  EXPECT_EQ(test::StoreAnswers(*third.store, kTxnIds), written);

  // The taker goes on where the writer's last commit before the fence ended.
  auto taker_offsets = writer_offsets;
  EXPECT_EQ(Apply(taker, taker_offsets, SourceTopic::kTaps, 0,
                  {test::TapBytes(Tap("TAP1", 300)), test::TapBytes(Tap("LATE", 10))}),
            (std::vector<Fate>{Fate::kExactDuplicate, Fate::kApplied}));
}

TEST_F(KafkaChangelogTest, AChangelogWhoseOldestRecordsTheBrokerDroppedIsRefused) {
  auto store = RocksStore::Open(dir_.path() + "/writer", {});
  ASSERT_TRUE(store.ok()) << store.status();
  auto changelog = KafkaChangelog::Create({.bootstrap_servers = broker_->bootstrap_servers()});
  ASSERT_TRUE(changelog.ok()) << changelog.status();
  ASSERT_TRUE((*changelog)->Claim(**store, kTaps0).ok());
  // Records of 1 MiB that do not compress, past the broker's 5 MiB per partition.
  std::mt19937_64 random(7);
  std::string noise(1 << 20, '\0');
  constexpr uint64_t kRecords = 8;
  static_assert(kRecords * (1 << 20) > EmbeddedBroker::kPartitionBytesMax);
  for (uint64_t number = 1; number <= kRecords; ++number) {
    for (char& c : noise) c = static_cast<char>(random());
    ChangelogRecordBuilder builder;
    builder.Start({.kind = ChangelogKind::kCommit, .owner = kTaps0, .epoch = 1, .number = number,
                   .next_offset = static_cast<int64_t>(number)});
    builder.AddException("exception key", noise);
    ChangelogRecord record{.owner = kTaps0, .number = number, .bytes = {}};
    builder.Finish(record.bytes);
    ASSERT_TRUE((*changelog)->Append({&record, 1}).ok());
  }
  auto other = RocksStore::Open(dir_.path() + "/other", {});
  ASSERT_TRUE(other.ok()) << other.status();
  auto taker = KafkaChangelog::Create({.bootstrap_servers = broker_->bootstrap_servers()});
  ASSERT_TRUE(taker.ok()) << taker.status();
  absl::StatusOr<ClaimResult> claim = (*taker)->Claim(**other, kTaps0);
  ASSERT_FALSE(claim.ok());
  EXPECT_EQ(claim.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(claim.status().message().find("changelog_truncated"), std::string_view::npos) << claim.status();
  EXPECT_EQ((*taker)->EpochOf(kTaps0), 0u) << "a refused claim does not own the partition";
  // Its ledger would refuse to commit the partition.
  ChangelogRecord record{.owner = kTaps0, .number = 1, .bytes = "x"};
  EXPECT_EQ((*taker)->Append({&record, 1}).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace yrd::kafka
