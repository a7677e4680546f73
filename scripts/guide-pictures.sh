#!/usr/bin/env bash
# Runs `dfl demo` in a fresh workspace and copies the pictures the user guide shows
# (docs/guide.md) into docs/guide/: the guide's pictures are the demo's own output.
#
# usage: scripts/guide-pictures.sh [WORKSPACE] [demo flags…]   (default /tmp/dfl-guide-demo)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DFL=${DFL:-$REPO/target/release/dfl}
WS=${1:-/tmp/dfl-guide-demo}
shift || true
[ -x "$DFL" ] || { echo "no $DFL: run scripts/setup.sh first" >&2; exit 2; }

"$DFL" --workspace "$WS" demo "$@"
OUT=$REPO/docs/guide
mkdir -p "$OUT"
# Photos as JPEG (the sheet at half size) to keep the repository small.
rm -f "$OUT/src-frame.png" "$OUT/sort-sheet.png"
ffmpeg -y -v error -i "$WS/data_src/00030.png" -q:v 3 "$OUT/src-frame.jpg"
ffmpeg -y -v error -i "$WS/data_src/sort_sheets/sheet_001.png" -vf scale=iw/2:-1 -q:v 3 "$OUT/sort-sheet.jpg"
cp "$WS/model/demo/preview.png" "$OUT/preview.png"
cp "$WS/model/demo/loss.png" "$OUT/loss.png"
cp "$WS/model/demo/eval.png" "$OUT/eval-training.png"
cp "$WS/data_dst/merged/00060.png" "$OUT/merged-frame.png"
cp "$WS/eval/report.png" "$OUT/eval-report.png"
cp "$WS/eval/report.json" "$OUT/eval-report.json"
ls -l "$OUT"
