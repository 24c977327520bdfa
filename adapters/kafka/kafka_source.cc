#include "adapters/kafka/kafka_source.h"

#include <librdkafka/rdkafka.h>

#include <array>
#include <deque>
#include <map>
#include <set>
#include <vector>

#include "adapters/kafka/log_route.h"
#include "engine/base/money.h"
#include "engine/base/strings.h"
#include "fmt/format.h"

namespace yrd::kafka {
namespace {

// Consumer defaults; [kafka.settings] in the config overrides any of them except the three
// that exactly-once depends on (auto commit, auto offset store, offset reset), which are
// forced after the overrides.
constexpr std::pair<const char*, const char*> kDefaultSettings[] = {
    {"fetch.wait.max.ms", "10"},              // an empty fetch waits this long (the mock waits all of it)
    {"fetch.min.bytes", "1"},
    {"queued.min.messages", "2000000"},       // librdkafka 2.0.2 stalls ~1 s when its queue drains below this
    {"queued.max.messages.kbytes", "1048576"},
    {"max.partition.fetch.bytes", "8388608"},
    {"fetch.max.bytes", "67108864"},
    {"enable.partition.eof", "false"},
    {"socket.nagle.disable", "true"},
};
constexpr std::pair<const char*, const char*> kForcedSettings[] = {
    {"enable.auto.commit", "false"},
    {"enable.auto.offset.store", "false"},
    {"auto.offset.reset", "error"},  // never jump over messages the broker no longer holds
};

std::optional<SourceTopic> TopicOf(std::string_view name) {
  if (name == kTapsTopic) return SourceTopic::kTaps;
  if (name == kMedicalTopic) return SourceTopic::kMedical;
  return std::nullopt;
}
std::string_view TopicName(SourceTopic topic) { return topic == SourceTopic::kTaps ? kTapsTopic : kMedicalTopic; }

}  // namespace

struct KafkaSource::Impl {
  KafkaSourceOptions options;
  rd_kafka_t* handle = nullptr;
  rd_kafka_queue_t* queue = nullptr;
  std::unique_ptr<Producer> dead_letters;
  // Dead-letter copies: produced_through is the last commit that had a copy produced, and
  // every copy of a commit up to delivered_through is known delivered (only commits with
  // copies count, so a daemon with nothing rejected never moves them and never writes for them).
  // A failed delivery stops delivered_through for this run, so the store keeps those copies and
  // the next start produces them again.
  uint64_t produced_through = 0;
  uint64_t delivered_through = 0;
  DeadLetterScratch scratch;
  bool delivery_failed = false;

  absl::Status Produce(const DeadLetterCopy& copy) {
    const std::string partition = std::to_string(copy.partition);
    const std::string offset = std::to_string(copy.offset);
    const std::string digest = DigestHex(copy.digest);
    const std::string window = FormatWindowDay(copy.window);
    const Header headers[] = {
        {"source_topic", TopicName(copy.topic)},
        {"source_partition", partition},
        {"source_offset", offset},
        {"reason", ReasonName(copy.reason)},
        {"detail", copy.detail},
        {"digest", digest},
        {"window", window},
        {"payload", DeadLetterPayloadName(copy.payload_form)},
    };
    return dead_letters->Produce(kDeadLetterTopic, copy.key, copy.payload, headers);
  }

  // Everything produced so far is delivered when the producer's queue is empty.
  void NoteDeliveries(std::chrono::milliseconds wait) {
    if (dead_letters == nullptr || delivery_failed) return;
    const absl::Status flushed = dead_letters->Flush(wait);
    if (flushed.ok()) {
      delivered_through = produced_through;
    } else if (flushed.code() != absl::StatusCode::kDeadlineExceeded) {
      delivery_failed = true;
      if (options.on_warning) {
        options.on_warning(Cat("dead-letter copies were not delivered (the store keeps them; the next start "
                               "produces them again): ",
                               flushed.ToString()));
      }
    }
  }
  // Next expected offset per partition consumed now; -1 until the first message when nothing was
  // committed.
  std::map<std::pair<SourceTopic, int32_t>, int64_t> expected;
  // A consumer group's member (Assignment::kGroup): the batch Fill is filling (a revoke drops the
  // revoked partitions' messages from it), the pipeline's drain, and the first refusal of a
  // rebalance, returned by Fill.
  Batch* filling = nullptr;
  std::function<absl::Status()> drain;
  absl::Status rebalance_failure;
  std::atomic<uint64_t> rebalances{0};
  size_t partition_count = 0;  // of both topics, from the metadata at Create
  std::array<uint32_t, 2> topic_partition_counts{};  // of yrd.taps and of yrd.medical
  std::atomic<std::shared_ptr<const std::vector<std::pair<SourceTopic, int32_t>>>> assignment{
      std::make_shared<const std::vector<std::pair<SourceTopic, int32_t>>>()};

