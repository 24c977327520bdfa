// KafkaSource as a member of a consumer group, against the embedded broker's real group
// coordinator: two members split the partitions, one that leaves hands them all to the other, a
// member lets a revoked partition go only after the pipeline's drain, and a partition another
// member consumed further than this store holds is refused instead of consumed again.
#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "adapters/kafka/embedded_broker.h"
#include "adapters/kafka/kafka_source.h"
#include "gtest/gtest.h"

namespace yrd::kafka {
namespace {

constexpr int kPartitionsPerTopic = 8;
constexpr int kPartitions = 2 * kPartitionsPerTopic;  // yrd.taps and yrd.medical
// The coordinator hands a leaving member's partitions over within about 30 s.
constexpr std::chrono::seconds kRebalanceWait{90};

bool WaitFor(const std::function<bool()>& done, std::chrono::seconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

// One member, consumed on a thread of its own as the pipeline's ingest thread would.
class Member {
 public:
  Member(const std::string& bootstrap, const std::string& group) {
    KafkaSourceOptions options;
    options.bootstrap_servers = bootstrap;
    options.group_id = group;
    options.assignment = KafkaSourceOptions::Assignment::kGroup;
    options.dead_letter = false;
    options.settings = {{"fetch.wait.max.ms", "10"}, {"session.timeout.ms", "6000"},
                        {"heartbeat.interval.ms", "500"}};
    options.committed_offset = [](SourceTopic, int32_t) { return std::optional<int64_t>(); };
    auto source = KafkaSource::Create(options, PartitionOffsets{});
    EXPECT_TRUE(source.ok()) << source.status();
    if (source.ok()) source_ = *std::move(source);
  }
  ~Member() { Stop(); }

  void Start() {
    thread_ = std::thread([this] {
      Batch batch(BatchLimits{.messages_max = 64, .arena_bytes_max = 1 << 16});
      while (!stop_.load()) {
        const absl::Status status = source_->Fill(batch, std::chrono::milliseconds(100));
        batch.Clear();
        if (!status.ok()) {
          std::lock_guard<std::mutex> lock(mutex_);
          failure_ = status;
          return;
        }
      }
    });
  }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  // Leaves the group.
  void Leave() {
    Stop();
    source_.reset();
  }
  [[nodiscard]] KafkaSource& source() { return *source_; }
  [[nodiscard]] size_t held() const { return source_->Assignment().size(); }
  [[nodiscard]] absl::Status failure() {
    std::lock_guard<std::mutex> lock(mutex_);
    return failure_;
  }

 private:
  std::unique_ptr<KafkaSource> source_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  absl::Status failure_;
};

class KafkaGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto broker = EmbeddedBroker::Start(EmbeddedBrokerOptions{.partition_count = kPartitionsPerTopic});
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = *std::move(broker);
  }
  std::unique_ptr<EmbeddedBroker> broker_;
};

TEST_F(KafkaGroupTest, TwoMembersSplitThePartitionsAndOneTakesThemAllWhenTheOtherLeaves) {
  Member a(broker_->bootstrap_servers(), "split");
  Member b(broker_->bootstrap_servers(), "split");
  a.Start();
  b.Start();
  ASSERT_TRUE(WaitFor([&] { return a.held() + b.held() == kPartitions && a.held() > 0 && b.held() > 0; },
                      kRebalanceWait))
      << a.held() << " + " << b.held();
  EXPECT_EQ(a.held(), static_cast<size_t>(kPartitions / 2));
  EXPECT_EQ(b.held(), static_cast<size_t>(kPartitions / 2));
  std::set<std::pair<SourceTopic, int32_t>> all;
  for (const auto& partition : a.source().Assignment()) all.insert(partition);
  for (const auto& partition : b.source().Assignment()) all.insert(partition);
  EXPECT_EQ(all.size(), static_cast<size_t>(kPartitions)) << "the two shares overlap";

  b.Leave();
  EXPECT_TRUE(WaitFor([&] { return a.held() == static_cast<size_t>(kPartitions); }, kRebalanceWait)) << a.held();
  EXPECT_TRUE(a.failure().ok()) << a.failure();
}

TEST_F(KafkaGroupTest, ARevokedPartitionIsLetGoOnlyAfterTheDrain) {
  Member a(broker_->bootstrap_servers(), "drain");
  std::atomic<int> drains{0};
  std::atomic<size_t> held_at_drain{0};
  a.source().SetDrain([&] {
    held_at_drain.store(a.held());
    drains.fetch_add(1);
    return absl::OkStatus();
  });
  a.Start();
  ASSERT_TRUE(WaitFor([&] { return a.held() == static_cast<size_t>(kPartitions); }, kRebalanceWait)) << a.held();
  EXPECT_EQ(drains.load(), 0) << "nothing is revoked while a member is alone";

  Member b(broker_->bootstrap_servers(), "drain");
  b.Start();
  ASSERT_TRUE(WaitFor([&] { return b.held() > 0 && a.held() + b.held() == kPartitions; }, kRebalanceWait));
  EXPECT_GE(drains.load(), 1);
  EXPECT_EQ(held_at_drain.load(), static_cast<size_t>(kPartitions)) << "drained before anything was let go";
}

TEST_F(KafkaGroupTest, APartitionAnotherMemberConsumedFurtherIsRefused) {
  {
    // A member that consumed taps partition 3 up to offset 5 (its commit hint says so) and left.
    Member first(broker_->bootstrap_servers(), "refuse");
    first.Start();
    ASSERT_TRUE(WaitFor([&] { return first.held() == static_cast<size_t>(kPartitions); }, kRebalanceWait));
    first.Stop();
    Batch batch(BatchLimits{.messages_max = 4, .arena_bytes_max = 1 << 12});
    MessageSlot& slot = batch.Add(SourceTopic::kTaps, 3, 4, "T1", "payload", 1 << 10);
    slot.fate = Fate::kApplied;
    batch.committed = true;
    ASSERT_TRUE(first.source().OnCommitted(batch).ok());
    first.Leave();  // closing the consumer flushes its commit
  }
  // Another instance whose store never consumed it joins: it must not consume it again.
  Member second(broker_->bootstrap_servers(), "refuse");
  second.Start();
  ASSERT_TRUE(WaitFor([&] { return !second.failure().ok(); }, kRebalanceWait));
  EXPECT_EQ(second.failure().code(), absl::StatusCode::kFailedPrecondition) << second.failure();
  EXPECT_NE(std::string(second.failure().message()).find("partition 3"), std::string::npos) << second.failure();
}

}  // namespace
}  // namespace yrd::kafka
