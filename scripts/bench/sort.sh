#!/usr/bin/env bash
# Measures `dfl sort` speed per method on an extracted sample: faces/s end to end (start-up,
# reading every face, measuring, renaming) with the release binary. "cold" has no score cache,
# "warm" is a second sort with the cache the first one wrote. Every sort is undone before the
# next. Numbers go to docs/performance.md.
#
# usage: scripts/bench/sort.sh [CLIP] [extract flags…]   (default Megamind.avi; env: DFL, DFL_HOME)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DFL=${DFL:-$REPO/target/release/dfl}
DFL_HOME=${DFL_HOME:-$HOME/.cache/dfl}
CLIP=${1:-Megamind.avi}
shift || true
[ -x "$DFL" ] || { echo "no $DFL: run scripts/setup.sh first" >&2; exit 2; }

ws=$(mktemp -d)
trap 'rm -rf "$ws"' EXIT
"$DFL" -q --workspace "$ws" extract src --input "$DFL_HOME/samples/$CLIP" "$@"
faces=$(find "$ws/data_src/aligned" -type f | wc -l)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "faceset: $CLIP, $faces faces ($(identify -format '%w' "$(find "$ws/data_src/aligned" -type f | head -1)" 2>/dev/null || echo '?') px)"

run() { # prints seconds of one sort
  local start end
  start=$(date +%s.%N)
  "$DFL" -q --workspace "$ws" sort src "$@"
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }'
}

printf "%-12s %9s %11s %9s %11s\n" method "cold s" "cold f/s" "warm s" "warm f/s"
for m in blur motion-blur face-yaw face-pitch source-size hist hist-dissim brightness hue black \
  origname oneface best identity; do
  rm -f "$ws/data_src/sort.scores.jsonl"
  cold=$(run --by "$m")
  "$DFL" -q --workspace "$ws" sort src --undo || true
  warm=$(run --by "$m")
  "$DFL" -q --workspace "$ws" sort src --undo || true
  awk -v m="$m" -v n="$faces" -v c="$cold" -v w="$warm" \
    'BEGIN { printf "%-12s %9.2f %11.0f %9.2f %11.0f\n", m, c, n / c, w, n / w }'
done
sheet=$(run --by face-yaw --sheet)
"$DFL" -q --workspace "$ws" sort src --undo || true
awk -v n="$faces" -v s="$sheet" 'BEGIN { printf "face-yaw with --sheet: %.2f s (%.0f faces/s)\n", s, n / s }'
