#!/usr/bin/env bash
# Data-parallel training on this machine's CPU, two measurements:
#   1. the gradient all-reduce (Gloo over loopback, 2 ranks) of DF-128 and LIAE-UD-128's
#      trainable parameters: examples/allreduce.rs, median of ROUNDS;
#   2. `dfl train` samples/s of one rank of batch 2b on all cores against 2 ranks of batch b with
#      the cores split between them (`--nproc 2`), alternating, on facesets extracted from the
#      bundled portraits. Each run first trains 1 iteration (building the model), then times
#      ITERS iterations as a whole command (start-up included, a few seconds).
# Prints one line per measurement; the ratio > 1 means two ranks are faster.
#
# usage: scripts/bench/distributed.sh [iters] [rounds] [archi] [batch per rank]
#        (env: DFL_HOME for the samples)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DFL_HOME=${DFL_HOME:-$HOME/.cache/dfl}
ITERS=${1:-6}
ROUNDS=${2:-2}
ARCHI=${3:-df}
BATCH=${4:-4}
cd "$REPO"
cargo build --release -q
cargo build --release --example allreduce -q
DFL="$REPO/target/release/dfl"

for archi in df liae-ud; do
  "$REPO/target/release/examples/allreduce" "$archi" 128 2 10
done

WS=$(mktemp -d)
trap 'rm -rf "$WS"' EXIT
mkdir -p "$WS/data_src" "$WS/data_dst"
cp "$DFL_HOME"/samples/obama.jpg "$DFL_HOME"/samples/obama2.jpg "$DFL_HOME"/samples/obama3.jpg \
  "$WS/data_src/"
cp "$DFL_HOME"/samples/biden.jpg "$DFL_HOME"/samples/astronaut.png "$WS/data_dst/"
for side in src dst; do "$DFL" -q -w "$WS" extract "$side" --size 192; done

train() { # name, extra flags…
  local name=$1
  shift
  "$DFL" -q -w "$WS" --device cpu train --name "$name" --model "$ARCHI" --resolution 128 "$@"
}
train one --batch-size $((2 * BATCH)) --iterations 1
train two --batch-size "$BATCH" --iterations 1 --nproc 2
seconds() { # runs the command, prints its wall time in seconds
  local start end
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}
for round in $(seq 1 "$ROUNDS"); do
  t1=$(seconds train one --batch-size $((2 * BATCH)) --iterations "$ITERS")
  t2=$(seconds train two --batch-size "$BATCH" --iterations "$ITERS" --nproc 2)
  awk -v r="$round" -v a="$ARCHI" -v n="$ITERS" -v b="$BATCH" -v t1="$t1" -v t2="$t2" 'BEGIN {
    s = n * 2 * b
    printf "round %d %s-128: 1 rank x batch %d: %.2f samples/s (%.1f s); ", r, a, 2 * b, s / t1, t1
    printf "2 ranks x batch %d: %.2f samples/s (%.1f s); 2 ranks / 1 rank: %.2fx\n", b, s / t2, t2, t1 / t2
  }'
done
