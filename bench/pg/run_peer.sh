#!/usr/bin/env bash
# Runs the PostgreSQL 15 peer of the clearing engine on one generated day and checks it against
# the generator's oracle.
#
#   bench/pg/run_peer.sh --events day.bin --registry reg.toml --oracle oracle.json [--bin-dir DIR]
#
# Installs Debian's postgresql-15 when missing, creates a throw-away cluster in a temporary
# directory (Unix socket in that directory, no TCP), and removes it on exit. Steps:
#   1 events_to_csv decodes the event file with the engine's decoder into CSV   (timed: convert)
#   2 the cluster starts; schema.sql creates the tables and loads the registry  (not timed)
#   3 peer.sql: COPY, set-based dedup and netting, durable COMMIT              (timed: sql)
#   4 outcome.sql renders the committed outcome; outcome_diff compares it with the oracle
# Prints key=value lines; the peer's events/s is end to end (convert + sql), as the engine's
# figure includes its decoding. Memory: peak RSS of the converter (/usr/bin/time) and the peak
# of the summed PSS of all PostgreSQL processes during step 3 (sampled every 0.2 s); the
# converter and the server never run at the same time, so the peer's peak is the larger one.
# Exit 0 when the outcome equals the oracle, 1 when it differs, 2 on a set-up error.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin_dir=$root/build/release/bench
events= registry= oracle=
while (($#)); do
  case $1 in
    --events) events=$(realpath "$2"); shift 2 ;;
    --registry) registry=$(realpath "$2"); shift 2 ;;
    --oracle) oracle=$(realpath "$2"); shift 2 ;;
    --bin-dir) bin_dir=$(realpath "$2"); shift 2 ;;
    *) echo "run_peer: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $events && -n $registry && -n $oracle ]] || {
  echo "usage: run_peer.sh --events day.bin --registry reg.toml --oracle oracle.json [--bin-dir DIR]" >&2
  exit 2
}
for tool in events_to_csv outcome_diff; do
  [[ -x $bin_dir/$tool ]] || { echo "run_peer: $bin_dir/$tool is missing; build the project first" >&2; exit 2; }
done

