// ClearingMetrics: a snapshot of the daemon's numbers, and the one place that names the metrics
// GET /metrics exposes for them (docs/operations.md lists the same names). The daemon fills a
// snapshot on the io_context thread when /metrics is asked for (from PipelineStats, the ledger's
// window table, the consumer's lag) and renders it with AppendClearingMetrics; further families
// of its own may follow on the same PrometheusText. A plain value type: no thread-safety of its
// own; `commit_latency` must stay valid while the snapshot is rendered.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "adapters/http/prometheus.h"
#include "engine/base/histogram.h"
#include "engine/base/reason.h"
#include "engine/base/window.h"
#include "engine/store/records.h"

namespace yrd::http {

struct ClearingMetrics {
  // Counters since the process started (Prometheus handles the reset at a restart).
  uint64_t events_consumed_count = 0;         // yrd_events_consumed_total
  uint64_t events_applied_count = 0;          // yrd_events_applied_total
  uint64_t events_exact_duplicate_count = 0;  // yrd_events_exact_duplicate_total
  uint64_t events_late_count = 0;             // yrd_events_late_total
  uint64_t batches_committed_count = 0;       // yrd_batches_committed_total
  uint64_t store_written_bytes = 0;           // yrd_store_written_bytes_total
  uint64_t store_background_error_count = 0;  // yrd_store_background_errors_total
  uint64_t consumption_pause_count = 0;       // yrd_consumption_pauses_total
  uint64_t recent_txn_sort_count = 0;         // yrd_recent_txn_sorts_total
  uint64_t recent_txn_records = 0;            // yrd_recent_txn_records (a gauge)
  // yrd_exceptions_total{reason}: every reason of engine/base/reason.h, zeros included, so a rate
  // query never misses a series that appears late.
  std::array<uint64_t, kReasonCount> exception_count_by_reason{};

  // yrd_pipeline_queue_depth_batches{stage}: batches waiting in front of a pipeline stage.
  struct StageDepth {
    std::string stage;  // "ledger", "commit", "done"
    uint64_t depth_batches = 0;
  };
  std::vector<StageDepth> queue_depths;

  // yrd_consumer_lag_messages{topic,partition}: high watermark minus the next offset to consume.
  struct PartitionLag {
    std::string topic;
    int32_t partition = 0;
    int64_t lag_messages = 0;
  };
  std::vector<PartitionLag> consumer_lags;

  // yrd_owned_partitions{topic}: partitions this instance consumes now (all of them, or its
  // share in a consumer group). yrd_rebalances_total: the group rebalances it took part in.
  struct OwnedPartitions {
    std::string topic;
    uint64_t partition_count = 0;
  };
  std::vector<OwnedPartitions> owned_partitions;
  uint64_t rebalance_count = 0;

  // A group member's changelog (not rendered otherwise): yrd_changelog_appended_records_total and
  // _bytes_total, yrd_changelog_restoring_partitions (now), yrd_changelog_restores_total,
  // yrd_changelog_restored_commits_total and yrd_changelog_restore_seconds_total,
  // yrd_changelog_snapshots_total and _snapshot_bytes_total (appended),
  // yrd_changelog_restored_snapshots_total.
  struct Changelog {
    uint64_t appended_records = 0;
    uint64_t appended_bytes = 0;
    uint64_t restoring_partitions = 0;
    uint64_t restores = 0;
    uint64_t restored_commits = 0;
    double restore_seconds = 0;
    uint64_t rebuilds = 0;  // partitions whose diverged state was dropped and restored
    uint64_t snapshots = 0;
    uint64_t snapshot_bytes = 0;
    uint64_t restored_snapshots = 0;
  };
  std::optional<Changelog> changelog;

  // A group member's standby (kafka.standby; not rendered otherwise): yrd_standby_partitions and
  // yrd_standby_lag_records (gauges), yrd_standby_applied_commits_total, yrd_standby_copies_total
  // and yrd_standby_failures_total.
  struct Standby {
    uint64_t partitions = 0;
    uint64_t lag_records = 0;
    uint64_t applied_commits = 0;
    uint64_t copies = 0;
    uint64_t failures = 0;
  };
  std::optional<Standby> standby;

  // yrd_commit_latency_seconds: from a batch sealed to its synced commit returning. Not rendered
  // when null.
  const LatencyHistogram* commit_latency = nullptr;

  // yrd_window_state{window,state}: 1 for the window's current state, 0 for the other states
  // (a Prometheus state set), for every window listed.
  struct Window {
    WindowDay day = 0;
    WindowState state = WindowState::kOpen;
  };
  std::vector<Window> windows;

  // yrd_last_file_set_timestamp_seconds{window} and yrd_last_file_set_files{window}: the last
  // window whose file set was committed, when it was, and how many files it holds (MANIFEST
  // included). No sample while no file set was written since the process started.
  struct FileSet {
    WindowDay day = 0;
    int64_t written_at_ms = 0;  // UTC epoch milliseconds
    uint64_t file_count = 0;
  };
  std::optional<FileSet> last_file_set;
};

// Appends the families above to `page`, in the order they are declared. Every family gets its
// HELP and TYPE lines even when it has no sample.
void AppendClearingMetrics(const ClearingMetrics& metrics, PrometheusText& page);

}  // namespace yrd::http