  bool ownership_changed = true;  // the first batch after a start says what this instance owns
  void PublishAssignment() {
    ownership_changed = true;
    auto partitions = std::make_shared<std::vector<std::pair<SourceTopic, int32_t>>>();
    for (const auto& [topic_partition, next] : expected) partitions->push_back(topic_partition);
    assignment.store(std::move(partitions));
  }
  void Refuse(absl::Status status) {
    if (rebalance_failure.ok()) rebalance_failure = std::move(status);
  }
  void OnAssign(rd_kafka_topic_partition_list_t* partitions);
  void OnRevoke(rd_kafka_topic_partition_list_t* partitions);
  static void Rebalance(rd_kafka_t* handle, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                        void* opaque);
  // Consumed but did not fit the last batch (its arena was full); taken first next time.
  std::deque<rd_kafka_message_t*> carry;
  std::vector<rd_kafka_message_t*> messages = std::vector<rd_kafka_message_t*>(kConsumeChunkMax);
  std::chrono::steady_clock::time_point lag_refreshed_at{};
  std::atomic<std::shared_ptr<const std::vector<PartitionLag>>> lag{std::make_shared<const std::vector<PartitionLag>>()};

  void RefreshLag() {
    auto lags = std::make_shared<std::vector<PartitionLag>>();
    for (const auto& [topic_partition, next] : expected) {
      int64_t low = 0, high = 0;
      const std::string topic(TopicName(topic_partition.first));
      PartitionLag entry{topic_partition.first, topic_partition.second, -1};
      if (rd_kafka_get_watermark_offsets(handle, topic.c_str(), topic_partition.second, &low, &high) ==
              RD_KAFKA_RESP_ERR_NO_ERROR &&
          high >= 0) {
        entry.lag_messages = std::max<int64_t>(0, high - std::max<int64_t>(next, low));
      }
      lags->push_back(entry);
    }
    lag.store(std::move(lags));
  }

  ~Impl() {
    for (rd_kafka_message_t* message : carry) rd_kafka_message_destroy(message);
    carry.clear();
    if (handle != nullptr && options.assignment == KafkaSourceOptions::Assignment::kGroup) AwaitFirstAssignment();
    if (queue != nullptr) rd_kafka_queue_destroy(queue);
    if (handle != nullptr) {
      (void)rd_kafka_consumer_close(handle);
      rd_kafka_destroy(handle);
    }
  }