# PostgreSQL 15 and GNU time from Debian, when missing.
pg_bin=/usr/lib/postgresql/15/bin
need=()
[[ -x $pg_bin/postgres ]] || need+=(postgresql-15)
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
  echo "run_peer: installing ${need[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
    { "${sudo_cmd[@]}" apt-get update -q >&2 &&
      DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${need[@]}" >&2; }
fi

# The engine's settings the oracle assumes.
json_number() { grep -o "\"$1\": *[0-9-]*" "$oracle" | head -1 | grep -o '[0-9-]*$'; }
now_ms=$(json_number clock_fixed_ms)
grace_ms=$(json_number grace_ms)
messages=$(json_number messages)
cutoff_local=$(grep -o '"cutoff_local": *"[0-9:]*"' "$oracle" | grep -o '[0-9][0-9]:[0-9][0-9]')
cutoff_ms=$(( (10#${cutoff_local%%:*} * 60 + 10#${cutoff_local##*:}) * 60000 ))

# initdb refuses root: run the server as the postgres user then.
run_pg=()
if [[ $(id -u) -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  run_pg=(runuser -u postgres --)
fi

work=$(mktemp -d /tmp/yrd-pg-peer.XXXXXX)
sampler_pid=
cleanup() {
  [[ -n $sampler_pid ]] && kill "$sampler_pid" 2>/dev/null || true
  if [[ -f $work/data/postmaster.pid ]]; then
    "${run_pg[@]}" "$pg_bin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 2' INT TERM
chmod 755 "$work"
mkdir "$work/csv"

# 1. Conversion (timed).
start=$(date +%s.%N)
/usr/bin/time -f 'converter_rss_max_kb=%M' -o "$work/convert.time" \
  "$bin_dir/events_to_csv" --events "$events" --registry "$registry" --now-ms "$now_ms" --out-dir "$work/csv" \
  >"$work/convert.out"
end=$(date +%s.%N)
convert_seconds=$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')
chmod 644 "$work"/csv/*.csv

# 2. Cluster and schema (not timed).
mkdir "$work/data" "$work/socket" "$work/log"
if [[ $(id -u) -eq 0 ]]; then chown postgres: "$work/data" "$work/socket" "$work/log"; fi
"${run_pg[@]}" "$pg_bin/initdb" -D "$work/data" -U postgres --auth=trust --locale=C --encoding=UTF8 >/dev/null
cat >>"$work/data/postgresql.conf" <<EOF
# Benchmark cluster: Unix socket only, durable commits, sized for a 2-core, 24 GiB machine.
listen_addresses = ''
unix_socket_directories = '$work/socket'
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = replica
shared_buffers = 1GB
work_mem = 256MB
maintenance_work_mem = 512MB
hash_mem_multiplier = 2.0
temp_buffers = 64MB
wal_buffers = 64MB
max_wal_size = 16GB
checkpoint_timeout = 30min
max_parallel_workers_per_gather = 2
jit = off
EOF
"${run_pg[@]}" "$pg_bin/pg_ctl" -D "$work/data" -l "$work/log/server.log" -w start >/dev/null
psql_cmd=(psql -X -q -h "$work/socket" -U postgres -d postgres -v ON_ERROR_STOP=1)
"${psql_cmd[@]}" -v csv_dir="$work/csv" -f "$here/schema.sql" >/dev/null

# 3. The job (timed), with the server's memory sampled.
postmaster=$(head -1 "$work/data/postmaster.pid")
server_pids() {  # the postmaster and its children, from /proc (no procps needed)
  local stat line fields
  echo "$postmaster"
  for stat in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null <"$stat" || continue
    read -r -a fields <<<"${line##*) }"  # after the command name: state, ppid, ...
    [[ ${fields[1]} == "$postmaster" ]] && { stat=${stat#/proc/}; echo "${stat%/stat}"; }
  done
}
sample_memory() {  # sums Pss of the postmaster and its children, keeps the largest sum
  local max=0 sum pid pss
  while :; do
    sum=0
    for pid in $(server_pids); do
      pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
      sum=$((sum + ${pss:-0}))
    done
    ((sum > max)) && { max=$sum; echo "$max" >"$work/pss.max"; }
    sleep 0.2
  done
}
sample_memory &
sampler_pid=$!
start=$(date +%s.%N)
"${psql_cmd[@]}" -v csv_dir="$work/csv" -v now_ms="$now_ms" -v cutoff_ms="$cutoff_ms" -v grace_ms="$grace_ms" \
  -f "$here/peer.sql" >"$work/peer.out"
end=$(date +%s.%N)
sleep 0.3
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=
sql_seconds=$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')

# 4. Outcome against the oracle.
"${psql_cmd[@]}" -At -f "$here/outcome.sql" >"$work/outcome.json"
status=0
"$bin_dir/outcome_diff" --expected "$oracle" --actual "$work/outcome.json" >"$work/diff.out" || status=$?

total_seconds=$(awk -v a="$convert_seconds" -v b="$sql_seconds" 'BEGIN {print a + b}')
converter_kb=$(grep -o '[0-9]*$' "$work/convert.time")
postgres_kb=$(cat "$work/pss.max" 2>/dev/null || echo 0)
peak_kb=$((converter_kb > postgres_kb ? converter_kb : postgres_kb))
sed 's/^/peer_convert_/' "$work/convert.out"
grep -o 'dedup_rounds=[0-9]*' "$work/peer.out" | sed 's/^/peer_/' || true
printf 'peer_messages=%s\n' "$messages"
printf 'peer_convert_seconds=%.3f\n' "$convert_seconds"
printf 'peer_sql_seconds=%.3f\n' "$sql_seconds"
printf 'peer_seconds=%.3f (conversion included)\n' "$total_seconds"
printf 'peer_sql_only_events_per_s=%.0f\n' "$(awk -v m="$messages" -v s="$sql_seconds" 'BEGIN {print m / s}')"
printf 'peer_events_per_s=%.0f (end to end: conversion + COPY + SQL + durable commit)\n' \
  "$(awk -v m="$messages" -v s="$total_seconds" 'BEGIN {print m / s}')"
printf 'peer_converter_rss_max_kb=%s\n' "$converter_kb"
printf 'peer_postgres_pss_max_kb=%s\n' "$postgres_kb"
printf 'peer_memory_max_kb=%s\n' "$peak_kb"
sed 's/^oracle=/peer_oracle=/' "$work/diff.out"
if ((status != 0)); then
  echo "run_peer: the peer's outcome differs from the oracle (see the lines above)" >&2
  exit 1
fi
