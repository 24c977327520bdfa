#!/usr/bin/env bash
# Instructions per event of the engine core: a figure that does not move with the machine's
# noise. Runs bench/engine_throughput under valgrind's callgrind on a fixed generated day
# (default registry of seed 1, 100,000 messages of seed 7, no WAL sync) and counts only the
# pipeline's own threads (the ingest, ledger and commit loops and the dedup sort), not the
# start, the oracle check or RocksDB's background threads. Two runs of one binary differ by about
# 0.001 %.
#
#   bench/instructions.sh [--check | --update] [--build DIR]
#
#   --check    compare with bench/instructions_baseline.txt: exit 1 when the figure is more than
#              the baseline's tolerance above it (a regression), and say so when it is well below
#              (then update the baseline in the commit that earns it)
#   --update   write the figure to bench/instructions_baseline.txt
#   --build    the release build directory (default build/release)
#
# Prints `instructions_per_event=<n>` and, with --check, the baseline and the change.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=print
build=build/release
while (($#)); do
  case $1 in
    --check) mode=check; shift ;;
    --update) mode=update; shift ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "instructions: unknown argument $1" >&2; exit 2 ;;
  esac
done
baseline_file=bench/instructions_baseline.txt
events=100000
command -v valgrind >/dev/null || {
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends valgrind >/dev/null
}
gen=$build/tools/clearing-gen/clearing-gen
engine=$build/bench/engine_throughput
[[ -x $gen && -x $engine ]] || { echo "instructions: build $build first (tools/setup.sh)" >&2; exit 2; }

work=$(mktemp -d /tmp/yrd-instructions.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$gen" registry --out "$work/registry.toml" --seed 1 >/dev/null
"$gen" day --registry "$work/registry.toml" --date 20261127 --events "$events" --seed 7 \
  --out "$work/day.bin" --oracle "$work/oracle.json" >/dev/null 2>&1
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  --toggle-collect='yrd::Pipeline::Run()' --toggle-collect='yrd::Pipeline::LedgerLoop()' \
  --toggle-collect='yrd::Pipeline::CommitLoop()' --toggle-collect='yrd::DedupIndex::Sort()' \
  "$engine" --events "$work/day.bin" --registry "$work/registry.toml" --oracle "$work/oracle.json" --no-sync \
  >"$work/engine.out" 2>"$work/valgrind.err"
grep -q '^oracle=match' "$work/engine.out" || { cat "$work/engine.out"; echo "instructions: the engine disagrees with the oracle" >&2; exit 1; }
collected=$(grep -o 'Collected : [0-9]*' "$work/valgrind.err" | grep -o '[0-9]*$')
per_event=$(( collected / events ))
echo "instructions_per_event=$per_event (callgrind, $events messages, pipeline threads only)"

case $mode in
  print) ;;
  update)
    {
      echo "# instructions per event of bench/instructions.sh; the commit that lowers it updates it"
      echo "instructions_per_event=$per_event"
      echo "tolerance_percent=3"
    } >"$baseline_file"
    echo "instructions: wrote $baseline_file"
    ;;
  check)
    baseline=$(grep -o '^instructions_per_event=[0-9]*' "$baseline_file" | cut -d= -f2)
    tolerance=$(grep -o '^tolerance_percent=[0-9]*' "$baseline_file" | cut -d= -f2)
    change=$(awk -v n="$per_event" -v b="$baseline" 'BEGIN {printf "%+.2f", (n - b) * 100 / b}')
    echo "instructions_baseline=$baseline change=${change}% tolerance=${tolerance}%"
    if awk -v n="$per_event" -v b="$baseline" -v t="$tolerance" 'BEGIN {exit !(n > b * (1 + t / 100))}'; then
      echo "instructions: more than ${tolerance}% above the baseline: a regression of the engine core" >&2
      exit 1
    fi
    if awk -v n="$per_event" -v b="$baseline" -v t="$tolerance" 'BEGIN {exit !(n < b * (1 - t / 100))}'; then
      echo "instructions: well below the baseline: update it (bench/instructions.sh --update) in this commit"
    fi
    ;;
esac
