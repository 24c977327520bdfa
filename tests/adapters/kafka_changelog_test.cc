// The changelog carried by Kafka against a real (embedded) broker: a store that claims a
// partition gets exactly the state of the former owner's last commit, a former owner that goes on
// committing after the claim (a zombie) changes nothing any later claimer restores, and a
// changelog whose oldest records the broker dropped is refused.
#include "adapters/kafka/kafka_changelog.h"

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "adapters/crypto/hmac.h"
#include "adapters/fs/file_set.h"
#include "adapters/kafka/control_channel.h"
#include "adapters/kafka/embedded_broker.h"
#include "adapters/rocksdb/rocks_store.h"
#include "engine/base/strings.h"
#include "engine/ledger/ledger.h"
#include "engine/merge/window_merge.h"
#include "gtest/gtest.h"
#include "tests/support/events.h"
#include "tests/support/store_answers.h"

namespace yrd::kafka {
namespace {

constexpr int64_t kMinuteMs = 60'000;
constexpr SourcePartition kTaps0{SourceTopic::kTaps, 0};
constexpr SourcePartition kTaps1{SourceTopic::kTaps, 1};
constexpr SourcePartition kMedical0{SourceTopic::kMedical, 0};
constexpr SourcePartition kMedical1{SourceTopic::kMedical, 1};
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
        .partition_count = 2,
        .topics = {"yrd.taps", "yrd.medical", "yrd.taps.changelog", "yrd.medical.changelog", "yrd.control"}});
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = *std::move(broker);
    auto hmac = HmacSha256::Create("changelog-test-key-not-a-secret");
    ASSERT_TRUE(hmac.ok());
    tokenizer_ = *std::move(hmac);
  }

  // An instance on a new store under `name` that claims `owners`; its ledger is loaded after.
  Instance Start(const std::string& name, const std::vector<SourcePartition>& owners,
                 std::vector<ClaimResult>* claims = nullptr, uint64_t snapshot_bytes = KafkaChangelogOptions{}.snapshot_bytes) {
    Instance instance;
    auto store = RocksStore::Open(dir_.path() + "/" + name, {});
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return instance;
    instance.store = *std::move(store);
    auto changelog =
        KafkaChangelog::Create({.bootstrap_servers = broker_->bootstrap_servers(), .snapshot_bytes = snapshot_bytes});
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

  // Commits one batch with nothing but `command` through the instance's ledger.
  Batch& Command(Instance& instance, WindowCommand command) {
    batches_.push_back(std::make_unique<Batch>(BatchLimits{.messages_max = 1, .arena_bytes_max = 1 << 20}));
    Batch& batch = *batches_.back();
    batch.now_ms = now_ms_;
    batch.registry = registry_;
    batch.commands.push_back(std::move(command));
    BatchResult result;
    const absl::Status status = instance.ledger->Apply(batch, result);
    EXPECT_TRUE(status.ok()) << status;
    return batch;
  }

  // The file set of closed `day` in `store`, rendered in memory.
  std::map<std::string, std::string> Files(StateStore& store, const absl::StatusOr<ClosedWindow>& window) {
    EXPECT_TRUE(window.ok()) << window.status();
    if (!window.ok()) return {};
    auto digests = MakeFileSetDigests("merge-test-manifest-key-not-a-secret");
    EXPECT_TRUE(digests.ok());
    MemoryFileSet files;
    const absl::Status rendered = RenderWindowFiles(store, *window, files, *digests);
    EXPECT_TRUE(rendered.ok()) << rendered;
    return files.files();
  }

  test::TapFields Tap(std::string txn_id, int64_t amount_fen) const {
    test::TapFields tap;
    tap.txn_id = std::move(txn_id);
    tap.amount_fen = amount_fen;
    tap.occurred_at_ms = now_ms_ - kMinuteMs;
    return tap;
  }

  // One batch of a day: its partition and payloads.
  struct DayPart {
    SourceTopic topic;
    int32_t partition;
    std::vector<std::string> payloads;
  };
  // A day's worth of three partitions (medical partition 1 stays idle): taps, a duplicate, a
  // refund, junk, a settlement and its cancellation.
  std::vector<DayPart> Day() const {
    test::RefundFields refund;
    refund.txn_id = "R1";
    refund.amount_fen = 120;
    refund.occurred_at_ms = now_ms_ - kMinuteMs / 2;
    test::SettlementFields settlement;
    settlement.occurred_at_ms = now_ms_ - kMinuteMs;
    test::CancellationFields cancellation;
    cancellation.txn_id = "CANCEL1";
    cancellation.occurred_at_ms = now_ms_ - kMinuteMs / 2;
    return {
        {SourceTopic::kTaps, 0, {test::TapBytes(Tap("TAP1", 300)), test::TapBytes(Tap("TAP2", 500))}},
        {SourceTopic::kTaps, 1, {test::TapBytes(Tap("TAP3", 700)), test::TapBytes(Tap("TAP3", 700))}},
        {SourceTopic::kTaps, 0, {test::RefundBytes(refund), "junk"}},
        {SourceTopic::kMedical, 0, {test::SettlementBytes(settlement)}},
        {SourceTopic::kMedical, 0, {test::CancellationBytes(cancellation)}},
    };
  }
  void ApplyDay(Instance& instance, std::map<SourcePartition, int64_t>& offsets) {
    for (const DayPart& part : Day()) Apply(instance, offsets, part.topic, part.partition, part.payloads);
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

TEST_F(KafkaChangelogTest, AChangelogTheBrokerTruncatedIsRestoredFromItsLastSnapshot) {
  constexpr uint64_t kSnapshotBytes = 2 << 20;
  Instance writer = Start("writer", {kTaps0}, nullptr, kSnapshotBytes);
  std::map<SourcePartition, int64_t> offsets;
  Apply(writer, offsets, SourceTopic::kTaps, 0, {test::TapBytes(Tap("TAP1", 300)), test::TapBytes(Tap("TAP2", 500))});
  Apply(writer, offsets, SourceTopic::kTaps, 0, {"junk", test::TapBytes(Tap("TAP1", 300))});
  EXPECT_EQ(writer.changelog->snapshots_appended(), 0u) << "the changelog is still short";
  // 6 MiB that do not compress, past the broker's 5 MiB per partition: repeats of commit 2 (a
  // store that holds it skips them, one behind it waits for a snapshot), so that the broker drops
  // the partition's first commits.
  std::mt19937_64 random(11);
  for (int i = 0; i < 6; ++i) {
    ChangelogRecord repeat{.owner = kTaps0, .number = 2, .bytes = {}};
    ChangelogRecordBuilder builder;
    builder.Start({.kind = ChangelogKind::kCommit, .owner = kTaps0, .epoch = writer.changelog->EpochOf(kTaps0),
                   .number = 2, .next_offset = offsets[kTaps0]});
    builder.Finish(repeat.bytes);
    std::string noise(1 << 20, '\0');
    for (char& c : noise) c = static_cast<char>(random());
    repeat.bytes += noise;
    ASSERT_TRUE(writer.changelog->Append({&repeat, 1}).ok());
  }
  static_assert(6 * (1 << 20) > EmbeddedBroker::kPartitionBytesMax);
  // The next commit is followed by a snapshot: the changelog grew past kSnapshotBytes since the start.
  Apply(writer, offsets, SourceTopic::kTaps, 0, {test::RefundBytes([&] {
          test::RefundFields refund;
          refund.txn_id = "R1";
          refund.amount_fen = 120;
          refund.occurred_at_ms = now_ms_ - kMinuteMs / 2;
          return refund;
        }())});
  EXPECT_EQ(writer.changelog->snapshots_appended(), 1u);
  Apply(writer, offsets, SourceTopic::kTaps, 0, {test::TapBytes(Tap("TAP3", 700))});
  EXPECT_EQ(writer.changelog->snapshots_appended(), 1u) << "not again until the changelog grows as much again";
  const std::vector<std::string> written = test::StoreAnswers(*writer.store, kTxnIds);

  // A new owner restores the snapshot and the commit after it.
  std::vector<ClaimResult> claims;
  Instance taker = Start("taker", {kTaps0}, &claims, kSnapshotBytes);
  ASSERT_EQ(claims.size(), 1u);
  EXPECT_EQ(claims[0].snapshots_restored, 1u);
  EXPECT_EQ(claims[0].commits_restored, 1u);
  EXPECT_EQ(test::StoreAnswers(*taker.store, kTxnIds), written);
  auto taker_offsets = offsets;
  EXPECT_EQ(Apply(taker, taker_offsets, SourceTopic::kTaps, 0,
                  {test::TapBytes(Tap("TAP2", 500)), test::TapBytes(Tap("LATE", 10))}),
            (std::vector<Fate>{Fate::kExactDuplicate, Fate::kApplied}));

  // Without snapshots the same broker would refuse the partition: what the first test shows.
}

TEST_F(KafkaChangelogTest, AStandbyFollowsTheChangelogsAndAClaimCopiesFromItAndReadsOnlyWhatCameAfter) {
  const std::vector<SourcePartition> owners = {kTaps0, kTaps1, kMedical0};
  Instance writer = Start("writer", owners);
  std::map<SourcePartition, int64_t> writer_offsets;
  ApplyDay(writer, writer_offsets);

  // Another instance keeps a standby of the writer's partitions in a store of its own.
  auto standby_store = RocksStore::Open(dir_.path() + "/standby", {});
  ASSERT_TRUE(standby_store.ok()) << standby_store.status();
  auto taker_changelog = KafkaChangelog::Create({.bootstrap_servers = broker_->bootstrap_servers()});
  ASSERT_TRUE(taker_changelog.ok()) << taker_changelog.status();
  auto standby = (*taker_changelog)->StartStandby(**standby_store);
  ASSERT_TRUE(standby.ok()) << standby.status();
  ASSERT_TRUE((*taker_changelog)->ContinueStandby(**standby, owners).ok());
  EXPECT_EQ((*standby)->followed_count(), 3u);
  EXPECT_EQ((*standby)->commits_applied(), 5u);
  EXPECT_EQ(test::StoreAnswers(**standby_store, kTxnIds), test::StoreAnswers(*writer.store, kTxnIds));
  // It goes on from where it stopped: the next pass reads only the writer's new commit.
  Apply(writer, writer_offsets, SourceTopic::kTaps, 0, {test::TapBytes(Tap("LATE", 999))});
  ASSERT_TRUE((*taker_changelog)->ContinueStandby(**standby, owners).ok());
  EXPECT_EQ((*standby)->lag_records(), 1u);
  EXPECT_EQ((*standby)->commits_applied(), 6u);
  const std::vector<std::string> written = test::StoreAnswers(*writer.store, kTxnIds);
  EXPECT_EQ(test::StoreAnswers(**standby_store, kTxnIds), written);

  // The writer goes; the taker copies the partitions from its standby and reads their changelogs
  // only after what the standby had read: nothing is restored twice.
  auto taker_store = RocksStore::Open(dir_.path() + "/taker", {});
  ASSERT_TRUE(taker_store.ok()) << taker_store.status();
  std::map<SourcePartition, int64_t> read_from;
  for (const SourcePartition owner : owners) {
    absl::StatusOr<bool> copied = CopyOwnerState(**standby_store, **taker_store, owner);
    ASSERT_TRUE(copied.ok()) << copied.status();
    EXPECT_TRUE(*copied);
    read_from[owner] = (*standby)->PositionOf(owner)->next_offset;
  }
  EXPECT_FALSE(*CopyOwnerState(**standby_store, **taker_store, kTaps0)) << "the store holds that commit already";
  Apply(writer, writer_offsets, SourceTopic::kTaps, 1, {test::TapBytes(Tap("TAP9", 90))});  // after the copy
  absl::StatusOr<std::vector<ClaimResult>> claims = (*taker_changelog)->Claim(**taker_store, owners, read_from);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ((*claims)[0].commits_restored, 0u);
  EXPECT_EQ((*claims)[0].records_read, 1u) << "its own fence: the standby read everything before";
  EXPECT_EQ((*claims)[1].commits_restored, 1u) << "the commit after the standby's last pass";
  EXPECT_EQ((*claims)[0].epoch, 2u);
  const std::vector<std::string> final_answers = test::StoreAnswers(*writer.store, kTxnIds);
  EXPECT_EQ(test::StoreAnswers(**taker_store, kTxnIds), final_answers);
  LedgerOptions options;
  options.changelog = taker_changelog->get();
  Instance taker{.store = std::move(*taker_store), .changelog = std::move(*taker_changelog), .ledger = nullptr};
  taker.ledger = std::make_unique<Ledger>(*taker.store, options);
  ASSERT_TRUE(taker.ledger->Load(now_ms_).ok());
  auto taker_offsets = writer_offsets;
  EXPECT_EQ(Apply(taker, taker_offsets, SourceTopic::kTaps, 0,
                  {test::TapBytes(Tap("TAP1", 300)), test::TapBytes(Tap("LATE", 999))}),
            (std::vector<Fate>{Fate::kExactDuplicate, Fate::kExactDuplicate}));

  // A window the instance's own store retired is retired in the standby's store too.
  ASSERT_TRUE(RetireWindowRecords(**standby_store, WindowCalendar{}.DayOf(now_ms_), now_ms_).ok());
  for (const std::string& answer : test::StoreAnswers(**standby_store, kTxnIds)) {
    EXPECT_FALSE(answer.starts_with("applied") || answer.starts_with("exception")) << answer;
  }
}

TEST_F(KafkaChangelogTest, AWindowClosedByTwoOwnersMergedFromTheirChangelogsHasTheBytesOfOneInstance) {
  Instance first = Start("first", {kTaps0, kMedical0});
  Instance second = Start("second", {kTaps1, kMedical1});
  Instance one = Start("one", {});  // consumes every partition, no changelog
  one.ledger = std::make_unique<Ledger>(*one.store, LedgerOptions{});
  ASSERT_TRUE(one.ledger->Load(now_ms_).ok());
  std::map<SourcePartition, int64_t> first_offsets, second_offsets, one_offsets;
  for (const DayPart& part : Day()) {
    Instance& owner = part.partition == 0 ? first : second;
    Apply(owner, part.partition == 0 ? first_offsets : second_offsets, part.topic, part.partition, part.payloads);
    Apply(one, one_offsets, part.topic, part.partition, part.payloads);
  }
  const WindowDay nov27 = WindowCalendar{}.DayOf(now_ms_);
  const int64_t closed_at_ms = now_ms_ + kMinuteMs;

  // The first owner closes its share; the second has not yet: the merge waits for it.
  EXPECT_EQ(Command(first, WindowCommand::RegionClose(nov27, closed_at_ms)).windows_closed,
            (std::vector<WindowDay>{nov27}));
  const std::vector<SourcePartition> all = {kTaps0, kTaps1, kMedical0, kMedical1};
  auto merge = RocksStore::Open(dir_.path() + "/merge", {});
  ASSERT_TRUE(merge.ok()) << merge.status();
  absl::StatusOr<std::unique_ptr<WindowRestore>> restore = second.changelog->StartWindowRestore(**merge, nov27, all);
  ASSERT_TRUE(restore.ok()) << restore.status();
  ASSERT_TRUE(second.changelog->ContinueWindowRestore(**restore).ok());
  EXPECT_EQ((*restore)->result().not_closed, (std::vector<SourcePartition>{kTaps1, kMedical1}));
  const uint64_t first_pass_records = (*restore)->result().records_read;
  // Events after the close are the next window's: not in the merge.
  Apply(first, first_offsets, SourceTopic::kTaps, 0, {test::TapBytes(Tap("TAP9", 900))});
  EXPECT_EQ(Command(second, WindowCommand::RegionClose(nov27, closed_at_ms)).windows_closed,
            (std::vector<WindowDay>{nov27}));
  Apply(one, one_offsets, SourceTopic::kTaps, 0, {});
  EXPECT_EQ(Command(one, WindowCommand::RegionClose(nov27, closed_at_ms)).windows_closed, (std::vector<WindowDay>{nov27}));
  Apply(one, one_offsets, SourceTopic::kTaps, 0, {test::TapBytes(Tap("TAP9", 900))});

  // The next pass reads on where the first stopped: only the second owner's partitions, from
  // where they were read to.
  ASSERT_TRUE(second.changelog->ContinueWindowRestore(**restore).ok());
  const WindowRestoreResult& restored = (*restore)->result();
  EXPECT_TRUE(restored.not_closed.empty());
  EXPECT_EQ(restored.closed_at_ms, closed_at_ms);
  auto again = RocksStore::Open(dir_.path() + "/merge-again", {});
  ASSERT_TRUE(again.ok()) << again.status();
  absl::StatusOr<WindowRestoreResult> in_one_pass = first.changelog->RestoreWindow(**again, nov27, all);
  ASSERT_TRUE(in_one_pass.ok()) << in_one_pass.status();
  EXPECT_EQ(restored.records_read, in_one_pass->records_read) << "each record read once over the passes";
  EXPECT_LT(first_pass_records, restored.records_read);
  const std::map<std::string, std::string> merged =
      Files(**merge, CloseMergedWindow(**merge, WindowCalendar{}, nov27, closed_at_ms, registry_, now_ms_));
  const std::map<std::string, std::string> single = Files(*one.store, LoadClosedWindow(*one.store, nov27, *registry_));
  ASSERT_FALSE(single.empty());
  EXPECT_TRUE(single.contains("summary.txt"));
  EXPECT_EQ(merged, single);
  // Nothing of the second window got into the first's files.
  for (const auto& [path, bytes] : merged) EXPECT_EQ(bytes.find("TAP9"), std::string::npos) << path;
}

TEST_F(KafkaChangelogTest, AnOwnerKnowsFromTheChangelogWhenAnotherInstanceClaimedItsPartition) {
  Instance first = Start("first", {kTaps0, kTaps1});
  std::map<SourcePartition, int64_t> offsets;
  Apply(first, offsets, SourceTopic::kTaps, 0, {test::TapBytes(Tap("TAP1", 300))});
  EXPECT_EQ(first.changelog->StillOwns(kTaps0).value_or(false), true);
  EXPECT_EQ(first.changelog->StillOwns(kMedical0).value_or(true), false) << "never claimed";
  Instance second = Start("second", {kTaps0});
  EXPECT_EQ(first.changelog->StillOwns(kTaps0).value_or(true), false) << "a zombie now";
  EXPECT_EQ(first.changelog->StillOwns(kTaps1).value_or(false), true);
  EXPECT_EQ(second.changelog->StillOwns(kTaps0).value_or(false), true);
}

TEST_F(KafkaChangelogTest, AControlCommandPublishedByOneInstanceReachesEveryInstanceAndABadRecordIsSkipped) {
  std::mutex mutex;
  std::condition_variable seen_cv;
  std::map<std::string, std::vector<ControlCommand>> seen;
  auto channel_of = [&](const std::string& name) {
    return ControlChannel::Start({.bootstrap_servers = broker_->bootstrap_servers(),
                                  .on_command = [&, name](const ControlCommand& command) {
                                    std::lock_guard<std::mutex> lock(mutex);
                                    seen[name].push_back(command);
                                    seen_cv.notify_all();
                                  },
                                  .on_warning = nullptr});
  };
  auto first = channel_of("first");
  ASSERT_TRUE(first.ok()) << first.status();
  // A record that is not a command, then two commands.
  auto producer = Producer::Create(broker_->bootstrap_servers());
  ASSERT_TRUE(producer.ok());
  ASSERT_TRUE((*producer)->ProduceToPartition("yrd.control", 0, "x", "{\"command\":\"explode\"}").ok());
  ASSERT_TRUE((*producer)->Flush(std::chrono::seconds(10)).ok());
  const ControlCommand close{.kind = ControlCommand::Kind::kClose, .day = 20784, .at_ms = now_ms_, .from = "clearing-2"};
  const ControlCommand written{.kind = ControlCommand::Kind::kFilesWritten, .day = 20784, .at_ms = now_ms_ + 1,
                               .from = "clearing-1"};
  ASSERT_TRUE((*first)->Publish(close).ok());
  ASSERT_TRUE((*first)->Publish(written).ok());
  // An instance that starts later reads them from the oldest.
  auto second = channel_of("second");
  ASSERT_TRUE(second.ok()) << second.status();
  std::unique_lock<std::mutex> lock(mutex);
  ASSERT_TRUE(seen_cv.wait_for(lock, std::chrono::seconds(30), [&] {
    return seen["first"].size() == 2 && seen["second"].size() == 2;
  }));
  EXPECT_EQ(seen["first"], (std::vector<ControlCommand>{close, written}));
  EXPECT_EQ(seen["second"], seen["first"]);
  EXPECT_EQ((*first)->records_skipped(), 1u);
  std::string error;
  EXPECT_EQ(DecodeControlCommand(EncodeControlCommand(close), error), close);
  EXPECT_FALSE(DecodeControlCommand("{\"command\":\"close\",\"window\":\"2026-11-27\",\"at_ms\":1}", error));
  EXPECT_NE(error.find("window"), std::string::npos);
  EXPECT_FALSE(DecodeControlCommand("{\"command\":\"close\",\"window\":\"20261127\",\"at_ms\":-5}", error));
  EXPECT_FALSE(DecodeControlCommand(std::string(5000, '{'), error));
  EXPECT_FALSE(DecodeControlCommand("not json", error));
}

}  // namespace
}  // namespace yrd::kafka
