// A member of clearingd: see member.h.
#include "tools/clearingd/member.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "adapters/kafka/control_channel.h"
#include "adapters/kafka/kafka_changelog.h"
#include "adapters/log/log.h"
#include "adapters/rocksdb/rocks_store.h"
#include "engine/base/strings.h"
#include "engine/ledger/ledger.h"
#include "engine/merge/window_merge.h"
#include "tools/clearingd/file_writer.h"
#include "tools/clearingd/maintenance.h"
#include "tools/clearingd/standby.h"

namespace yrd {
namespace {

// After a failure that may clear by itself, the worker waits this long before reopening.
constexpr std::chrono::seconds kRetryInterval{5};
// At a stop, how long the dead-letter copies in flight may take to be delivered.
constexpr std::chrono::seconds kDeadLetterFlushWait{10};

// Produces the dead-letter copies the store kept because their delivery was not known when
// the last run ended (a crash, or a topic that could not be written).
absl::Status ProduceStoredDeadLetters(StateStore& store, PayloadSealer& sealer, DeadLetterPayload form,
                                      kafka::KafkaSource& source) {
  int64_t count = 0;
  absl::Status failure;
  std::string payload;
  absl::Status s = store.Scan(Table::kMeta, kDeadLetterKeyPrefix, {}, [&](std::string_view key, std::string_view value) {
    DeadLetterCopy copy;
    bool sealed = false;
    if (!DecodeDeadLetterCopy(key, value, copy, sealed)) {
      failure = absl::DataLossError("a stored dead-letter copy is damaged");
      return false;
    }
    if (sealed) {
      if (!sealer.Open(copy.payload, payload)) {
        // Not money and still listed by the exception store: the copy goes without its bytes.
        log::Error("dead_letter_copy_unreadable",
                   {{"source_partition", copy.partition},
                    {"source_offset", copy.offset},
                    {"action", "none for clearing; the message is listed by clearing-report exceptions, its "
                               "dead-letter copy goes out without its bytes"}});
        copy.payload_form = DeadLetterPayload::kWithheld;
        payload.clear();
      }
      copy.payload = payload;
    } else if (form == DeadLetterPayload::kRedacted) {
      // Kept in clear by an earlier version: redacted now, as configured.
      copy.payload_form = RedactCardNumbers(copy.payload, payload) ? DeadLetterPayload::kRedacted
                                                                   : DeadLetterPayload::kWithheld;
      copy.payload = payload;
    }
    ++count;
    if (absl::Status produced = source.ProduceStoredDeadLetter(copy); !produced.ok()) {
      // Clearing goes on: the copies stay in the store, and the exception store lists them.
      log::Warning("dead_letters_not_produced",
                   {{"error", produced.ToString()},
                    {"action", "check that yrd.dlq can be written; the next start tries again"}});
      return false;
    }
    return true;
  });
  if (!s.ok()) return s;
  if (!failure.ok()) return failure;
  if (count > 0) log::Info("dead_letters_produced_again", {{"count", count}});
  return absl::OkStatus();
}

// The store's card-token key check against the configured key's: written by the first start,
// refused when it differs (tokens made with another key would match no earlier card).
absl::Status CheckCardTokenKey(StateStore& store, std::string_view check_value) {
  std::string stored;
  bool found = false;
  if (absl::Status s = store.Get(Table::kMeta, kCardTokenKeyCheckKey, stored, found); !s.ok()) return s;
  if (found) {
    if (stored == check_value) return absl::OkStatus();
    return absl::FailedPreconditionError(
        "privacy.card_token_key_file holds another key than the one this store's card tokens were made with: "
        "dedup digests, card histories and the sealed dead-letter copies would no longer match");
  }
  std::unique_ptr<StateWriteBatch> write = store.NewWriteBatch();
  write->Put(Table::kMeta, kCardTokenKeyCheckKey, check_value);
  return store.Write(*write);
}

bool IsRetryable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable || status.code() == absl::StatusCode::kResourceExhausted ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}


class MemberImpl final : public Member {
 public:
  MemberImpl(DaemonConfig config, int shard, ProcessParts process, Keys keys)
      : config_(std::move(config)),
        shard_(shard),
        card_key_check_(std::move(process.card_key_check)),
        registry_holder_(*process.registry),
        tokenizer_(std::move(keys.tokenizer)),
        ledger_sealer_(std::move(keys.ledger_sealer)),
        start_sealer_(std::move(keys.start_sealer)),
        digests_(*process.digests),
        clock_(process.clock),
        file_sets_(*process.file_sets) {}

