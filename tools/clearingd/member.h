// A member: one ledger shard of clearingd, with its own store, ledger, Kafka source, pipeline
// threads and card tokenizer over its share of the partitions (docs/scale-out.md, section 2).
// A process runs pipeline.shards of them (one by default); as members of a consumer group the
// group assigns them disjoint partitions, and a window's file set is the merge of every
// partition's share as for members in different processes. Each member lives on a worker thread
// of its own: a store or broker failure that may clear by itself stops its consumption, and it
// reopens everything from its store after kRetryInterval.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "adapters/crypto/hmac.h"
#include "adapters/crypto/payload_sealer.h"
#include "adapters/fs/file_set.h"
#include "adapters/http/clearing_metrics.h"
#include "adapters/kafka/kafka_source.h"
#include "engine/base/histogram.h"
#include "engine/pipeline/pipeline.h"
#include "engine/windows/window_book.h"
#include "tools/clearingd/config.h"

namespace yrd {

// The source options every member of `config` shares (its own claim and offsets come on top).
[[nodiscard]] kafka::KafkaSourceOptions SourceOptions(const DaemonConfig& config);

// The last file set this process wrote, for the metrics.
class FileSetNote {
 public:
  struct Set {
    WindowDay day = 0;  // 0: none yet
    int64_t written_at_ms = 0;
    uint64_t file_count = 0;
  };
  void Note(Set set) {
    std::lock_guard<std::mutex> lock(mutex_);
    set_ = set;
  }
  [[nodiscard]] Set Get() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return set_;
  }

 private:
  mutable std::mutex mutex_;
  Set set_;
};

// What the members of one process share; outlives them.
struct ProcessParts {
  RegistryHolder* registry = nullptr;  // reloaded by SIGHUP
  Clock* clock = nullptr;
  const Digests* digests = nullptr;
  std::string card_key_check;  // DeriveKey(card-token key, kCardTokenKeyCheckLabel)
  FileSetNote* file_sets = nullptr;
};

class Member {
 public:
  // A member's own keyed parts: neither is shared between threads.
  struct Keys {
    std::unique_ptr<HmacSha256> tokenizer;
    std::unique_ptr<PayloadSealer> ledger_sealer;  // seals dead-letter copies on the ledger thread
    std::unique_ptr<PayloadSealer> start_sealer;   // opens the stored ones at start (worker thread)
  };
  // `config` is the member's own (ShardConfig), `shard` its number (logged).
  [[nodiscard]] static std::unique_ptr<Member> Create(DaemonConfig config, int shard, ProcessParts process, Keys keys);
  virtual ~Member() = default;

  // Runs lives of the store, ledger, source and pipeline until RequestStop (returns the last
  // life's status, OK after a clean stop) or a failure that cannot clear by itself.
  [[nodiscard]] virtual absl::Status Run() = 0;
  virtual void RequestStop() = 0;

  // ---- for the admin endpoint; any thread ----
  // Adds this member's figures into `metrics` (its windows excepted) and its commit latencies
  // into `commit_latency`; false when it is not consuming now.
  virtual bool AddMetrics(http::ClearingMetrics& metrics, LatencyHistogram& commit_latency) = 0;
  virtual bool Ready(std::string& why_not) = 0;
  // The running ledger's windows; null when not consuming now.
  [[nodiscard]] virtual std::shared_ptr<const WindowTable> Windows() = 0;
  // The operator's close of `day`: a member of a group publishes it to every member through the
  // control topic; otherwise it is committed with this member's next batch.
  [[nodiscard]] virtual absl::Status Close(WindowDay day) = 0;
  virtual void LogProgress() = 0;
};

}  // namespace yrd