  // librdkafka 2.0.2 aborts when a cooperative-sticky member is closed before its first
  // assignment (its assignor state is still null: librdkafka issue 4312, fixed in 2.3.0). So a
  // member stopped while it joins first waits, for at most kCloseAssignmentWaitMax, for that
  // assignment, taking it without consuming or restoring anything.
  void AwaitFirstAssignment() {
    closing = true;
    const auto deadline = std::chrono::steady_clock::now() + kCloseAssignmentWaitMax;
    while (!assigned_once && std::chrono::steady_clock::now() < deadline) {
      if (rd_kafka_message_t* message = rd_kafka_consumer_poll(handle, 100)) rd_kafka_message_destroy(message);
    }
  }
  static constexpr std::chrono::milliseconds kCloseAssignmentWaitMax{60'000};
  bool assigned_once = false;  // a first assignment came (the rebalance callback ran for it)
  bool closing = false;        // the source is being destroyed: assignments are only taken

  // Adds one message; false when it does not fit (the caller keeps it for the next batch).
  absl::Status Take(rd_kafka_message_t* message, Batch& batch, bool& fitted) {
    fitted = true;
    const std::string_view topic_name = rd_kafka_topic_name(message->rkt);
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const std::string text = fmt::format("{} partition {}: {}", topic_name, message->partition,
                                           rd_kafka_message_errstr(message));
      if (message->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
          message->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
        return absl::DataLossError(fmt::format(
            "{}: the next offset to clear is no longer on the broker, so messages were lost upstream; "
            "consumption stops rather than skip them. Recover the messages from the producers, or reset "
            "the partition deliberately after reconciliation.",
            text));
      }
      if (options.on_warning) options.on_warning(text + " (the consumer retries)");
      rd_kafka_message_destroy(message);
      return absl::OkStatus();
    }
    const std::optional<SourceTopic> topic = TopicOf(topic_name);
    if (!topic) {
      rd_kafka_message_destroy(message);
      return absl::OkStatus();
    }
    auto at = expected.find({*topic, message->partition});
    if (at == expected.end()) {
      if (options.assignment == KafkaSourceOptions::Assignment::kGroup) {
        rd_kafka_message_destroy(message);  // of a partition the group took away meanwhile
        return absl::OkStatus();
      }
      at = expected.emplace(std::pair{*topic, message->partition}, 0).first;
    }
    int64_t& next = at->second;
    if (next >= 0 && message->offset != next) {
      return absl::DataLossError(fmt::format(
          "{} partition {}: expected offset {}, got {}: {} messages are missing; consumption stops rather than "
          "skip them. Check the topic's retention and the producers, then restart.",
          topic_name, message->partition, next, message->offset, message->offset - next));
    }
    const std::string_view key(static_cast<const char*>(message->key), message->key_len);
    const std::string_view payload(static_cast<const char*>(message->payload), message->len);
    const size_t copied_bytes = payload.size() > options.message_bytes_max ? 0 : payload.size();
    if (!batch.HasRoomFor(key.size(), copied_bytes)) {
      fitted = false;
      return absl::OkStatus();
    }
    batch.Add(*topic, message->partition, message->offset, key, payload, options.message_bytes_max);
    next = message->offset + 1;
    rd_kafka_message_destroy(message);
    return absl::OkStatus();
  }
};

KafkaSource::KafkaSource(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

KafkaSource::~KafkaSource() = default;

namespace {

// The consumer's librdkafka configuration: the defaults, the operator's settings, then the forced
// ones. The caller owns the result (rd_kafka_conf_destroy, or rd_kafka_new takes it).
absl::StatusOr<rd_kafka_conf_t*> ConsumerConf(const KafkaSourceOptions& options) {
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  RouteKafkaLogs(conf);
  auto set = [&](const std::string& name, const std::string& value) -> absl::Status {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error, sizeof error) != RD_KAFKA_CONF_OK) {
      return absl::InvalidArgumentError(fmt::format("kafka setting {}={} refused: {}", name, value, error));
    }
    return absl::OkStatus();
  };
  absl::Status status = set("bootstrap.servers", options.bootstrap_servers);
  if (status.ok()) status = set("group.id", options.group_id);
  for (const auto& [name, value] : kDefaultSettings) {
    if (status.ok()) status = set(name, value);
  }
  for (const auto& [name, value] : options.settings) {
    if (status.ok()) status = set(name, value);
  }
  for (const auto& [name, value] : kForcedSettings) {
    if (status.ok()) status = set(name, value);
  }
  if (options.assignment == KafkaSourceOptions::Assignment::kGroup) {
    // Incremental rebalances: a member keeps the partitions it has while others join or leave.
    if (status.ok()) status = set("partition.assignment.strategy", "cooperative-sticky");
    if (status.ok() && !options.group_instance_id.empty()) status = set("group.instance.id", options.group_instance_id);
  } else if (!options.group_instance_id.empty() && status.ok()) {
    status = absl::InvalidArgumentError("kafka.group_instance_id needs kafka.assignment = \"group\"");
  }
  if (!status.ok()) {
    rd_kafka_conf_destroy(conf);
    return status;
  }
  return conf;
}

}  // namespace

