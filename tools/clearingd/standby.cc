#include "tools/clearingd/standby.h"

#include <utility>

#include "adapters/log/log.h"
#include "engine/base/window.h"
#include "engine/changelog/changelog.h"

namespace yrd {

absl::StatusOr<std::unique_ptr<StandbyFollower>> StandbyFollower::Start(kafka::KafkaChangelog& changelog,
                                                                        Options options) {
  absl::StatusOr<std::unique_ptr<RocksStore>> store = RocksStore::Open(options.store_path, options.store_options);
  if (!store.ok()) return store.status();
  std::unique_ptr<StandbyFollower> follower(new StandbyFollower(changelog, std::move(options), *std::move(store)));
  follower->thread_ = std::thread([raw = follower.get()] { raw->Run(); });
  return follower;
}

StandbyFollower::StandbyFollower(kafka::KafkaChangelog& changelog, Options options, std::unique_ptr<RocksStore> store)
    : changelog_(changelog), options_(std::move(options)), store_(std::move(store)) {}

StandbyFollower::~StandbyFollower() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StandbyFollower::Run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    // Asked without the lock: the member answers under locks of its own.
    lock.unlock();
    const std::vector<SourcePartition> followed = options_.followed();
    const std::map<WindowDay, int64_t> retired = options_.retired();
    lock.lock();
    if (stopping_) break;
    Pass(followed);
    // The windows the member retired leave the standby's store too.
    for (const auto& [day, retired_at_ms] : retired) {
      if (retired_.contains(day)) continue;
      if (absl::Status s = RetireWindowRecords(*store_, day, retired_at_ms); !s.ok()) {
        log::Warning("standby_retire_failed", {{"window", FormatWindowDay(day)},
                                               {"error", s.ToString()},
                                               {"action", "none if a later pass succeeds; check the standby's disk"}});
        break;
      }
      retired_.emplace(day, retired_at_ms);
    }
    wake_.wait_for(lock, options_.pass_interval, [this] { return stopping_; });
  }
}

void StandbyFollower::Pass(const std::vector<SourcePartition>& followed) {
  absl::Status status;
  if (standby_ == nullptr) {
    absl::StatusOr<std::unique_ptr<kafka::Standby>> started = changelog_.StartStandby(*store_);
    status = started.status();
    if (started.ok()) standby_ = *std::move(started);
  }
  if (status.ok()) status = changelog_.ContinueStandby(*standby_, followed);
  std::lock_guard<std::mutex> stats_lock(stats_mutex_);
  if (status.ok()) {
    stats_.followed = standby_->followed_count();
    stats_.lag_records = standby_->lag_records();
    stats_.commits_applied = commits_before_ + standby_->commits_applied();
    return;
  }
  ++stats_.failures;
  if (standby_ != nullptr) commits_before_ += standby_->commits_applied();
  standby_.reset();  // the next pass starts again from what the store holds
  log::Warning("standby_failed", {{"error", status.ToString()},
                                  {"action", "none if a later pass succeeds: until then a failover restores the "
                                             "partitions from their changelogs"}});
}

absl::StatusOr<std::map<SourcePartition, int64_t>> StandbyFollower::CopyInto(StateStore& store,
                                                                            std::span<const SourcePartition> owners,
                                                                            std::map<WindowDay, int64_t>& closes) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::map<SourcePartition, int64_t> read_from;
  if (standby_ == nullptr) return read_from;
  for (const SourcePartition owner : owners) {
    const std::optional<kafka::Standby::Position> position = standby_->PositionOf(owner);
    if (!position) continue;
    absl::StatusOr<bool> copied = CopyOwnerState(*store_, store, owner);
    if (!copied.ok()) return copied.status();
    if (!*copied) continue;
    read_from[owner] = position->next_offset;
    {
      std::lock_guard<std::mutex> stats_lock(stats_mutex_);
      ++stats_.copies;
    }
    for (const auto& [day, closed_at_ms] : standby_->ClosesOf(owner)) {
      auto [it, added] = closes.try_emplace(day, closed_at_ms);
      if (!added) it->second = std::min(it->second, closed_at_ms);
    }
  }
  return read_from;
}

StandbyFollower::Stats StandbyFollower::stats() const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  return stats_;
}

}  // namespace yrd
