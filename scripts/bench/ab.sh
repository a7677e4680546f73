#!/usr/bin/env bash
# Runs one bench script with two dfl binaries in turn (A B A B …), so a change is compared
# with what it replaces on the same noisy machine in the same minutes. Each run's output is
# prefixed with its binary's label. Numbers go to docs/performance.md.
#
# usage: scripts/bench/ab.sh A_DFL B_DFL ROUNDS BENCH [BENCH ARGS…]
#   e.g. scripts/bench/ab.sh /tmp/dfl-before target/release/dfl 2 extract.sh
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,7p "$0" >&2; exit 2; }
A=$1 B=$2 ROUNDS=$3 BENCH=$4
shift 4
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for bin in "$A" "$B"; do
  [ -x "$bin" ] || { echo "$bin is not an executable dfl" >&2; exit 2; }
done
[ -f "$HERE/$BENCH" ] || { echo "no bench $HERE/$BENCH" >&2; exit 2; }
for round in $(seq 1 "$ROUNDS"); do
  for label in A B; do
    if [ "$label" = A ]; then bin=$A; else bin=$B; fi
    DFL=$bin bash "$HERE/$BENCH" "$@" 2>&1 | sed "s/^/round $round $label: /"
  done
done