absl::Status KafkaSource::CheckOptions(const KafkaSourceOptions& options) {
  absl::StatusOr<rd_kafka_conf_t*> conf = ConsumerConf(options);
  if (!conf.ok()) return conf.status();
  rd_kafka_conf_destroy(*conf);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<KafkaSource>> KafkaSource::Create(KafkaSourceOptions options,
                                                                 const PartitionOffsets& committed) {
  auto impl = std::make_unique<Impl>();
  char error[512];
  absl::StatusOr<rd_kafka_conf_t*> configured = ConsumerConf(options);
  if (!configured.ok()) return configured.status();
  rd_kafka_conf_t* conf = *configured;
  const bool group = options.assignment == KafkaSourceOptions::Assignment::kGroup;
  if (group) {
    rd_kafka_conf_set_rebalance_cb(conf, &Impl::Rebalance);
    rd_kafka_conf_set_opaque(conf, impl.get());
    impl->options = options;  // the callback reads them from the first poll on
  }
  impl->handle = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
  if (impl->handle == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InternalError(fmt::format("cannot create the kafka consumer: {}", error));
  }
  (void)rd_kafka_poll_set_consumer(impl->handle);

  const rd_kafka_metadata_t* metadata = nullptr;
  const rd_kafka_resp_err_t metadata_error =
      rd_kafka_metadata(impl->handle, 1, nullptr, &metadata, static_cast<int>(options.metadata_timeout.count()));
  if (metadata_error != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(fmt::format("cannot read topic metadata from {} within {} ms: {}",
                                              options.bootstrap_servers, options.metadata_timeout.count(),
                                              rd_kafka_err2str(metadata_error)));
  }
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(64);
  for (const std::string_view wanted : {kTapsTopic, kMedicalTopic}) {
    bool found = false;
    for (int t = 0; t < metadata->topic_cnt; ++t) {
      const rd_kafka_metadata_topic& topic = metadata->topics[t];
      if (wanted != topic.topic || topic.err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
      found = true;
      const SourceTopic source_topic = *TopicOf(wanted);
      for (int p = 0; p < topic.partition_cnt; ++p) {
        const int32_t partition = topic.partitions[p].id;
        if (partition < 0 || partition >= kSourcePartitionsPerTopicMax) {
          rd_kafka_metadata_destroy(metadata);
          rd_kafka_topic_partition_list_destroy(assignment);
          return absl::FailedPreconditionError(fmt::format(
              "topic {} has partition {}; the engine consumes partitions 0 to {} only (the bound that keeps every "
              "window total within int64): use a topic with at most {} partitions",
              wanted, partition, kSourcePartitionsPerTopicMax - 1, kSourcePartitionsPerTopicMax));
        }
        ++impl->partition_count;
        ++impl->topic_partition_counts[source_topic == SourceTopic::kTaps ? 0 : 1];
        rd_kafka_topic_partition_t* entry = rd_kafka_topic_partition_list_add(assignment, topic.topic, partition);
        const auto it = committed.find({source_topic, partition});
        entry->offset = it == committed.end() ? RD_KAFKA_OFFSET_BEGINNING : it->second;
        impl->expected[{source_topic, partition}] = it == committed.end() ? -1 : it->second;
      }
    }
    if (!found) {
      rd_kafka_metadata_destroy(metadata);
      rd_kafka_topic_partition_list_destroy(assignment);
      return absl::NotFoundError(fmt::format("topic {} does not exist on {}; create it (clearing-broker does)",
                                             wanted, options.bootstrap_servers));
    }
  }
  rd_kafka_metadata_destroy(metadata);
  if (group) {
    // The group decides: the partitions come with the first rebalance, at the store's offsets.
    rd_kafka_topic_partition_list_destroy(assignment);
    impl->expected.clear();
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(2);
    for (const std::string_view name : {kTapsTopic, kMedicalTopic}) {
      rd_kafka_topic_partition_list_add(topics, std::string(name).c_str(), RD_KAFKA_PARTITION_UA);
    }
    const rd_kafka_resp_err_t subscribe_error = rd_kafka_subscribe(impl->handle, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (subscribe_error != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::InternalError(fmt::format("cannot join group {}: {}", options.group_id, rd_kafka_err2str(subscribe_error)));
    }
  } else {
    const rd_kafka_resp_err_t assign_error = rd_kafka_assign(impl->handle, assignment);
    rd_kafka_topic_partition_list_destroy(assignment);
    if (assign_error != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::InternalError(fmt::format("cannot assign partitions: {}", rd_kafka_err2str(assign_error)));
    }
  }
  impl->PublishAssignment();
  impl->queue = rd_kafka_queue_get_consumer(impl->handle);
  if (options.dead_letter) {
    auto producer = Producer::Create(options.bootstrap_servers);
    if (!producer.ok()) return producer.status();
    impl->dead_letters = *std::move(producer);
  }
  impl->options = std::move(options);
  return std::unique_ptr<KafkaSource>(new KafkaSource(std::move(impl)));
}

std::shared_ptr<const std::vector<KafkaSource::PartitionLag>> KafkaSource::Lag() const { return impl_->lag.load(); }

absl::Status KafkaSource::Fill(Batch& batch, std::chrono::milliseconds wait) {
  Impl& impl = *impl_;
  if (!impl.rebalance_failure.ok()) return impl.rebalance_failure;
  impl.filling = &batch;
  absl::Status status = FillFromQueue(batch, wait);
  impl.filling = nullptr;
  if (status.ok()) status = impl.rebalance_failure;
  return status;
}

absl::Status KafkaSource::FillFromQueue(Batch& batch, std::chrono::milliseconds wait) {
  Impl& impl = *impl_;
  if (const auto now = std::chrono::steady_clock::now(); now - impl.lag_refreshed_at >= kLagRefreshInterval) {
    impl.lag_refreshed_at = now;
    impl.RefreshLag();
  }
  while (!impl.carry.empty() && !batch.full()) {
    bool fitted = false;
    if (absl::Status s = impl.Take(impl.carry.front(), batch, fitted); !s.ok()) return s;
    if (!fitted) return absl::OkStatus();
    impl.carry.pop_front();
  }
  if (!impl.carry.empty()) return absl::OkStatus();
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (!batch.full()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    const int timeout_ms = static_cast<int>(std::max<int64_t>(left.count(), 0));
    // Never take more than the batch has slots for; the arena may still run out first (carry).
    const size_t room = std::min(kConsumeChunkMax, batch.room());
    const ssize_t count = rd_kafka_consume_batch_queue(impl.queue, timeout_ms, impl.messages.data(), room);
    if (count < 0) {
      return absl::InternalError(fmt::format("kafka consume failed: {}", rd_kafka_err2str(rd_kafka_last_error())));
    }
    absl::Status status;
    for (ssize_t i = 0; i < count; ++i) {
      rd_kafka_message_t* message = impl.messages[static_cast<size_t>(i)];
      if (!status.ok()) {
        // After an error nothing more is taken; the pipeline stops and a restart consumes again
        // from the committed offsets.
        rd_kafka_message_destroy(message);
        continue;
      }
      if (!impl.carry.empty()) {
        impl.carry.push_back(message);
        continue;
      }
      bool fitted = false;
      status = impl.Take(message, batch, fitted);
      if (!status.ok()) {
        rd_kafka_message_destroy(message);
      } else if (!fitted) {
        impl.carry.push_back(message);
      }
    }
    if (!status.ok()) return status;
    if (!impl.carry.empty()) break;
    if (count == 0 || timeout_ms == 0) break;
  }
  return absl::OkStatus();
}

absl::Status KafkaSource::OnCommitted(const Batch& batch) {
  Impl& impl = *impl_;
  // The copies of earlier commits have had a batch's time to arrive; see before adding more.
  impl.NoteDeliveries(std::chrono::milliseconds(0));
  std::map<std::pair<SourceTopic, int32_t>, int64_t> next;
  bool produced = false;
  for (const MessageSlot& slot : batch.slots()) {
    next[{slot.topic, slot.partition}] = slot.offset + 1;
    if (slot.fate != Fate::kRejected || impl.dead_letters == nullptr) continue;
    produced = true;
    if (absl::Status s = impl.Produce(
            DeadLetterCopyOf(slot, batch.commit_sequence, impl.options.dead_letter_payload, impl.scratch));
        !s.ok()) {
      // The store keeps the copy until a delivery is known; the next start produces it again.
      impl.delivery_failed = true;
      if (impl.options.on_warning) impl.options.on_warning(Cat("dead-letter copy failed: ", s.ToString()));
    }
  }
  if (produced && batch.commit_sequence > impl.produced_through) impl.produced_through = batch.commit_sequence;
  rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(static_cast<int>(next.size()));
  for (const auto& [topic_partition, offset] : next) {
    const std::string name(TopicName(topic_partition.first));
    rd_kafka_topic_partition_list_add(offsets, name.c_str(), topic_partition.second)->offset = offset;
  }
  // A hint for monitoring tools only; the store holds the offsets that count.
  (void)rd_kafka_commit(impl.handle, offsets, /*async=*/1);
  rd_kafka_topic_partition_list_destroy(offsets);
  return absl::OkStatus();
}

absl::Status KafkaSource::FlushDeadLetters(std::chrono::milliseconds timeout) {
  if (impl_->dead_letters == nullptr) return absl::OkStatus();
  impl_->NoteDeliveries(timeout);
  if (impl_->delivery_failed) return absl::UnavailableError("some dead-letter copies were not delivered");
  if (impl_->delivered_through < impl_->produced_through) {
    return absl::DeadlineExceededError("dead-letter copies still in flight");
  }
  return absl::OkStatus();
}

absl::Status KafkaSource::ProduceStoredDeadLetter(const DeadLetterCopy& copy) {
  if (impl_->dead_letters == nullptr) return absl::OkStatus();
  if (copy.commit_sequence > impl_->produced_through) impl_->produced_through = copy.commit_sequence;
  absl::Status status = impl_->Produce(copy);
  // Not delivered now: the store keeps it (and everything after it) for the next start.
  if (!status.ok()) impl_->delivery_failed = true;
  return status;
}

uint64_t KafkaSource::DeadLettersDeliveredThrough() const { return impl_->delivered_through; }

void KafkaSource::SetDrain(std::function<absl::Status()> drain) { impl_->drain = std::move(drain); }

std::vector<std::pair<SourceTopic, int32_t>> KafkaSource::Assignment() const { return *impl_->assignment.load(); }

uint64_t KafkaSource::rebalances() const { return impl_->rebalances.load(std::memory_order_relaxed); }

size_t KafkaSource::partition_count() const { return impl_->partition_count; }

std::vector<SourcePartition> KafkaSource::AllPartitions() const {
  std::vector<SourcePartition> all;
  for (const SourceTopic topic : {SourceTopic::kTaps, SourceTopic::kMedical}) {
    const uint32_t count = impl_->topic_partition_counts[topic == SourceTopic::kTaps ? 0 : 1];
    for (uint32_t p = 0; p < count; ++p) all.push_back({topic, static_cast<int32_t>(p)});
  }
  return all;
}

std::optional<Ownership> KafkaSource::TakeOwnershipChange() {
  Impl& impl = *impl_;
  if (!impl.ownership_changed) return std::nullopt;
  impl.ownership_changed = false;
  Ownership ownership;
  ownership.partition_counts = impl.topic_partition_counts;
  for (const auto& [topic_partition, next] : impl.expected) {
    ownership.owned.push_back({topic_partition.first, topic_partition.second});
  }
  return ownership;
}

void KafkaSource::Impl::Rebalance(rd_kafka_t* handle, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t* partitions, void* opaque) {
  Impl& impl = *static_cast<Impl*>(opaque);
  impl.rebalances.fetch_add(1, std::memory_order_relaxed);
  if (impl.closing) {
    // Stopping: take what the group gives (so librdkafka's state is whole) and consume nothing.
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      impl.assigned_once = true;
      if (rd_kafka_error_t* error = rd_kafka_incremental_assign(handle, partitions)) rd_kafka_error_destroy(error);
    } else if (rd_kafka_error_t* error = rd_kafka_incremental_unassign(handle, partitions)) {
      rd_kafka_error_destroy(error);
    }
    return;
  }
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    impl.assigned_once = true;
    impl.OnAssign(partitions);
  } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
    impl.OnRevoke(partitions);
  } else {
    impl.Refuse(absl::UnavailableError(fmt::format("the group's rebalance failed: {}", rd_kafka_err2str(err))));
    (void)rd_kafka_assign(handle, nullptr);
    impl.expected.clear();
  }
  impl.PublishAssignment();
}