  bool AddMetrics(http::ClearingMetrics& m, LatencyHistogram& commit_latency) override {
    std::lock_guard<std::mutex> lock(mutex_);
    m.store_background_error_count += store_background_error_count_.load();
    m.consumption_pause_count += consumption_pause_count_.load();
    if (pipeline_ == nullptr) return false;
    const PipelineStats& stats = pipeline_->stats();
    m.events_consumed_count += stats.consumed_count.load();
    m.events_applied_count += stats.applied_count.load();
    m.events_exact_duplicate_count += stats.exact_duplicate_count.load();
    m.events_late_count += stats.late_count.load();
    m.batches_committed_count += stats.committed_batch_count.load();
    m.store_written_bytes += stats.store_bytes.load();
    const std::pair<std::string_view, uint64_t> depths[] = {{"ledger", stats.ledger_queue_depth.load()},
                                                            {"commit", stats.commit_queue_depth.load()},
                                                            {"done", stats.done_queue_depth.load()}};
    for (const auto& [stage, depth] : depths) {
      auto at = std::find_if(m.queue_depths.begin(), m.queue_depths.end(),
                             [stage](const http::ClearingMetrics::StageDepth& d) { return d.stage == stage; });
      if (at == m.queue_depths.end()) at = m.queue_depths.insert(m.queue_depths.end(), {std::string(stage), 0});
      at->depth_batches += depth;
    }
    commit_latency.Add(stats.commit_latency_us);
    m.recent_txn_sort_count += ledger_->recent_txn_sorts();
    m.recent_txn_records += ledger_->recent_txn_records();
    for (const auto& lag : *source_->Lag()) {
      m.consumer_lags.push_back(
          {std::string(lag.topic == SourceTopic::kTaps ? kTapsTopic : kMedicalTopic), lag.partition, lag.lag_messages});
    }
    if (m.owned_partitions.empty()) m.owned_partitions = {{std::string(kTapsTopic), 0}, {std::string(kMedicalTopic), 0}};
    for (const auto& [topic, partition] : source_->Assignment()) {
      ++m.owned_partitions[topic == SourceTopic::kTaps ? 0 : 1].partition_count;
    }
    m.rebalance_count += source_->rebalances();
    if (changelog_ != nullptr) {
      if (!m.changelog) m.changelog.emplace();
      http::ClearingMetrics::Changelog& c = *m.changelog;
      c.appended_records += changelog_->records_appended();
      c.appended_bytes += changelog_->bytes_appended();
      c.restoring_partitions += restoring_partitions_.load();
      c.restores += restore_count_.load();
      c.restored_commits += restored_commit_count_.load();
      c.restore_seconds += static_cast<double>(restore_ms_total_.load()) / 1000.0;
      c.rebuilds += partition_rebuild_count_.load();
      c.snapshots += changelog_->snapshots_appended();
      c.snapshot_bytes += changelog_->snapshot_bytes_appended();
      c.restored_snapshots += restored_snapshot_count_.load();
    }
    if (standby_ != nullptr) {
      const StandbyFollower::Stats standby = standby_->stats();
      if (!m.standby) m.standby.emplace();
      m.standby->partitions += standby.followed;
      m.standby->lag_records += standby.lag_records;
      m.standby->applied_commits += standby.commits_applied;
      m.standby->copies += standby.copies;
      m.standby->failures += standby.failures;
    }
    return true;
  }

  bool Ready(std::string& why_not) override {
    if (const uint64_t restoring = restoring_partitions_.load(); restoring > 0) {
      why_not = Cat("restoring ", restoring, " partitions from their changelogs");
      return false;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (pipeline_ == nullptr || source_ == nullptr) {
      why_not = "not consuming: the store or the brokers are not available (see the log)";
      return false;
    }
    int64_t lag_messages = 0;
    for (const auto& lag : *source_->Lag()) {
      if (lag.lag_messages < 0) {
        why_not = "consumer lag not known yet";
        return false;
      }
      lag_messages += lag.lag_messages;
    }
    if (lag_messages > static_cast<int64_t>(config_.pipeline.batch.messages_max)) {
      why_not = Cat("catching up: ", lag_messages, " messages behind");
      return false;
    }
    return true;
  }

  std::shared_ptr<const WindowTable> Windows() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return ledger_ == nullptr ? nullptr : ledger_->windows();
  }

  absl::Status Close(WindowDay day) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (pipeline_ == nullptr) return absl::UnavailableError("not consuming right now; try again when /readyz is ready");
    std::lock_guard<std::mutex> control_lock(control_mutex_);
    if (control_ == nullptr) {
      pipeline_->SubmitWindowCommand(WindowCommand{WindowCommand::Kind::kClose, day});
      return absl::OkStatus();
    }
    // A member of a group: every member closes it, at this instant, when it reads the command.
    const kafka::ControlCommand close{.kind = kafka::ControlCommand::Kind::kClose,
                                      .day = day,
                                      .at_ms = clock_->NowMs(),
                                      .from = config_.group_instance_id};
    if (absl::Status s = control_->Publish(close); !s.ok()) {
      return absl::UnavailableError(Cat("the close could not be sent to every instance through ",
                                        config_.control_topic, ": ", s.message(), "; try again"));
    }
    return absl::OkStatus();
  }

  absl::Status Run() override {
    WorkerLoop();
    std::lock_guard<std::mutex> lock(mutex_);
    return final_status_;
  }

  void RequestStop() override {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_requested_ = true;
    if (pipeline_ != nullptr) pipeline_->RequestStop();
    wake_.notify_all();
  }

