// The standby of a group member (config kafka.standby): a store of its own,
// `<store.path>.standby`, that follows the changelogs of the partitions this member does not own,
// on a thread of its own, so that a partition the group gives this member later is copied from
// there and only the changelog after it is read (docs/scale-out.md, section 4). Windows the
// member's store retires are retired in the standby's too.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters/kafka/kafka_changelog.h"
#include "adapters/rocksdb/rocks_store.h"

namespace yrd {

class StandbyFollower {
 public:
  struct Options {
    std::string store_path;             // <store.path>.standby
    RocksStoreOptions store_options;
    std::chrono::milliseconds pass_interval{1'000};  // between two passes over the changelogs
    // The partitions to follow now (those the member does not own), and the windows its own
    // store retired with the instant; called on the standby's thread.
    std::function<std::vector<SourcePartition>()> followed;
    std::function<std::map<WindowDay, int64_t>()> retired;
  };
  struct Stats {
    uint64_t followed = 0;        // partitions followed at the last pass
    uint64_t lag_records = 0;     // changelog records a pass found to read (yrd_standby_lag_records)
    uint64_t commits_applied = 0; // by every pass so far
    uint64_t copies = 0;          // partitions a claim copied from the standby
    uint64_t failures = 0;        // passes that failed (the standby starts again)
  };

  // Opens the standby's store and starts following.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<StandbyFollower>> Start(kafka::KafkaChangelog& changelog,
                                                                              Options options);
  ~StandbyFollower();
  StandbyFollower(const StandbyFollower&) = delete;
  StandbyFollower& operator=(const StandbyFollower&) = delete;

  // Copies into `store` (whose ledger is not running) the state of each of `owners` the standby
  // holds a later commit of, between two passes, and returns the changelog offset to read each
  // copied one from; `closes` gets the windows their changelogs closed as far as the standby read.
  [[nodiscard]] absl::StatusOr<std::map<SourcePartition, int64_t>> CopyInto(StateStore& store,
                                                                           std::span<const SourcePartition> owners,
                                                                           std::map<WindowDay, int64_t>& closes);
  [[nodiscard]] Stats stats() const;

 private:
  StandbyFollower(kafka::KafkaChangelog& changelog, Options options, std::unique_ptr<RocksStore> store);
  void Run();
  void Pass(const std::vector<SourcePartition>& followed);

  kafka::KafkaChangelog& changelog_;
  const Options options_;
  std::unique_ptr<RocksStore> store_;
  mutable std::mutex mutex_;  // one pass or copy at a time
  std::condition_variable wake_;
  bool stopping_ = false;                     // guarded by mutex_
  std::unique_ptr<kafka::Standby> standby_;   // guarded by mutex_; null after a failed pass
  std::map<WindowDay, int64_t> retired_;      // guarded by mutex_: retired in the standby's store
  mutable std::mutex stats_mutex_;  // a scrape does not wait for a pass
  Stats stats_;                     // guarded by stats_mutex_
  uint64_t commits_before_ = 0;     // guarded by mutex_: of the standbys before this one
  std::thread thread_;
};

}  // namespace yrd