void KafkaSource::Impl::OnAssign(rd_kafka_topic_partition_list_t* partitions) {
  if (options.claim) {
    // Their state first: restored from the changelog while no batch is in flight.
    std::vector<SourcePartition> claimed;
    for (int i = 0; i < partitions->cnt; ++i) {
      const rd_kafka_topic_partition_t& entry = partitions->elems[i];
      const std::optional<SourceTopic> topic = TopicOf(entry.topic);
      if (topic && entry.partition >= 0 && entry.partition < kSourcePartitionsPerTopicMax) {
        claimed.push_back({*topic, entry.partition});
      }
    }
    if (!claimed.empty()) {
      absl::Status status = drain ? drain() : absl::OkStatus();
      if (status.ok()) status = options.claim(claimed);
      if (!status.ok()) Refuse(status);
    }
  }
  // What the group committed for them: a member that consumed a partition further than this
  // store holds has its state, which this instance must not redo.
  rd_kafka_topic_partition_list_t* group_offsets = rd_kafka_topic_partition_list_copy(partitions);
  const rd_kafka_resp_err_t committed_error =
      rd_kafka_committed(handle, group_offsets, static_cast<int>(options.committed_timeout.count()));
  for (int i = 0; i < partitions->cnt; ++i) {
    rd_kafka_topic_partition_t& entry = partitions->elems[i];
    const std::optional<SourceTopic> topic = TopicOf(entry.topic);
    if (!topic) continue;
    if (entry.partition < 0 || entry.partition >= kSourcePartitionsPerTopicMax) {
      Refuse(absl::FailedPreconditionError(fmt::format(
          "topic {} has partition {}; the engine consumes partitions 0 to {} only", entry.topic, entry.partition,
          kSourcePartitionsPerTopicMax - 1)));
      continue;
    }
    const std::optional<int64_t> local =
        options.committed_offset ? options.committed_offset(*topic, entry.partition) : std::nullopt;
    const int64_t group_offset =
        committed_error == RD_KAFKA_RESP_ERR_NO_ERROR ? group_offsets->elems[i].offset : RD_KAFKA_OFFSET_INVALID;
    if (group_offset > 0 && group_offset > local.value_or(0)) {
      Refuse(absl::FailedPreconditionError(fmt::format(
          "group {} assigned {} partition {}, which a member consumed to offset {} while this store holds it to {}: "
          "its state is on another instance and not in a changelog this instance restores (kafka.assignment = "
          "\"group\" restores it from the changelog); give this instance the store that consumed it",
          options.group_id, entry.topic, entry.partition, group_offset, local.value_or(0))));
    }
    entry.offset = local.value_or(RD_KAFKA_OFFSET_BEGINNING);
    expected[{*topic, entry.partition}] = local.value_or(-1);
  }
  rd_kafka_topic_partition_list_destroy(group_offsets);
  if (committed_error != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Refuse(absl::UnavailableError(fmt::format("cannot read group {}'s committed offsets: {}", options.group_id,
                                              rd_kafka_err2str(committed_error))));
  }
  if (rd_kafka_error_t* assign_error = rd_kafka_incremental_assign(handle, partitions); assign_error != nullptr) {
    Refuse(absl::InternalError(fmt::format("cannot take the partitions the group assigned: {}",
                                           rd_kafka_error_string(assign_error))));
    rd_kafka_error_destroy(assign_error);
  }
}

