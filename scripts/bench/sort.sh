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
echo "faceset: $CLIP, $faces faces (extract defaults: whole_face, 256 px, jpg)"

run() { # prints seconds of one sort
  local start end
  start=$(date +%s.%N)
  "$DFL" -q --workspace "$ws" sort src "$@"
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }'
}

# Every dfl command pays the same start-up (loading libtorch); measure it to report the sort's
# own rate beside the end-to-end one.
start=$(date +%s.%N)
for _ in 1 2 3; do "$DFL" -q --workspace "$ws" status >/dev/null; done
startup=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.3f", (e - s) / 3 }')
echo "start-up of any dfl command: $startup s"
printf "%-12s %8s %9s %12s %8s %9s %12s\n" method "cold s" "cold f/s" "net cold f/s" "warm s" "warm f/s" "net warm f/s"
for m in blur motion-blur face-yaw face-pitch source-size hist hist-dissim brightness hue black \
  origname oneface best identity; do
  rm -f "$ws/data_src/sort.scores.jsonl"
  cold=$(run --by "$m")
  "$DFL" -q --workspace "$ws" sort src --undo 2>/dev/null || true # (nothing moved: no undo)
  warm=$(run --by "$m")
  "$DFL" -q --workspace "$ws" sort src --undo 2>/dev/null || true
  awk -v m="$m" -v n="$faces" -v c="$cold" -v w="$warm" -v u="$startup" \
    'BEGIN { printf "%-12s %8.2f %9.0f %12.0f %8.2f %9.0f %12.0f\n", m, c, n / c, n / (c - u), w, n / w, n / (w - u) }'
done
sheet=$(run --by face-yaw --sheet)
"$DFL" -q --workspace "$ws" sort src --undo || true
awk -v n="$faces" -v s="$sheet" 'BEGIN { printf "face-yaw with --sheet: %.2f s (%.0f faces/s)\n", s, n / s }'