  void LogProgress() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (pipeline_ == nullptr) return;
    const PipelineStats& stats = pipeline_->stats();
    log::Info("progress", {{"shard", shard_},
                           {"consumed", stats.consumed_count.load()},
                           {"applied", stats.applied_count.load()},
                           {"exact_duplicates", stats.exact_duplicate_count.load()},
                           {"rejected", stats.rejected_count.load()},
                           {"late", stats.late_count.load()},
                           {"batches", stats.committed_batch_count.load()},
                           {"commit_latency_us_p99", stats.commit_latency_us.QuantileUpperBoundUs(0.99)}});
  }

 private:
  // Notes the file set of `day` for the metrics: written at `written_at_ms` (0 in records from
  // before that instant was kept: the MANIFEST's modification time), with its MANIFEST's files.
  void NoteFileSet(WindowDay day, int64_t written_at_ms) {
    const std::filesystem::path manifest =
        std::filesystem::path(config_.output_dir) / FormatWindowDay(day) / std::string(kManifestPath);
    std::ifstream in(manifest);
    uint64_t files = 0;
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && !line.starts_with(kManifestSignatureTag)) ++files;
    }
    if (files > 0) ++files;  // the MANIFEST itself
    struct stat status {};
    if (written_at_ms == 0 && ::stat(manifest.c_str(), &status) == 0) {
      written_at_ms = static_cast<int64_t>(status.st_mtim.tv_sec) * 1000 + status.st_mtim.tv_nsec / 1'000'000;
    }
    file_sets_.Note({.day = day, .written_at_ms = written_at_ms, .file_count = files});
  }

  void WorkerLoop() {
    for (;;) {
      const absl::Status status = Attempt();
      std::unique_lock<std::mutex> lock(mutex_);
      if (stop_requested_) {
        final_status_ = status;
        return;
      }
      if (status.ok() || !IsRetryable(status)) {
        final_status_ = status.ok() ? absl::InternalError("the pipeline stopped without being asked to") : status;
        return;
      }
      consumption_pause_count_.fetch_add(1);
      log::Error("consumption_paused",
                 {{"error", status.ToString()},
                  {"action", "nothing past the last commit was acknowledged; clearingd retries by itself every " +
                                 std::to_string(kRetryInterval.count()) +
                                 " s: free disk space or restore the brokers named in the error"}});
      wake_.wait_for(lock, kRetryInterval, [this] { return stop_requested_; });
      if (stop_requested_) return;
      // Reopening on a disk that is still full would only fail again (or take the last of the
      // space for a new log file): wait until the store has its reserve back.
      while (!StoreHasRoom()) {
        wake_.wait_for(lock, kRetryInterval, [this] { return stop_requested_; });
        if (stop_requested_) return;
      }
    }
  }

  // True when the store's file system has store.min_free_mib free (or the check is off).
  bool StoreHasRoom() {
    if (config_.store_min_free_bytes == 0) return true;
    const absl::StatusOr<uint64_t> free_bytes = FreeBytesAt(config_.store_path);
    if (free_bytes.ok() && *free_bytes >= config_.store_min_free_bytes) return true;
    log::Warning("waiting_for_disk_space",
                 {{"store", config_.store_path},
                  {"free_mib", free_bytes.ok() ? static_cast<int64_t>(*free_bytes >> 20) : -1},
                  {"min_free_mib", static_cast<int64_t>(config_.store_min_free_bytes >> 20)},
                  {"action", "free space on the store's file system; clearingd resumes by itself"}});
    return false;
  }

  // A member of a group hands each partition's state to the next owner through its changelog;
  // null for an instance that consumes every partition.
  absl::StatusOr<std::unique_ptr<kafka::KafkaChangelog>> MakeChangelog() const {
    if (!config_.group_assignment) return std::unique_ptr<kafka::KafkaChangelog>();
    return kafka::KafkaChangelog::Create(
        {.bootstrap_servers = config_.bootstrap_servers,
         .topic_suffix = config_.changelog_topic_suffix,
         .append_timeout = std::chrono::milliseconds(config_.changelog_append_timeout_ms),
         .restore_timeout = std::chrono::milliseconds(config_.changelog_restore_timeout_ms),
         .snapshot_bytes = static_cast<uint64_t>(config_.changelog_snapshot_bytes),
         .on_rebuild = [this](SourcePartition owner, const absl::Status& refusal) {
           partition_rebuild_count_.fetch_add(1);
           log::Warning("partition_rebuilt",
                        {{"partition", FormatOwner(owner)},
                         {"refusal", refusal.ToString()},
                         {"action", "none: this instance committed the partition after another instance took it (a "
                                    "zombie, e.g. paused past its session timeout); those commits count nowhere, and "
                                    "its state of the partition is dropped and restored from the changelog's start"}});
         }});
  }

  // Restores the state of the partitions the group assigned from their changelogs (the pipeline
  // drained: the ledger is idle) and has the ledger read it back. /readyz is false meanwhile.
  absl::Status ClaimPartitions(kafka::KafkaChangelog& changelog, StateStore& store, Ledger& ledger,
                               std::span<const SourcePartition> owners, StandbyFollower* standby) {
    restoring_partitions_.store(owners.size());
    // A partition the standby follows is copied from there: only its changelog after that is read.
    std::map<SourcePartition, int64_t> read_from;
    std::map<WindowDay, int64_t> standby_closes;
    if (standby != nullptr) {
      absl::StatusOr<std::map<SourcePartition, int64_t>> copied = standby->CopyInto(store, owners, standby_closes);
      if (copied.ok()) {
        read_from = *std::move(copied);
      } else {
        log::Warning("standby_copy_failed",
                     {{"error", copied.status().ToString()},
                      {"action", "none: the partitions are restored from their changelogs instead"}});
      }
    }
    absl::StatusOr<std::vector<kafka::ClaimResult>> claims = changelog.Claim(store, owners, read_from);
    absl::Status status = claims.status();
    if (!claims.ok()) {
      log::Error("partition_restore_failed",
                 {{"partitions", owners.size()},
                  {"error", status.ToString()},
                  {"action", "the partitions are not consumed: a truncated changelog or a gap needs the partition's "
                             "store from its last owner (docs/operations.md)"}});
    } else {
      for (size_t i = 0; i < owners.size(); ++i) {
        const kafka::ClaimResult& claim = (*claims)[i];
        restore_count_.fetch_add(1);
        restored_commit_count_.fetch_add(claim.commits_restored);
        restored_snapshot_count_.fetch_add(claim.snapshots_restored);
        restore_ms_total_.fetch_add(static_cast<uint64_t>(claim.duration.count()));
        log::Info("partition_restored", {{"partition", FormatOwner(owners[i])},
                                         {"epoch", claim.epoch},
                                         {"changelog_records", claim.records_read},
                                         {"commits_restored", claim.commits_restored},
                                         {"snapshots_restored", claim.snapshots_restored},
                                         {"from_standby", read_from.contains(owners[i])},
                                         {"changelog_bytes", claim.bytes_read},
                                         {"duration_ms", static_cast<int64_t>(claim.duration.count())}});
      }
    }
    if (status.ok()) status = ledger.Reload(clock_->NowMs());
    if (status.ok()) {
      // A window a restored partition's changelog closed is closed here too before the partition
      // is consumed (the batch being filled takes the command before its messages): its later
      // events are late here as they were there.
      // And a window closed here whose files are not written yet is reported closed in the
      // changelogs of the partitions claimed now, so that the merge finds their share complete.
      std::lock_guard<std::mutex> lock(mutex_);
      if (pipeline_ != nullptr) {
        for (const kafka::ClaimResult& claim : *claims) {
          for (const auto& [day, closed_at_ms] : claim.windows_closed) {
            pipeline_->SubmitWindowCommand(WindowCommand::RegionClose(day, closed_at_ms));
          }
        }
        for (const auto& [day, closed_at_ms] : standby_closes) {
          pipeline_->SubmitWindowCommand(WindowCommand::RegionClose(day, closed_at_ms));
        }
        for (const WindowDay day : ledger.WindowsAwaitingFiles()) {
          pipeline_->SubmitWindowCommand(WindowCommand{WindowCommand::Kind::kReportClosed, day});
        }
      }
    }
    restoring_partitions_.store(0);
    return status;
  }

  // A group member's standby (kafka.standby): it follows the partitions the member neither is
  // assigned nor has claimed, and the member's store's retired windows.
  absl::StatusOr<std::unique_ptr<StandbyFollower>> StartStandby(kafka::KafkaChangelog& changelog) {
    return StandbyFollower::Start(
        changelog,
        {.store_path = BesideStorePath(".standby"),
         .store_options = StoreOptions(),
         .followed =
             [this] {
               std::lock_guard<std::mutex> lock(mutex_);
               std::vector<SourcePartition> followed;
               if (source_ == nullptr || changelog_ == nullptr) return followed;
               const std::vector<std::pair<SourceTopic, int32_t>> assigned = source_->Assignment();
               const std::vector<SourcePartition> claimed = changelog_->Owned();
               for (const SourcePartition p : source_->AllPartitions()) {
                 if (std::find(assigned.begin(), assigned.end(), std::pair{p.topic, p.partition}) != assigned.end() ||
                     std::find(claimed.begin(), claimed.end(), p) != claimed.end()) {
                   continue;
                 }
                 followed.push_back(p);
               }
               return followed;
             },
         .retired =
             [this] {
               std::lock_guard<std::mutex> lock(mutex_);
               std::map<WindowDay, int64_t> retired;
               if (ledger_ == nullptr) return retired;
               for (const auto& [day, window] : *ledger_->windows()) {
                 if (window.retired_at_ms != 0) retired.emplace(day, window.retired_at_ms);
               }
               return retired;
             }});
  }

  // A directory beside the store, never inside it: the store's path with `suffix`.
  [[nodiscard]] std::filesystem::path BesideStorePath(std::string_view suffix) const {
    std::filesystem::path path(config_.store_path);
    if (!path.has_filename()) path = path.parent_path();
    path += suffix;
    return path;
  }

  // The merge of a window the coordinator is waiting to complete: its store beside this
  // instance's and the restore into it, kept between the file writer's attempts so that each
  // reads the changelogs on from where the last stopped. File writer thread only.
  struct MergeInProgress {
    std::unique_ptr<RocksStore> store;
    std::unique_ptr<kafka::WindowRestore> restore;  // into `store`
  };

  // Closes and deletes `merge`'s store.
  absl::Status DropMerge(MergeInProgress& merge) const {
    merge.restore.reset();
    merge.store.reset();
    std::error_code error;
    std::filesystem::remove_all(BesideStorePath(".merge"), error);
    if (error) return absl::InternalError(Cat("cannot remove ", BesideStorePath(".merge").string(), ": ", error.message()));
    return absl::OkStatus();
  }

  // A member of a group writes a window's file set only as the owner of the coordinating
  // partition, merged from every partition's changelog through its close (docs/scale-out.md,
  // section 5); the others and a window not closed everywhere yet wait (Unavailable).
  absl::StatusOr<bool> WriteMergedFiles(kafka::KafkaChangelog& changelog, const kafka::KafkaSource& consumer,
                                        const Ledger& ledger, WindowDay day, MergeInProgress& merge) {
    const std::shared_ptr<const WindowTable> windows = ledger.windows();
    const auto local = windows->find(day);
    if (local != windows->end() && local->second.state == WindowState::kFilesWritten) return false;
    if (local != windows->end()) PublishClockClose(day, local->second.closed_at_ms);
    if (changelog.EpochOf(kCoordinatingPartition) == 0) {
      return absl::UnavailableError(Cat("the owner of ", FormatOwner(kCoordinatingPartition),
                                        " writes the file set, and this instance does not own it now"));
    }
    if (merge.restore == nullptr || merge.restore->day() != day) {
      if (absl::Status s = DropMerge(merge); !s.ok()) return s;
      auto store = RocksStore::Open(BesideStorePath(".merge").string(), {});
      if (!store.ok()) return store.status();
      merge.store = *std::move(store);
      auto restore = changelog.StartWindowRestore(*merge.store, day, consumer.AllPartitions());
      if (!restore.ok()) return restore.status();
      merge.restore = *std::move(restore);
    }
    absl::StatusOr<bool> written = ContinueMerge(changelog, day, merge);
    // Done, or failed in a way a retry must start over from: the merge store goes.
    if (written.ok() || written.status().code() != absl::StatusCode::kUnavailable ||
        merge.restore->result().not_closed.empty()) {
      if (absl::Status s = DropMerge(merge); !s.ok() && written.ok()) return s;
    }
    return written;
  }

  // One pass of `merge`: reads the changelogs on; once every partition closed the window, closes
  // it in the merge store and writes its file set.
  absl::StatusOr<bool> ContinueMerge(kafka::KafkaChangelog& changelog, WindowDay day, MergeInProgress& merge) {
    if (absl::Status s = changelog.ContinueWindowRestore(*merge.restore); !s.ok()) return s;
    const kafka::WindowRestoreResult& restored = merge.restore->result();
    if (!restored.not_closed.empty()) {
      return absl::UnavailableError(Cat(restored.not_closed.size(), " partitions have not closed the window yet (",
                                        FormatOwner(restored.not_closed.front()), " among them)"));
    }
    absl::StatusOr<ClosedWindow> window = CloseMergedWindow(*merge.store, config_.calendar, day, restored.closed_at_ms,
                                                            registry_holder_.Get(), clock_->NowMs());
    if (!window.ok()) return window.status();
    // A coordinator that lost the partition without knowing yet (a zombie) writes nothing.
    absl::StatusOr<bool> still_owner = changelog.StillOwns(kCoordinatingPartition);
    if (!still_owner.ok()) return still_owner.status();
    if (!*still_owner) {
      return absl::UnavailableError(Cat("another instance claimed ", FormatOwner(kCoordinatingPartition),
                                        " since this one did, and writes the file set"));
    }
    auto sink = DirectoryFileSet::Open(config_.output_dir, day);
    if (!sink.ok()) return sink.status();
    if (absl::Status s = RenderWindowFiles(*merge.store, *window, **sink, digests_); !s.ok()) return s;
    log::Info("window_merged", {{"window", FormatWindowDay(day)},
                                {"closed_at", FormatChinaTime(restored.closed_at_ms)},
                                {"changelog_records", restored.records_read},
                                {"changelog_bytes", restored.bytes_read}});
    return true;
  }

  // A window the clock closed here is closed on every member at the same instant (a member with
  // no activity in it would never close it by its own clock, and its partitions would never
  // report): published once per window and life.
  void PublishClockClose(WindowDay day, int64_t closed_at_ms) {
    if (closed_at_ms != config_.calendar.CloseInstantMs(day)) return;  // an operator's close
    // Held while publishing: the channel is not destroyed under a Publish.
    std::lock_guard<std::mutex> lock(control_mutex_);
    if (control_ == nullptr || !clock_closes_published_.insert(day).second) return;
    const kafka::ControlCommand close{.kind = kafka::ControlCommand::Kind::kClose,
                                      .day = day,
                                      .at_ms = closed_at_ms,
                                      .from = config_.group_instance_id};
    if (absl::Status s = control_->Publish(close); !s.ok()) {
      clock_closes_published_.erase(day);
      log::Warning("window_close_not_published",
                   {{"window", FormatWindowDay(day)},
                    {"error", s.ToString()},
                    {"action", "none: it is tried again with the next attempt to write the window's files"}});
    }
  }

  // Tells every member of a group that the window's file set is written (they mark it so).
  void PublishFilesWritten(WindowDay day) {
    std::lock_guard<std::mutex> lock(control_mutex_);
    if (control_ == nullptr) return;
    const kafka::ControlCommand written{.kind = kafka::ControlCommand::Kind::kFilesWritten,
                                        .day = day,
                                        .at_ms = clock_->NowMs(),
                                        .from = config_.group_instance_id};
    if (absl::Status s = control_->Publish(written); !s.ok()) {
      log::Warning("files_written_not_published",
                   {{"window", FormatWindowDay(day)},
                    {"error", s.ToString()},
                    {"action", "the files are written; the other members show the window as closed, not "
                               "files_written (and do not retire it), since the command is not sent again: check "
                               "the brokers"}});
    }
  }

  // Applies a command of the control topic: a close at its instant, or a file set written.
  static void ApplyControlCommand(Pipeline& pipeline, const kafka::ControlCommand& command) {
    if (command.kind == kafka::ControlCommand::Kind::kClose) {
      log::Info("window_close_received", {{"window", FormatWindowDay(command.day)},
                                          {"closed_at", FormatChinaTime(command.at_ms)},
                                          {"from", command.from}});
      pipeline.SubmitWindowCommand(WindowCommand::RegionClose(command.day, command.at_ms));
    } else {
      pipeline.SubmitWindowCommand(WindowCommand{WindowCommand::Kind::kMarkFilesWritten, command.day});
    }
  }

  // The store's options: its free-space reserve, and its warnings to the log.
  RocksStoreOptions StoreOptions() {
    RocksStoreOptions store_options;
    store_options.min_free_bytes = config_.store_min_free_bytes;
    store_options.on_warning = [this](std::string_view severity, std::string_view message) {
      if (severity == kBackgroundError) {
        store_background_error_count_.fetch_add(1);
        log::Error("store_background_error",
                   {{"detail", message},
                    {"action", "if commits fail, consumption pauses until RocksDB or a reopen recovers; free disk "
                               "space if the detail says there is none"}});
      } else if (severity == kRecovered) {
        log::Info("store_recovered", {{"detail", message}});
      } else if (severity == kRecoveryFailed) {
        log::Error("store_recovery_failed",
                   {{"detail", message}, {"action", "clearingd reopens the store from its last commit every 5 s"}});
      } else {
        log::Warning("store_warning", {{"severity", severity},
                                       {"detail", message},
                                       {"action", "none if it clears; if it repeats, check the store's disk"}});
      }
    };
    return store_options;
  }

  // A member of a group reads the closes and files written of every member from the start and
  // hands them to `pipeline`; null for an instance that consumes every partition.
  absl::StatusOr<std::unique_ptr<kafka::ControlChannel>> StartControlChannel(Pipeline& pipeline) const {
    if (!config_.group_assignment) return std::unique_ptr<kafka::ControlChannel>();
    return kafka::ControlChannel::Start(
        {.bootstrap_servers = config_.bootstrap_servers,
         .topic = config_.control_topic,
         .on_command = [&pipeline](const kafka::ControlCommand& command) { ApplyControlCommand(pipeline, command); },
         .on_warning = [](const std::string& text) {
           log::Warning("control_record_skipped", {{"detail", text}, {"action", "none: the record is not a command"}});
         }});
  }

  // The source's options for one life: the ledger's committed offsets and, for a member of a
  // group (`changelog` set), the claim and release of the partitions the group assigns.
  kafka::KafkaSourceOptions AttemptSourceOptions(kafka::KafkaChangelog* changelog, StateStore& store, Ledger& ledger,
                                                 StandbyFollower* standby) {
    kafka::KafkaSourceOptions source_options = SourceOptions(config_);
    if (changelog != nullptr) {
      // A partition the group assigns is consumed only once its state is the one of its last
      // commit anywhere: restored from its changelog (after a copy from the standby, if there is
      // one), then the ledger reads it back.
      source_options.claim = [this, changelog, &store, &ledger, standby](std::span<const SourcePartition> owners) {
        return ClaimPartitions(*changelog, store, ledger, owners, standby);
      };
      source_options.release = [changelog](std::span<const SourcePartition> owners) {
        for (const SourcePartition owner : owners) changelog->Release(owner);
      };
    }
    source_options.committed_offset = [&ledger](SourceTopic topic, int32_t partition) {
      return ledger.CommittedOffset(topic, partition);
    };
    source_options.on_warning = [](const std::string& text) {
      log::Warning("kafka_transient_error",
                   {{"detail", text}, {"action", "none if it clears; check the brokers if it repeats"}});
    };
    return source_options;
  }

  // The parts of a running life the admin handler, the metrics and the maintenance read; all null
  // between two lives.
  struct RunningParts {
    Pipeline* pipeline = nullptr;
    Ledger* ledger = nullptr;
    kafka::KafkaSource* source = nullptr;
    kafka::KafkaChangelog* changelog = nullptr;
    StandbyFollower* standby = nullptr;
    kafka::ControlChannel* control = nullptr;
  };
  void ExposeRunningParts(const RunningParts& parts) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pipeline_ = parts.pipeline;
      ledger_ = parts.ledger;
      source_ = parts.source;
      changelog_ = parts.changelog;
      standby_ = parts.standby;
      if (pipeline_ != nullptr && stop_requested_) pipeline_->RequestStop();
    }
    std::lock_guard<std::mutex> lock(control_mutex_);
    control_ = parts.control;
    if (control_ != nullptr) clock_closes_published_.clear();
  }

  // After the pipeline stopped: waits for the dead-letter copies in flight and, once every one is
  // delivered, drops the stored ones with a last write (which may close a window by the clock).
  void FinishDeadLetters(kafka::KafkaSource& source, Ledger& ledger, Pipeline& pipeline) {
    if (absl::Status s = source.FlushDeadLetters(kDeadLetterFlushWait); !s.ok()) {
      log::Warning("dead_letter_flush_incomplete",
                   {{"error", s.ToString()},
                    {"action", "none: the store keeps the undelivered copies and the next start produces them "
                               "again; every rejected message is also listed by clearing-report exceptions"}});
      return;
    }
    if (ledger.failed() || source.DeadLettersDeliveredThrough() == 0) return;
    // Every copy is delivered: drop the stored ones now rather than produce them again at the next
    // start.
    Batch last(BatchLimits{.messages_max = 1, .arena_bytes_max = 1 << 20});
    last.now_ms = clock_->NowMs();
    last.registry = registry_holder_.Get();
    last.dead_letters_delivered_through = source.DeadLettersDeliveredThrough();
    BatchResult ignored;
    if (absl::Status s = ledger.Apply(last, ignored); !s.ok()) {
      log::Warning("dead_letter_cleanup_failed",
                   {{"error", s.ToString()}, {"action", "none: the next start produces those copies again"}});
    } else if (!last.windows_closed.empty() || !last.windows_files_marked.empty()) {
      // The clock closed a window with this last write: its files are written as usual.
      pipeline.on_windows_changed(last.windows_closed, last.windows_files_marked);
    }
  }

  // The store's maintenance (the dedup horizon, window retirement) for one life, its thread
  // started: it reads the running ledger's windows and submits to its pipeline.
  std::unique_ptr<StoreMaintenance> StartMaintenance(RocksStore& store) {
    return std::make_unique<StoreMaintenance>(
        store, *clock_, config_.maintenance,
        [this]() -> std::shared_ptr<const WindowTable> {
          std::lock_guard<std::mutex> lock(mutex_);
          return ledger_ == nullptr ? nullptr : ledger_->windows();
        },
        [this](WindowCommand command) {
          std::lock_guard<std::mutex> lock(mutex_);
          if (pipeline_ == nullptr) return false;
          log::Info("window_retiring", {{"window", FormatWindowDay(command.day)},
                                        {"exceptions", command.exception_keys.size()}});
          pipeline_->SubmitWindowCommand(std::move(command));
          return true;
        },
        [](const absl::Status& status, const MaintenanceRound& round) {
          if (!status.ok()) {
            log::Warning("store_maintenance_failed",
                         {{"error", status.ToString()},
                          {"action", "none if the next round succeeds; until one does, old dedup records and "
                                     "retired windows stay on disk: check the store's disk"}});
          } else if (round.dedup_table_compacted || !round.windows_compacted.empty()) {
            log::Info("store_maintenance", {{"horizon_start", FormatChinaTime(round.horizon_start_ms)},
                                            {"dedup_table_compacted", round.dedup_table_compacted},
                                            {"windows_compacted", round.windows_compacted.size()}});
          }
        },
        /*start_thread=*/true);
  }

  // The last file set before this start, so the metrics have it from the first scrape.
  void NoteLastFileSet(const WindowTable& windows) {
    for (auto it = windows.rbegin(); it != windows.rend(); ++it) {
      if (it->second.state != WindowState::kFilesWritten) continue;
      NoteFileSet(it->first, it->second.files_written_at_ms);
      break;
    }
  }

  // One life of the store, ledger, Kafka source and pipeline, until a stop or a failure.
  absl::Status Attempt() {
    auto store = RocksStore::Open(config_.store_path, StoreOptions());
    if (!store.ok()) return store.status();
    if (absl::Status s = CheckCardTokenKey(**store, card_key_check_); !s.ok()) return s;
    absl::StatusOr<std::unique_ptr<kafka::KafkaChangelog>> made_changelog = MakeChangelog();
    if (!made_changelog.ok()) return made_changelog.status();
    std::unique_ptr<kafka::KafkaChangelog> changelog = *std::move(made_changelog);
    Ledger ledger(**store, LedgerOptions{.calendar = config_.calendar,
                                         .dedup_horizon_ms = config_.decode.dedup_horizon_ms,
                                         .keep_dead_letters = config_.dead_letter,
                                         .dead_letter_sealer = ledger_sealer_.get(),
                                         .dead_letter_payload = config_.dead_letter_payload,
                                         .recent_txn_records_max = config_.recent_txn_records_max,
                                         .lines_checkpoint_applied_max = config_.lines_checkpoint_applied_max,
                                         .changelog = changelog.get()});
    if (absl::Status s = ledger.Load(clock_->NowMs()); !s.ok()) return s;
    std::unique_ptr<StandbyFollower> standby;  // stopped before the changelog it reads
    if (changelog != nullptr && config_.standby) {
      absl::StatusOr<std::unique_ptr<StandbyFollower>> started = StartStandby(*changelog);
      if (!started.ok()) return started.status();
      standby = *std::move(started);
    }
    auto source = kafka::KafkaSource::Create(AttemptSourceOptions(changelog.get(), **store, ledger, standby.get()),
                                             ledger.offsets());
    if (!source.ok()) return source.status();
    if (config_.dead_letter) {
      if (absl::Status s = ProduceStoredDeadLetters(**store, *start_sealer_, config_.dead_letter_payload, **source); !s.ok()) return s;
    }

    Pipeline pipeline(config_.pipeline, **source, ledger, *clock_, registry_holder_, *tokenizer_);
    // A member of a group writes a window's file set merged from every partition's changelog,
    // as the owner of the coordinating partition only.
    kafka::KafkaSource& consumer = **source;
    FileWriter::WriteOverride merged_write;
    MergeInProgress merge;  // used by the file writer's thread only; outlives it
    if (changelog != nullptr) {
      merged_write = [this, &changelog, &consumer, &ledger, &merge](WindowDay day) {
        return WriteMergedFiles(*changelog, consumer, ledger, day, merge);
      };
    }
    FileWriter file_writer(
        **store, registry_holder_, config_.output_dir, digests_,
        [this, &pipeline](WindowDay day) {
          // In the metrics before the window says files_written, so whoever sees the one sees the other.
          NoteFileSet(day, clock_->NowMs());
          pipeline.SubmitWindowCommand(WindowCommand{WindowCommand::Kind::kMarkFilesWritten, day});
          PublishFilesWritten(day);
        },
        merged_write);
    pipeline.on_windows_changed = [this, &file_writer](const std::vector<WindowDay>& closed,
                                                 const std::vector<WindowDay>& marked) {
      for (const WindowDay day : closed) {
        log::Info("window_closed", {{"window", FormatWindowDay(day)}});
        file_writer.Enqueue(day);
      }
      for (const WindowDay day : marked) log::Info("window_files_written", {{"window", FormatWindowDay(day)}});
    };
    NoteLastFileSet(*ledger.windows());
    const std::unique_ptr<StoreMaintenance> maintenance = StartMaintenance(**store);
    // Windows closed before a stop whose files were not finished: write them again (same bytes).
    for (const WindowDay day : ledger.WindowsAwaitingFiles()) file_writer.Enqueue(day);
    absl::StatusOr<std::unique_ptr<kafka::ControlChannel>> started_control = StartControlChannel(pipeline);
    if (!started_control.ok()) return started_control.status();
    const std::unique_ptr<kafka::ControlChannel> control = *std::move(started_control);
    ExposeRunningParts({.pipeline = &pipeline,
                        .ledger = &ledger,
                        .source = source->get(),
                        .changelog = changelog.get(),
                        .standby = standby.get(),
                        .control = control.get()});
    log::Info("started", {{"shard", shard_},
                          {"store", config_.store_path},
                          {"bootstrap_servers", config_.bootstrap_servers},
                          {"commit_sequence", ledger.commit_sequence()},
                          {"clock_fixed_ms", config_.clock_fixed_ms}});
    const absl::Status status = pipeline.Run();
    ExposeRunningParts({});
    FinishDeadLetters(**source, ledger, pipeline);
    const PipelineStats& stats = pipeline.stats();
    log::Info("pipeline_stopped", {{"shard", shard_},
                                   {"consumed", stats.consumed_count.load()},
                                   {"applied", stats.applied_count.load()},
                                   {"batches", stats.committed_batch_count.load()},
                                   {"commit_latency_us_p50", stats.commit_latency_us.QuantileUpperBoundUs(0.50)},
                                   {"commit_latency_us_p99", stats.commit_latency_us.QuantileUpperBoundUs(0.99)},
                                   {"commit_sequence", ledger.commit_sequence()},
                                   {"status", status.ToString()}});
    return status;
  }

  DaemonConfig config_;  // this member's (ShardConfig)
  const int shard_;
  const std::string card_key_check_;  // DeriveKey(card-token key, kCardTokenKeyCheckLabel)
  RegistryHolder& registry_holder_;   // the process's
  std::unique_ptr<HmacSha256> tokenizer_;
  std::unique_ptr<PayloadSealer> ledger_sealer_;  // seals dead-letter copies on the ledger thread
  std::unique_ptr<PayloadSealer> start_sealer_;   // opens the stored ones at start (worker thread)
  const Digests& digests_;
  Clock* const clock_;
  FileSetNote& file_sets_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_requested_ = false;    // guarded by mutex_
  Pipeline* pipeline_ = nullptr;   // guarded by mutex_; the running pipeline, if any
  Ledger* ledger_ = nullptr;       // guarded by mutex_; its ledger
  kafka::KafkaSource* source_ = nullptr;  // guarded by mutex_; its source
  kafka::KafkaChangelog* changelog_ = nullptr;  // guarded by mutex_; its changelog (a group member)
  StandbyFollower* standby_ = nullptr;          // guarded by mutex_; its standby, if it keeps one
  // After mutex_ when both are held.
  std::mutex control_mutex_;
  kafka::ControlChannel* control_ = nullptr;    // guarded by control_mutex_; its control channel (a group member)
  std::set<WindowDay> clock_closes_published_;  // guarded by control_mutex_; by this life
  std::atomic<uint64_t> restoring_partitions_{0};  // being restored from their changelogs now
  std::atomic<uint64_t> restore_count_{0};
  std::atomic<uint64_t> restored_commit_count_{0};
  std::atomic<uint64_t> restored_snapshot_count_{0};
  std::atomic<uint64_t> restore_ms_total_{0};
  mutable std::atomic<uint64_t> partition_rebuild_count_{0};  // diverged partitions dropped and restored
  absl::Status final_status_;      // guarded by mutex_; written by the worker before it returns
  std::atomic<uint64_t> store_background_error_count_{0};  // from RocksDB's threads
  std::atomic<uint64_t> consumption_pause_count_{0};
};

}  // namespace

kafka::KafkaSourceOptions SourceOptions(const DaemonConfig& config) {
  kafka::KafkaSourceOptions options;
  options.bootstrap_servers = config.bootstrap_servers;
  options.group_id = config.group_id;
  options.assignment = config.group_assignment ? kafka::KafkaSourceOptions::Assignment::kGroup
                                               : kafka::KafkaSourceOptions::Assignment::kPartitions;
  options.group_instance_id = config.group_instance_id;
  options.settings = config.kafka_settings;
  options.message_bytes_max = config.decode.message_bytes_max;
  options.dead_letter = config.dead_letter;
  options.dead_letter_payload = config.dead_letter_payload;
  return options;
}

std::unique_ptr<Member> Member::Create(DaemonConfig config, int shard, ProcessParts process, Keys keys) {
  return std::make_unique<MemberImpl>(std::move(config), shard, std::move(process), std::move(keys));
}

}  // namespace yrd