void KafkaSource::Impl::OnRevoke(rd_kafka_topic_partition_list_t* partitions) {
  // Every batch consumed so far is committed and acknowledged before the partitions go; what is
  // consumed from them and not handed on yet is dropped (the next owner consumes it from the
  // committed offset).
  if (drain) {
    if (absl::Status drained = drain(); !drained.ok()) Refuse(drained);
  }
  std::set<std::pair<SourceTopic, int32_t>> revoked;
  for (int i = 0; i < partitions->cnt; ++i) {
    if (const std::optional<SourceTopic> topic = TopicOf(partitions->elems[i].topic)) {
      revoked.insert({*topic, partitions->elems[i].partition});
    }
  }
  if (filling != nullptr) {
    filling->DropSlots([&](const MessageSlot& slot) { return revoked.contains({slot.topic, slot.partition}); });
  }
  std::erase_if(carry, [&](rd_kafka_message_t* message) {
    const std::optional<SourceTopic> topic = TopicOf(rd_kafka_topic_name(message->rkt));
    if (!topic || !revoked.contains({*topic, message->partition})) return false;
    rd_kafka_message_destroy(message);
    return true;
  });
  for (const auto& topic_partition : revoked) expected.erase(topic_partition);
  if (options.release) {
    std::vector<SourcePartition> released;
    for (const auto& [topic, partition] : revoked) released.push_back({topic, partition});
    options.release(released);
  }
  if (rd_kafka_assignment_lost(handle) && options.on_warning) {
    options.on_warning("the group took this member's partitions without a rebalance (session timeout)");
  }
  if (rd_kafka_error_t* unassign_error = rd_kafka_incremental_unassign(handle, partitions); unassign_error != nullptr) {
    Refuse(absl::InternalError(fmt::format("cannot let go of the partitions the group revoked: {}",
                                           rd_kafka_error_string(unassign_error))));
    rd_kafka_error_destroy(unassign_error);
  }
}

}  // namespace yrd::kafka
