#!/usr/bin/env bash
# End-to-end throughput: clearing-broker -> clearingd while clearing-gen produces a generated
# day concurrently. Prints events/s from the first message produced to the last one committed,
# the daemon's commit latency (p50/p99 bucket bounds) and whether the result equals the oracle.
#
#   bench/e2e.sh [--events 2000000] [--partitions 64] [--batch 4096] [--in-flight 4] [--shards N]
# (--in-flight is pipeline_batches_max: 4, the daemon's default, lets a batch fill while one is
# prepared and one is written; --shards N runs the daemon as a consumer group of N ledger shards
# in one process, pipeline.shards, with the changelogs a group keeps)
set -euo pipefail
cd "$(dirname "$0")/.."
events=2000000 partitions=64 batch=4096 in_flight=4 shards=0
while (($#)); do
  case $1 in
    --events) events=$2; shift 2 ;;
    --partitions) partitions=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --in-flight) in_flight=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
bin=build/release/tools
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$bin/clearing-broker/clearing-broker" --port 0 --partitions "$partitions" --address-file "$work/addr" >"$work/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [[ -s $work/addr ]] && break; sleep 0.1; done
bootstrap=$(cat "$work/addr")
"$bin/clearing-gen/clearing-gen" registry --out "$work/registry.toml" --merchants 2000 --seed 1 >/dev/null
(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$work/key")
(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$work/manifest.key")
group_keys="" shard_keys=""
if ((shards > 0)); then
  group_keys='assignment = "group"'
  shard_keys="shards = $shards"
fi
cat >"$work/clearingd.toml" <<CONFIG
[kafka]
bootstrap_servers = "$bootstrap"
$group_keys
[store]
path = "state"
[registry]
path = "registry.toml"
[privacy]
card_token_key_file = "key"
manifest_key_file = "manifest.key"
[clearing]
clock_fixed_ms = 1795795140000
[pipeline]
batch_messages_max = $batch
pipeline_batches_max = $in_flight
$shard_keys
[admin]
port = 0
[log]
progress_interval_ms = 0
CONFIG
"$bin/clearingd/clearingd" --config "$work/clearingd.toml" >"$work/clearingd.log" 2>&1 &
daemon=$!
pids+=("$daemon")
for _ in $(seq 1 300); do grep -q '"started"' "$work/clearingd.log" && break; sleep 0.1; done
port=$(sed -n 's/.*"event":"admin_endpoint".*"port":\([0-9]*\).*/\1/p' "$work/clearingd.log" | head -n1)

# Messages committed: the store's progress; a group's shards have a store each, and reading their
# union copies all state, so there the daemon's metrics tell instead (every partition owned, no
# lag, every message consumed; the last batch's commit follows within milliseconds).
committed_messages() {
  if ((shards == 0)); then
    "$bin/clearing-report/clearing-report" --store "$work/state" --format json progress 2>/dev/null |
      sed -n 's/.*"messages":\([0-9]*\).*/\1/p'
    return
  fi
  local metrics
  metrics=$(curl -sf "http://127.0.0.1:$port/metrics") || { echo 0; return; }
  awk -v want=$((2 * partitions)) -v messages="$messages" '
    /^yrd_owned_partitions\{/ { owned += $2 }
    /^yrd_consumer_lag_messages\{/ { lag += ($2 < 0 ? 1e18 : $2) }
    /^yrd_events_consumed_total / { consumed = $2 }
    END { print (owned == want && lag == 0 && consumed >= messages) ? messages : 0 }' <<<"$metrics"
}

start_ns=$(date +%s%N)
"$bin/clearing-gen/clearing-gen" day --registry "$work/registry.toml" --date 20261127 --events "$events" --seed 2 \
  --brokers "$bootstrap" --oracle "$work/oracle.json" >"$work/gen.log" 2>&1
produced_ns=$(date +%s%N)
messages=$(sed -n 's/.*"messages": *\([0-9]*\).*/\1/p' "$work/oracle.json" | head -n1)
while :; do
  committed=$(committed_messages)
  [[ ${committed:-0} -ge $messages ]] && break
  kill -0 "$daemon" 2>/dev/null || { echo "clearingd stopped:"; tail -5 "$work/clearingd.log"; exit 1; }
  sleep 0.05
done
done_ns=$(date +%s%N)
kill -TERM "$daemon"; wait "$daemon" || true
stopped=$(grep '"pipeline_stopped"' "$work/clearingd.log" | grep '"shard":0,' | tail -n1)
p50=$(sed -n 's/.*"commit_latency_us_p50":\([0-9]*\).*/\1/p' <<<"$stopped")
p99=$(sed -n 's/.*"commit_latency_us_p99":\([0-9]*\).*/\1/p' <<<"$stopped")
oracle=mismatch
"$bin/clearing-report/clearing-report" --store "$work/state" outcome --registry "$work/registry.toml" \
  --expect "$work/oracle.json" >/dev/null && oracle=match
seconds=$(awk -v a="$start_ns" -v b="$done_ns" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
produce_seconds=$(awk -v a="$start_ns" -v b="$produced_ns" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
echo "e2e messages=$messages seconds=$seconds events_per_s=$(awk -v m="$messages" -v s="$seconds" 'BEGIN { printf "%.0f", m / s }')" \
  "shards=$shards produce_seconds=$produce_seconds commit_latency_us_p50<=$p50 commit_latency_us_p99<=$p99 oracle=$oracle"
[[ $oracle == match ]]
