// KafkaSource's dead-letter bookkeeping against a real (embedded) broker: it reports a commit's
// copies delivered only once they are, and a commit without copies moves nothing, so an idle
// daemon never writes to drop copies that do not exist.
#include "adapters/kafka/kafka_source.h"

#include <chrono>

#include "adapters/kafka/embedded_broker.h"
#include "gtest/gtest.h"

namespace yrd::kafka {
namespace {

constexpr std::chrono::milliseconds kFlushWait{30'000};

class KafkaSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto broker = EmbeddedBroker::Start(EmbeddedBrokerOptions{.partition_count = 2});
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = *std::move(broker);
    KafkaSourceOptions options;
    options.bootstrap_servers = broker_->bootstrap_servers();
    options.settings = {{"fetch.wait.max.ms", "10"}};
    auto source = KafkaSource::Create(options, PartitionOffsets{});
    ASSERT_TRUE(source.ok()) << source.status();
    source_ = *std::move(source);
  }

  // A committed batch of one message, rejected or applied.
  Batch& Committed(uint64_t commit_sequence, bool rejected) {
    batches_.push_back(std::make_unique<Batch>(BatchLimits{.messages_max = 4, .arena_bytes_max = 1 << 16}));
    Batch& batch = *batches_.back();
    MessageSlot& slot = batch.Add(SourceTopic::kTaps, 0, next_offset_++, "T1", "payload", 1 << 10);
    if (rejected) {
      slot.fate = Fate::kRejected;
      slot.reason = Reason::kMalformed;
    } else {
      slot.fate = Fate::kApplied;
    }
    batch.commit_sequence = commit_sequence;
    batch.committed = true;
    return batch;
  }

  std::unique_ptr<EmbeddedBroker> broker_;
  std::unique_ptr<KafkaSource> source_;
  std::vector<std::unique_ptr<Batch>> batches_;
  int64_t next_offset_ = 0;
};

TEST_F(KafkaSourceTest, CopiesAreReportedDeliveredOnlyOnceTheyAre) {
  EXPECT_EQ(source_->DeadLettersDeliveredThrough(), 0u);
  ASSERT_TRUE(source_->OnCommitted(Committed(3, /*rejected=*/true)).ok());
  ASSERT_TRUE(source_->FlushDeadLetters(kFlushWait).ok());
  EXPECT_EQ(source_->DeadLettersDeliveredThrough(), 3u);
}

TEST_F(KafkaSourceTest, CommitWithoutCopiesMovesNothing) {
  ASSERT_TRUE(source_->OnCommitted(Committed(3, /*rejected=*/true)).ok());
  ASSERT_TRUE(source_->FlushDeadLetters(kFlushWait).ok());
  ASSERT_TRUE(source_->OnCommitted(Committed(4, /*rejected=*/false)).ok());
  ASSERT_TRUE(source_->OnCommitted(Committed(5, /*rejected=*/false)).ok());
  ASSERT_TRUE(source_->FlushDeadLetters(kFlushWait).ok());
  EXPECT_EQ(source_->DeadLettersDeliveredThrough(), 3u);
}

TEST_F(KafkaSourceTest, StoredCopyProducedAtStartIsReportedOnceDelivered) {
  DeadLetterCopy copy;
  copy.commit_sequence = 7;
  copy.reason = Reason::kDuplicateConflict;
  copy.key = "T9";
  copy.payload = "stored payload";
  ASSERT_TRUE(source_->ProduceStoredDeadLetter(copy).ok());
  ASSERT_TRUE(source_->FlushDeadLetters(kFlushWait).ok());
  EXPECT_EQ(source_->DeadLettersDeliveredThrough(), 7u);
}

}  // namespace
}  // namespace yrd::kafka
