#!/usr/bin/env bash
# Measures `dfl merge` at 720p: the Megamind clip scaled to 1280×720 as dst, the Obama
# portraits as src, a small DF model trained for a few iterations (speed does not depend on
# how well it is trained). Prints frames/s end to end (release binary, start-up included),
# the video assembly alone, and the CPU post-processing apart from the network
# (examples/merge_rate.rs). Numbers go to docs/performance.md.
#
# usage: scripts/bench/merge.sh [RESOLUTION]     (env: DFL=path/to/dfl, DFL_HOME)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DFL=${DFL:-$REPO/target/release/dfl}
DFL_HOME=${DFL_HOME:-$HOME/.cache/dfl}
RES=${1:-64}
[ -x "$DFL" ] || { echo "no $DFL: run scripts/setup.sh first" >&2; exit 2; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
ws=$(mktemp -d)
trap 'rm -rf "$ws"' EXIT
mkdir -p "$ws/data_src"
cp "$DFL_HOME"/samples/obama*.jpg "$ws/data_src/"
ffmpeg -v error -i "$DFL_HOME/samples/Megamind.avi" -vf scale=1280:720 -c:v libx264 -crf 18 \
  -c:a aac "$ws/data_dst.mp4"
"$DFL" -q -w "$ws" extract src
"$DFL" -q -w "$ws" extract dst
"$DFL" -q -w "$ws" --device cpu train --name m --model df --resolution "$RES" --ae-dims 64 \
  --e-dims 16 --d-dims 16 --d-mask-dims 16 --batch-size 4 --iterations 5

frames=$(ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=nb_read_packets \
  -of csv=p=0 "$ws/data_dst.mp4")
timed() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN { print e - s }'; }
t_merge=$(timed "$DFL" -q -w "$ws" --device cpu merge --no-video)
t_video=$(timed "$DFL" -q -w "$ws" --device cpu merge)
merged=$(find "$ws/data_dst/merged" -name '*.png' | wc -l)
result=$(ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=nb_read_packets \
  -of csv=p=0 "$ws/result.mp4")
audio=$(ffprobe -v error -select_streams a -show_entries stream=codec_name -of csv=p=0 "$ws/result.mp4")
awk -v n="$frames" -v a="$t_merge" -v b="$t_video" -v r="$RES" 'BEGIN {
  printf "dfl merge, %d frames 1280x720, DF-%d: %6.2f s = %5.1f frames/s (frames only)\n", n, r, a, n / a
  printf "result.mp4 (libx264 crf 18 medium, audio copied):    %6.2f s = %5.1f frames/s\n", b, n / b }'
echo "source frames $frames, merged PNGs $merged, result.mp4 frames $result, audio: ${audio:-none}"
cargo run -q --release --manifest-path "$REPO/Cargo.toml" --example merge_rate -- "$ws" m "$frames"
