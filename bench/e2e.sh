#!/usr/bin/env bash
# End-to-end throughput: clearing-broker -> clearingd while clearing-gen produces a generated
# day concurrently. Prints events/s from the first message produced to the last one committed,
# the daemon's commit latency (p50/p99 bucket bounds) and whether the result equals the oracle.
#
#   bench/e2e.sh [--events 2000000] [--partitions 64] [--batch 4096] [--in-flight 4]
# (--in-flight is pipeline_batches_max: 4, the daemon's default, lets a batch fill while one is
# prepared and one is written)
set -euo pipefail
cd "$(dirname "$0")/.."
events=2000000 partitions=64 batch=4096 in_flight=4
while (($#)); do
  case $1 in
    --events) events=$2; shift 2 ;;
    --partitions) partitions=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --in-flight) in_flight=$2; shift 2 ;;
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
cat >"$work/clearingd.toml" <<CONFIG
[kafka]
bootstrap_servers = "$bootstrap"
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
[admin]
port = 0
[log]
progress_interval_ms = 0
CONFIG
"$bin/clearingd/clearingd" --config "$work/clearingd.toml" >"$work/clearingd.log" 2>&1 &
daemon=$!
pids+=("$daemon")
for _ in $(seq 1 300); do grep -q '"started"' "$work/clearingd.log" && break; sleep 0.1; done

start_ns=$(date +%s%N)
"$bin/clearing-gen/clearing-gen" day --registry "$work/registry.toml" --date 20261127 --events "$events" --seed 2 \
  --brokers "$bootstrap" --oracle "$work/oracle.json" >"$work/gen.log" 2>&1
produced_ns=$(date +%s%N)
messages=$(sed -n 's/.*"messages": *\([0-9]*\).*/\1/p' "$work/oracle.json" | head -n1)
while :; do
  committed=$("$bin/clearing-report/clearing-report" --store "$work/state" --format json progress 2>/dev/null |
    sed -n 's/.*"messages":\([0-9]*\).*/\1/p')
  [[ ${committed:-0} -ge $messages ]] && break
  kill -0 "$daemon" 2>/dev/null || { echo "clearingd stopped:"; tail -5 "$work/clearingd.log"; exit 1; }
  sleep 0.05
done
done_ns=$(date +%s%N)
kill -TERM "$daemon"; wait "$daemon" || true
stopped=$(grep '"pipeline_stopped"' "$work/clearingd.log" | tail -n1)
p50=$(sed -n 's/.*"commit_latency_us_p50":\([0-9]*\).*/\1/p' <<<"$stopped")
p99=$(sed -n 's/.*"commit_latency_us_p99":\([0-9]*\).*/\1/p' <<<"$stopped")
oracle=mismatch
"$bin/clearing-report/clearing-report" --store "$work/state" outcome --registry "$work/registry.toml" \
  --expect "$work/oracle.json" >/dev/null && oracle=match
seconds=$(awk -v a="$start_ns" -v b="$done_ns" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
produce_seconds=$(awk -v a="$start_ns" -v b="$produced_ns" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
echo "e2e messages=$messages seconds=$seconds events_per_s=$(awk -v m="$messages" -v s="$seconds" 'BEGIN { printf "%.0f", m / s }')" \
  "produce_seconds=$produce_seconds commit_latency_us_p50<=$p50 commit_latency_us_p99<=$p99 oracle=$oracle"
[[ $oracle == match ]]
