#!/usr/bin/env bash
# `dfl bench` with and without --channels-last, alternating for several rounds on this machine,
# and the speed-up per round and config (NCHW ms/it ÷ channels-last ms/it, > 1 = channels-last
# faster). Compare ratios from the same round: absolute times move with the machine's load.
# Numbers go to docs/performance.md ("Speed options").
#
# usage: scripts/bench/channels_last.sh [steps] [rounds]    (env: DFL_DEVICE, default cpu)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STEPS=${1:-3}
ROUNDS=${2:-2}
DEVICE=${DFL_DEVICE:-cpu}
cd "$REPO"
cargo build --release --bin dfl -q
DFL="$REPO/target/release/dfl"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
ms() { # file config -> ms/it
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(next(c["ms_per_iteration"] for c in d["configs"] if c["name"]==sys.argv[2]))' "$1" "$2"
}
for round in $(seq 1 "$ROUNDS"); do
  for layout in false true; do
    "$DFL" --device "$DEVICE" bench --config df-128 --config liae-ud-128 --steps "$STEPS" \
      --warmup 1 --channels-last "$layout" --json > "$OUT/$layout.json" 2>/dev/null
  done
  for config in df-128 liae-ud-128; do
    nchw=$(ms "$OUT/false.json" "$config")
    nhwc=$(ms "$OUT/true.json" "$config")
    echo "round $round $config: NCHW $nchw ms/it, channels-last $nhwc ms/it," \
      "speed-up $(awk -v a="$nchw" -v b="$nhwc" 'BEGIN { printf "%.2f", a / b }')x"
  done
done
