#!/usr/bin/env bash
# engine_throughput with 1 and with N ledger shards on the same generated day: prints both
# figures, and fails unless the file set the shards merge is byte for byte the one-shard set.
#   bench/shards.sh [--build DIR] [--events N] [--shards N]
set -euo pipefail
build=build/release
events=2000000
shards=2
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --events) events=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    *) echo "usage: bench/shards.sh [--build DIR] [--events N] [--shards N]" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$build/tools/clearing-gen/clearing-gen" registry --out "$work/registry.toml" --seed 1 >/dev/null
"$build/tools/clearing-gen/clearing-gen" day --registry "$work/registry.toml" --date 20261127 --events "$events" \
  --seed 2 --out "$work/day.bin" --oracle "$work/oracle.json" >/dev/null
for n in 1 "$shards"; do
  echo "== $n shard(s)"
  "$build/bench/engine_throughput" --events "$work/day.bin" --registry "$work/registry.toml" \
    --oracle "$work/oracle.json" --shards "$n" --close --store "$work/store-$n"
done
diff -r "$work/store-1.files/20261127" "$work/store-$shards.files/20261127" >/dev/null ||
  { echo "the $shards shards' merged file set differs from one shard's" >&2; exit 1; }
echo "the $shards shards' merged file set is byte for byte one shard's"
