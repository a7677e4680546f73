#!/usr/bin/env bash
# Measures `dfl extract` speed on the bundled clips: frames/s end to end (start-up included)
# with the release binary, default settings (whole_face, 256 px, jpg). Numbers go to
# docs/performance.md.
#
# usage: scripts/bench/extract.sh [extra extract flags…]     (env: DFL=path/to/dfl, DFL_HOME)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DFL=${DFL:-$REPO/target/release/dfl}
DFL_HOME=${DFL_HOME:-$HOME/.cache/dfl}
[ -x "$DFL" ] || { echo "no $DFL: run scripts/setup.sh first" >&2; exit 2; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for clip in carphone_pristine.mp4 Megamind.avi; do
  ws=$(mktemp -d)
  start=$(date +%s.%N)
  "$DFL" -q --workspace "$ws" extract src --input "$DFL_HOME/samples/$clip" "$@"
  end=$(date +%s.%N)
  frames=$(wc -l <"$ws/data_src/extract.jsonl")
  with_face=$(grep -vc '"faces":\[\]' "$ws/data_src/extract.jsonl" || true)
  faces=$(find "$ws/data_src/aligned" -type f | wc -l)
  awk -v c="$clip" -v n="$frames" -v wf="$with_face" -v f="$faces" -v s="$start" -v e="$end" \
    'BEGIN { t = e - s; printf "%-22s %4d frames (%d with a face, %d faces) in %6.2f s = %6.1f frames/s\n", c, n, wf, f, t, n / t }'
  rm -rf "$ws"
done
