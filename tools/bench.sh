#!/usr/bin/env bash
# End-to-end benchmark: the engine against a PostgreSQL 15 peer doing the same job, on one
# generated day, in the same run. See bench/README.md.
#
#   tools/bench.sh [--events N] [--short] [--seed S]
#
#   --events N   messages in the generated day (default 2000000)
#   --short      200000 messages (the CI run)
#   --seed S     generator seed (default 1)
#
# Steps: tools/setup.sh (packages and release build); a registry and a day from clearing-gen with
# its oracle; the rules check (bench/pg/sequential_rules.jsonl through both sides); (a)
# bench/engine_throughput and (b) bench/pg/run_peer.sh on the day; both outcomes compared with the
# oracle; then the engine core's instructions per event (bench/instructions.sh) against the
# committed baseline. Prints events/s and peak memory of each side and the ratio engine/peer; the
# last line is `ratio_vs_postgres=<number>`. Exit 1 when either side disagrees with the oracle, the
# engine is slower than the peer, or its instructions per event rose past the baseline's
# tolerance; 2 on a usage or set-up error.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

events=2000000
seed=1
while (($#)); do
  case $1 in
    --events) events=$2; shift 2 ;;
    --short) events=200000; shift ;;
    --seed) seed=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $events =~ ^[0-9]+$ && $events -gt 0 ]] || { echo "bench: --events must be a positive number" >&2; exit 2; }

echo "== setup =="
tools/setup.sh
build=$root/build/release
gen=$build/tools/clearing-gen/clearing-gen
[[ -x /usr/bin/time ]] || {
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends time >/dev/null
}

work=$(mktemp -d /tmp/yrd-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
status=0

echo "== dataset: $events messages, seed $seed =="
"$gen" registry --out "$work/registry.toml" --seed "$seed"
"$gen" day --registry "$work/registry.toml" --date 20261127 --events "$events" --seed "$seed" \
  --out "$work/day.bin" --oracle "$work/oracle.json"

# The sequential rules (a rejected refund or cancellation does not register its id, refunds are
# cumulative in offset order, a cancellation counts once) on a hand-written day whose outcome was
# worked out by hand. It names participants of the default registry of seed 1.
echo "== rules check: bench/pg/sequential_rules.jsonl =="
"$gen" registry --out "$work/rules-registry.toml" >/dev/null
"$gen" json --out "$work/rules.bin" <bench/pg/sequential_rules.jsonl
if "$build/bench/engine_throughput" --events "$work/rules.bin" --registry "$work/rules-registry.toml" \
     --oracle bench/pg/sequential_rules.oracle.json >"$work/rules-engine.out"; then
  echo "engine: rules match"
else
  grep -e mismatch -e oracle= "$work/rules-engine.out" || true
  echo "engine: rules DIFFER"
  status=1
fi
if bench/pg/run_peer.sh --events "$work/rules.bin" --registry "$work/rules-registry.toml" \
     --oracle bench/pg/sequential_rules.oracle.json >"$work/rules-peer.out"; then
  echo "peer: rules match ($(grep -o 'dedup_rounds=[0-9]*' "$work/rules-peer.out"))"
else
  grep -e mismatch -e oracle= "$work/rules-peer.out" || true
  echo "peer: rules DIFFER"
  status=1
fi

echo "== (a) engine: bench/engine_throughput =="
engine_ok=1
/usr/bin/time -f 'engine_rss_max_kb=%M' -o "$work/engine.time" \
  "$build/bench/engine_throughput" --events "$work/day.bin" --registry "$work/registry.toml" \
  --oracle "$work/oracle.json" >"$work/engine.out" 2>&1 || engine_ok=0
cat "$work/engine.out"
engine_eps=$(grep -o 'events_per_s=[0-9]*' "$work/engine.out" | head -1 | cut -d= -f2 || true)
engine_kb=$(grep -o 'engine_rss_max_kb=[0-9]*' "$work/engine.time" | cut -d= -f2 || true)
grep -q '^oracle=match' "$work/engine.out" || engine_ok=0

echo "== (b) PostgreSQL peer: bench/pg/run_peer.sh =="
peer_ok=1
bench/pg/run_peer.sh --events "$work/day.bin" --registry "$work/registry.toml" --oracle "$work/oracle.json" \
  >"$work/peer.out" 2>&1 || peer_ok=0
cat "$work/peer.out"
peer_eps=$(grep -o '^peer_events_per_s=[0-9]*' "$work/peer.out" | cut -d= -f2 || true)
peer_sql_eps=$(grep -o '^peer_sql_only_events_per_s=[0-9]*' "$work/peer.out" | cut -d= -f2 || true)
peer_kb=$(grep -o '^peer_memory_max_kb=[0-9]*' "$work/peer.out" | cut -d= -f2 || true)
grep -q '^peer_oracle=match' "$work/peer.out" || peer_ok=0

echo "== summary ($events messages, same data, same run) =="
printf 'engine_events_per_s=%s (pipeline: decode, validate, dedup, net, synced RocksDB commits)\n' "${engine_eps:-none}"
printf 'peer_events_per_s=%s (events_to_csv + COPY + SQL + durable COMMIT; SQL alone: %s)\n' \
  "${peer_eps:-none}" "${peer_sql_eps:-none}"
printf 'engine_memory_max_kb=%s (peak RSS)\n' "${engine_kb:-none}"
printf 'peer_memory_max_kb=%s (larger of the converter peak RSS and the summed PSS of the PostgreSQL processes)\n' \
  "${peer_kb:-none}"
((engine_ok)) && echo "engine_oracle=match" || { echo "engine_oracle=MISMATCH or failure (see above)"; status=1; }
((peer_ok)) && echo "peer_oracle=match" || { echo "peer_oracle=MISMATCH or failure (see above)"; status=1; }
if [[ -n $engine_eps && -n $peer_eps && $peer_eps -gt 0 ]]; then
  ratio=$(awk -v e="$engine_eps" -v p="$peer_eps" 'BEGIN {printf "%.2f", e / p}')
  if awk -v e="$engine_eps" -v p="$peer_eps" 'BEGIN {exit !(e < p)}'; then
    echo "bench: the engine is slower than the PostgreSQL peer in this run"
    status=1
  fi
else
  ratio=0
  status=1
fi
echo "== instructions per event of the engine core (callgrind, against bench/instructions_baseline.txt) =="
bash bench/instructions.sh --check --build "$build" || status=1
echo "ratio_vs_postgres=$ratio"
exit "$status"
