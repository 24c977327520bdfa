#!/usr/bin/env bash
# The main job on the embedded default, on a fresh Debian machine: installs and builds what is
# missing, starts the embedded Kafka broker (clearing-broker) and the daemon (clearingd),
# produces a generated day of events while the daemon consumes them, waits until every message
# is committed, stops the daemon with SIGTERM, checks the result against the generator's
# oracle, then lets the next day begin: the window closes, its clearing files are written and
# verified, and the province positions of the summary are printed.
#
#   tools/demo.sh                 # 1,000,000 events of yesterday (China time)
#   EVENTS=200000 tools/demo.sh   # a smaller day
#   OUT=/some/dir tools/demo.sh   # where the run's files go (default out/demo)
#   tools/demo.sh --instances 3   # three daemons in one consumer group; one of them is killed
#                                 # (SIGKILL) during the day and started again, the day is closed
#                                 # through one of them, and the one file set is verified
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

instances=1
while (($#)); do
  case $1 in
    --instances) instances=${2:?--instances needs a number}; shift 2 ;;
    *) echo "usage: tools/demo.sh [--instances N]   (N from 1 to 9)" >&2; exit 2 ;;
  esac
done
[[ $instances =~ ^[1-9]$ ]] || { echo "--instances must be 1 to 9" >&2; exit 2; }

events=${EVENTS:-1000000}
out=${OUT:-$root/out/demo}
date_cst=${DATE:-$(date -u -d '+8 hours -1 day' +%Y%m%d)}
partitions=${PARTITIONS:-32}
catch_up_seconds_max=${CATCH_UP_SECONDS_MAX:-600}

tools/setup.sh
bin=$root/build/release/tools

rm -rf "$out"
mkdir -p "$out"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== starting the embedded Kafka broker (clearing-broker, loopback)"
"$bin/clearing-broker/clearing-broker" --port 0 --partitions "$partitions" --address-file "$out/broker.address" \
  >"$out/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [[ -s $out/broker.address ]] && break; sleep 0.1; done
[[ -s $out/broker.address ]] || { echo "the broker did not start; see $out/broker.log" >&2; exit 1; }
bootstrap=$(cat "$out/broker.address")
echo "   bootstrap servers: $bootstrap"

echo "== generating a registry and the daemon's configuration"
"$bin/clearing-gen/clearing-gen" registry --out "$out/registry.toml" --merchants 2000 --seed 1
# The card-token key comes from configuration, never from the repository: a fresh one per run.
(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$out/card-token.key")
(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$out/manifest.key")
# The daemon's clock stands at 23:59 China time of the generated day, so that day is open and
# the day before it is closed (its late events go to the open window).
clock_ms=$(( $(date -u -d "${date_cst:0:4}-${date_cst:4:2}-${date_cst:6:2} 23:59:00 +0800" +%s) * 1000 ))
cat >"$out/clearingd.toml" <<CONFIG
[kafka]
bootstrap_servers = "$bootstrap"
[store]
path = "state"
[registry]
path = "registry.toml"
[privacy]
card_token_key_file = "card-token.key"
manifest_key_file = "manifest.key"
[output]
dir = "files"
[clearing]
clock_fixed_ms = $clock_ms
[admin]
port = 0
[log]
progress_interval_ms = 2000
CONFIG

if ((instances > 1)); then
  source tools/demo-group.sh
  exit 0
fi

echo "== starting clearingd"
"$bin/clearingd/clearingd" --config "$out/clearingd.toml" >"$out/clearingd.log" 2>&1 &
daemon=$!
pids+=("$daemon")

echo "== producing $events events of $date_cst while clearingd consumes them"
"$bin/clearing-gen/clearing-gen" day --registry "$out/registry.toml" --date "$date_cst" --events "$events" \
  --seed 2 --brokers "$bootstrap" --oracle "$out/oracle.json"

messages=$(sed -n 's/.*"messages": *\([0-9]*\).*/\1/p' "$out/oracle.json" | head -n1)
echo "== waiting until clearingd has committed all $messages messages"
start=$(date +%s)
while :; do
  committed=$("$bin/clearing-report/clearing-report" --store "$out/state" --format json progress 2>/dev/null |
    sed -n 's/.*"messages":\([0-9]*\).*/\1/p')
  [[ ${committed:-0} -eq $messages ]] && break
  if (( $(date +%s) - start > catch_up_seconds_max )); then
    echo "clearingd did not catch up within ${catch_up_seconds_max}s (committed ${committed:-0}); see $out/clearingd.log" >&2
    exit 1
  fi
  kill -0 "$daemon" 2>/dev/null || { echo "clearingd stopped; see $out/clearingd.log" >&2; exit 1; }
  sleep 0.5
done
echo "   done in $(( $(date +%s) - start ))s after the last message was produced"

echo "== stopping clearingd (SIGTERM: finish and commit what is in flight)"
kill -TERM "$daemon"
wait "$daemon"

echo "== checking every position and count against the generator's oracle"
"$bin/clearing-report/clearing-report" --store "$out/state" outcome --registry "$out/registry.toml" \
  --expect "$out/oracle.json"

echo "== the next day: clearingd restarts with its clock past $date_cst's cutoff plus grace,"
echo "   closes the window, checks the invariants and writes the clearing files"
next_day_clock_ms=$(( clock_ms + 17 * 60 * 1000 ))   # 00:16 China time, after the 15-minute grace
"$bin/clearingd/clearingd" --config "$out/clearingd.toml" --clock-fixed-ms "$next_day_clock_ms" \
  >>"$out/clearingd.log" 2>&1 &
daemon=$!
pids+=("$daemon")
for _ in $(seq 1 1200); do
  grep -q "\"window_files_written\".*\"$date_cst\"\|\"window\":\"$date_cst\".*\"window_files_written\"" \
    "$out/clearingd.log" && break
  grep -q '"clearing_files_not_written"' "$out/clearingd.log" && break
  kill -0 "$daemon" 2>/dev/null || break
  sleep 0.5
done
kill -TERM "$daemon"
wait "$daemon"
files="$out/files/$date_cst"
[[ -f $files/MANIFEST ]] || { echo "no clearing files were written; see $out/clearingd.log" >&2; exit 1; }

echo "== verifying the files against their MANIFEST, their trailers and the store"
"$bin/clearing-report/clearing-report" --store "$out/state" verify "$files" --registry "$out/registry.toml" \
  --key-file "$out/manifest.key"

echo "== province positions of $date_cst from $files/summary.txt (fen)"
grep 'PROVINCE' "$files/summary.txt"
echo
echo "Clearing files: $files"
echo "Everything of this run: $out (state store, logs, registry, oracle, files)."
