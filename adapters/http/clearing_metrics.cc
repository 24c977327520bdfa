#include "adapters/http/clearing_metrics.h"

#include <string>

namespace yrd::http {
namespace {

constexpr WindowState kWindowStates[] = {WindowState::kOpen, WindowState::kClosing, WindowState::kClosed,
                                         WindowState::kFilesWritten};

}  // namespace

void AppendClearingMetrics(const ClearingMetrics& metrics, PrometheusText& page) {
  page.Counter("yrd_events_consumed_total", "Messages consumed from yrd.taps and yrd.medical.",
               metrics.events_consumed_count);
  page.Counter("yrd_events_applied_total", "Events applied to a window's positions.", metrics.events_applied_count);
  page.Counter("yrd_events_exact_duplicate_total",
               "Events identical to one already applied (same txn_id, same content); counted, not applied.",
               metrics.events_exact_duplicate_count);
  page.Counter("yrd_events_late_total", "Events applied to a later window because theirs had closed.",
               metrics.events_late_count);
  page.Counter("yrd_batches_committed_total", "Batches durably committed to the state store.",
               metrics.batches_committed_count);
  page.Counter("yrd_store_written_bytes_total", "Bytes of state-store write batches committed.",
               metrics.store_written_bytes);
  page.Counter("yrd_store_background_errors_total",
               "Flush, compaction or write errors after which RocksDB stopped writes (disk full, I/O errors).",
               metrics.store_background_error_count);
  page.Counter("yrd_consumption_pauses_total",
               "Times consumption stopped on a store or broker failure and waited to retry.",
               metrics.consumption_pause_count);
  page.Counter("yrd_recent_txn_sorts_total",
               "Times the recent transaction records were sorted into the store's dedup table in one step.",
               metrics.recent_txn_sort_count);
  page.Gauge("yrd_recent_txn_records",
             "Transaction records held in memory (and in kRecentTxn) until their next sort into the dedup table.",
             metrics.recent_txn_records);

  page.Family("yrd_exceptions_total", PrometheusType::kCounter,
              "Messages not applied, by reason; each is in the exception store (clearing-report exceptions).");
  for (size_t i = 0; i < kReasonCount; ++i) {
    page.Sample({{"reason", kReasonNames[i]}}, metrics.exception_count_by_reason[i]);
  }

  page.Family("yrd_pipeline_queue_depth_batches", PrometheusType::kGauge,
              "Batches waiting in front of a pipeline stage.");
  for (const ClearingMetrics::StageDepth& stage : metrics.queue_depths) {
    page.Sample({{"stage", stage.stage}}, stage.depth_batches);
  }

  page.Family("yrd_consumer_lag_messages", PrometheusType::kGauge,
              "Messages in a partition not consumed yet (high watermark minus next offset).");
  for (const ClearingMetrics::PartitionLag& lag : metrics.consumer_lags) {
    const std::string partition = std::to_string(lag.partition);
    page.Sample({{"topic", lag.topic}, {"partition", partition}}, lag.lag_messages);
  }

  page.Family("yrd_owned_partitions", PrometheusType::kGauge,
              "Partitions of a topic this instance consumes now (all, or its share in a consumer group).");
  for (const ClearingMetrics::OwnedPartitions& owned : metrics.owned_partitions) {
    page.Sample({{"topic", owned.topic}}, owned.partition_count);
  }
  page.Family("yrd_rebalances_total", PrometheusType::kCounter,
              "Consumer-group rebalances this instance took part in (assignments and revocations).");
  page.Sample({}, metrics.rebalance_count);

  if (metrics.changelog) {
    const ClearingMetrics::Changelog& changelog = *metrics.changelog;
    page.Family("yrd_changelog_appended_records_total", PrometheusType::kCounter,
                "Changelog records appended (one per commit and partition it changed).");
    page.Sample({}, changelog.appended_records);
    page.Family("yrd_changelog_appended_bytes_total", PrometheusType::kCounter, "Bytes of changelog records appended.");
    page.Sample({}, changelog.appended_bytes);
    page.Family("yrd_changelog_restoring_partitions", PrometheusType::kGauge,
                "Partitions being restored from their changelogs now (consumed only once restored).");
    page.Sample({}, changelog.restoring_partitions);
    page.Family("yrd_changelog_restores_total", PrometheusType::kCounter,
                "Partitions restored from their changelogs (each assignment to this instance restores).");
    page.Sample({}, changelog.restores);
    page.Family("yrd_changelog_restored_commits_total", PrometheusType::kCounter,
                "Commits of other owners applied to this store by restores.");
    page.Sample({}, changelog.restored_commits);
    page.Family("yrd_changelog_restore_seconds_total", PrometheusType::kCounter, "Time spent restoring partitions.");
    page.Sample({}, changelog.restore_seconds);
    page.Family("yrd_changelog_rebuilds_total", PrometheusType::kCounter,
                "Partitions whose state diverged from their changelog (committed as a zombie), dropped and "
                "restored from the changelog's start.");
    page.Sample({}, changelog.rebuilds);
    page.Family("yrd_changelog_snapshots_total", PrometheusType::kCounter,
                "Snapshots of a partition's state appended to its changelog (a restore needs only the last one and "
                "the commits after it).");
    page.Sample({}, changelog.snapshots);
    page.Family("yrd_changelog_snapshot_bytes_total", PrometheusType::kCounter, "Bytes of the snapshots appended.");
    page.Sample({}, changelog.snapshot_bytes);
    page.Family("yrd_changelog_restored_snapshots_total", PrometheusType::kCounter,
                "Snapshots applied by restores (the partition's changelog no longer held the commits before them).");
    page.Sample({}, changelog.restored_snapshots);
  }
  if (metrics.standby) {
    const ClearingMetrics::Standby& standby = *metrics.standby;
    page.Family("yrd_standby_partitions", PrometheusType::kGauge,
                "Partitions this member's standby follows (those it does not own).");
    page.Sample({}, standby.partitions);
    page.Family("yrd_standby_lag_records", PrometheusType::kGauge,
                "Changelog records the standby's last pass found appended since the one before.");
    page.Sample({}, standby.lag_records);
    page.Family("yrd_standby_applied_commits_total", PrometheusType::kCounter,
                "Commits the standby applied to its store.");
    page.Sample({}, standby.applied_commits);
    page.Family("yrd_standby_copies_total", PrometheusType::kCounter,
                "Partitions a claim copied from the standby (their changelog read only after the copy).");
    page.Sample({}, standby.copies);
    page.Family("yrd_standby_failures_total", PrometheusType::kCounter,
                "Standby passes that failed (the standby starts again from its store).");
    page.Sample({}, standby.failures);
  }

  if (metrics.commit_latency != nullptr) {
    page.Family("yrd_commit_latency_seconds", PrometheusType::kHistogram,
                "Time from a batch sealed to its synced store commit returning.");
    page.Histogram({}, *metrics.commit_latency);
  }

  page.Family("yrd_window_state", PrometheusType::kGauge,
              "1 for a window's current state (open, closing, closed, files_written), 0 for the others.");
  for (const ClearingMetrics::Window& window : metrics.windows) {
    const std::string date = FormatWindowDay(window.day);
    for (WindowState state : kWindowStates) {
      page.Sample({{"window", date}, {"state", WindowStateName(state)}}, window.state == state ? 1 : 0);
    }
  }

  page.Family("yrd_last_file_set_timestamp_seconds", PrometheusType::kGauge,
              "When the last clearing file set was committed (UTC epoch seconds), by window.");
  if (metrics.last_file_set) {
    const std::string date = FormatWindowDay(metrics.last_file_set->day);
    // Printed in shortest round-trip form, so the three decimals of the milliseconds come back.
    page.Sample({{"window", date}}, static_cast<double>(metrics.last_file_set->written_at_ms) / 1000.0);
  }
  page.Family("yrd_last_file_set_files", PrometheusType::kGauge,
              "Files in the last clearing file set committed, MANIFEST included, by window.");
  if (metrics.last_file_set) {
    page.Sample({{"window", FormatWindowDay(metrics.last_file_set->day)}}, metrics.last_file_set->file_count);
  }
}

}  // namespace yrd::http
