#!/usr/bin/env bash
# XSeg speed on this machine: the training step and the batched forward rate of the network
# (random tensors, `bench_xseg` in src/model/xseg/net.rs), then `dfl xseg apply` end to end on a
# faceset (decode, segment, encode, rewrite every face), at 64 px and 256 px. apply's faces/s
# over the forward's is the share of the network's own rate apply reaches. At 64 px apply also
# runs on the faceset copied 8 times over (a faceset of realistic size, where the first pass's
# warm-up and the last pass's padding weigh less). Numbers go to docs/performance.md.
#
# usage: scripts/bench/xseg.sh FACESET_DIR [rounds]
#   FACESET_DIR: an aligned faceset (e.g. a demo workspace's data_dst/aligned); it is copied.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FACES=${1:?usage: scripts/bench/xseg.sh FACESET_DIR [rounds]}
ROUNDS=${2:-3}
cd "$REPO"
cargo build --release -q
DFL="$REPO/target/release/dfl"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
apply_rounds() { # workspace resolution
  local ws=$1 res=$2 n round start mid end
  n=$(ls "$ws/data_dst/aligned" | wc -l)
  for round in $(seq "$ROUNDS"); do
    "$DFL" -q -w "$ws" xseg remove dst
    start=$(date +%s.%N)
    "$DFL" -q -w "$ws" --device cpu xseg apply dst --name bench
    mid=$(date +%s.%N)
    # A rerun finds every face done: what start-up costs (libtorch, the faceset, the model).
    "$DFL" -q -w "$ws" --device cpu xseg apply dst --name bench
    end=$(date +%s.%N)
    awk -v n="$n" -v s="$start" -v m="$mid" -v e="$end" -v r="$res" -v k="$round" \
      'BEGIN { printf "dfl xseg apply %spx: %d faces in %.2f s = %.1f faces/s; start-up %.2f s; net of start-up %.1f faces/s (round %d)\n", r, n, m - s, n / (m - s), e - m, n / ((m - s) - (e - m)), k }'
  done
}
for res in 64 256; do
  DFL_BENCH_RES=$res DFL_BENCH_ROUNDS=$ROUNDS \
    cargo test --release -q --lib bench_xseg -- --ignored --nocapture 2>&1 | grep '^xseg'
  ws="$TMP/ws$res"
  mkdir -p "$ws/data_dst"
  cp -r "$FACES" "$ws/data_dst/aligned"
  # A model to apply: one labelled face and one step are enough for timing.
  first=$(ls "$ws/data_dst/aligned" | head -1)
  printf '{"version":1,"faces":[{"file":"%s","size":256,"polys":[{"kind":"include","points":[[64,64],[192,64],[192,192],[64,192]]}]}]}' \
    "$first" > "$TMP/labels.json"
  "$DFL" -q -w "$ws" xseg labels import --side dst "$TMP/labels.json"
  "$DFL" -q -w "$ws" --device cpu xseg train --name bench --resolution $res --iterations 1
  apply_rounds "$ws" "$res"
  if [ "$res" = 64 ]; then
    originals=("$ws"/data_dst/aligned/*)
    for copy in 1 2 3 4 5 6 7; do
      for f in "${originals[@]}"; do
        base=${f%.*}
        cp "$f" "${base}_copy$copy.${f##*.}"
      done
    done
    apply_rounds "$ws" "$res"
  fi
done
