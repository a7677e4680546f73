#!/usr/bin/env bash
# Measures `dfl extract` against dlib's own Python pipeline (scripts/bench/dlib_extract.py: HOG
# detector with one upsampling, 68-point predictor, similarity warp to 256 px, JPEG 95, one
# process per core) on the same clips: frames/s end to end (start-up included), median over
# rounds, run alternately in fresh temp folders; frames and faces each tool finds; and how well
# dfl's 68 source landmarks agree with dlib's (median NME over faces both found, normalised by
# dlib's outer-eye-corner distance, with a one-frame-shifted mapping as a sanity check).
# Clips: carphone_pristine.mp4 (176×144), Megamind.avi (720×528) and a 240-line scale of it
# (328×240: the aspect is kept, so faces are not stretched);
# start-up dominates short clips, so each is also looped to at least 800 frames: the looped
# ratio is the steady one. Output: one markdown table per clip for docs/performance.md.
#
# usage: scripts/bench/extract_vs_dlib.sh [rounds=3] [extra dfl extract flags…]
#        (env: DFL=path/to/dfl, DFL_HOME; needs the ffmpeg CLI and python3)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DFL=${DFL:-$REPO/target/release/dfl}
export DFL_HOME=${DFL_HOME:-$HOME/.cache/dfl}
ROUNDS=${1:-3}
[ $# -gt 0 ] && shift
LOOP_MIN_FRAMES=800
BENCH=$REPO/scripts/bench/dlib_extract.py
PY=$DFL_HOME/venv/bin/python

[ -x "$DFL" ] || (cd "$REPO" && cargo build --release)
[ -x "$PY" ] || python3 -m venv "$DFL_HOME/venv"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Prints the number of video packets (= frames) of a clip.
frame_count() {
  ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets \
    -of csv=p=0 "$1"
}

# Writes clip $1 looped to at least LOOP_MIN_FRAMES frames as $2 (stream copy, else x264).
make_looped() {
  local n k
  n=$(frame_count "$1")
  k=$(((LOOP_MIN_FRAMES + n - 1) / n - 1))
  if ! ffmpeg -v error -y -stream_loop "$k" -i "$1" -map 0:v:0 -c copy "$2" ||
    [ "$(frame_count "$2")" -ne $((n * (k + 1))) ]; then
    ffmpeg -v error -y -stream_loop "$k" -i "$1" -map 0:v:0 -c:v libx264 -crf 18 -pix_fmt yuv420p "$2"
  fi
}

# Prints the median of its numeric arguments.
median() {
  printf '%s\n' "$@" | sort -g |
    awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

now() { date +%s.%N; }

# Runs dlib on clip $1 into folder $2; prints "frames with_face faces seconds steady_seconds".
run_dlib() {
  local start end out
  start=$(now)
  out=$("$PY" "$BENCH" extract "$1" "$2/faces" "$2/dlib.jsonl")
  end=$(now)
  sed -E 's/[a-z_]+=//g' <<<"$out" |
    awk -v s="$start" -v e="$end" '{ printf "%d %d %d %.3f %.3f\n", $1, $2, $3, e - s, $5 }'
}

# Runs dfl on clip $1 in workspace $2 (plus the extra flags); prints
# "frames with_face faces seconds".
run_dfl() {
  local clip=$1 ws=$2 start end
  shift 2
  start=$(now)
  "$DFL" -q --workspace "$ws" extract src --input "$clip" "$@"
  end=$(now)
  local log=$ws/data_src/extract.jsonl
  local faces
  faces=$(find "$ws/data_src/aligned" -type f | wc -l)
  awk -v f="$faces" -v s="$start" -v e="$end" '
    !/"faces":\[\]/ { wf++ } END { printf "%d %d %d %.3f\n", NR, wf, f, e - s }' "$log"
}

# Benchmarks clip $1 (label $2) for ROUNDS rounds; prints a table row. With $3 = keep, leaves
# round 1's outputs in $tmp/keep for the landmark comparison.
bench_clip() {
  local clip=$1 label=$2 keep=${3:-} r d_fps=() d_steady=() f_fps=() d f dir
  for ((r = 1; r <= ROUNDS; r++)); do
    dir=$tmp/round
    rm -rf "$dir" && mkdir -p "$dir/ws"
    if ((r % 2)); then
      d=$(run_dlib "$clip" "$dir")
      f=$(run_dfl "$clip" "$dir/ws" "${EXTRA[@]}")
    else
      f=$(run_dfl "$clip" "$dir/ws" "${EXTRA[@]}")
      d=$(run_dlib "$clip" "$dir")
    fi
    read -r dn dwf dfc ds dss <<<"$d"
    read -r fn fwf ffc fs <<<"$f"
    d_fps+=("$(awk -v n="$dn" -v t="$ds" 'BEGIN { print n / t }')")
    d_steady+=("$(awk -v n="$dn" -v t="$dss" 'BEGIN { print n / t }')")
    f_fps+=("$(awk -v n="$fn" -v t="$fs" 'BEGIN { print n / t }')")
    if ((r == 1)) && [ "$keep" = keep ]; then
      rm -rf "$tmp/keep" && mv "$dir" "$tmp/keep"
    fi
  done
  rm -rf "$tmp/round"
  [ "$dn" -eq "$fn" ] || echo "warning: $label: dfl read $fn frames, dlib $dn" >&2
  awk -v l="$label" -v n="$fn" -v fwf="$fwf" -v dwf="$dwf" -v ffc="$ffc" -v dfc="$dfc" \
    -v ff="$(median "${f_fps[@]}")" -v df="$(median "${d_fps[@]}")" \
    -v ds="$(median "${d_steady[@]}")" 'BEGIN {
      printf "| %s | %d | %d / %d | %d / %d | %.1f | %.1f (%.1f after load) | %.2f× |\n",
        l, n, fwf, dwf, ffc, dfc, ff, df, ds, ff / df }'
}

# Prints the landmark agreement of the kept round-1 outputs.
landmark_line() {
  local k=$tmp/keep same off
  "$DFL" -q -w "$k/ws" faceset info "$k"/ws/data_src/aligned/* >"$k/info.jsonl"
  same=$("$PY" "$BENCH" compare "$k/dlib.jsonl" "$k/info.jsonl")
  off=$("$PY" "$BENCH" compare "$k/dlib.jsonl" "$k/info.jsonl" --shift 1)
  awk -v s="$same" -v o="$off" 'BEGIN {
      split(s, a, /[ =]/); split(o, b, /[ =]/)
      printf "landmarks, dfl vs dlib: %d faces matched in %d frames, NME median %s (p90 %s); ", a[2], a[4], a[6], a[8]
      printf "frames shifted by one (sanity check): median %s (p90 %s)\n", b[6], b[8] }'
}

EXTRA=("$@")
small=$tmp/Megamind_240p.mp4
ffmpeg -v error -i "$DFL_HOME/samples/Megamind.avi" -an -fps_mode passthrough -vf scale=-2:240 -c:v libx264 \
  -crf 18 -pix_fmt yuv420p "$small"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "dfl: $DFL${EXTRA[*]:+ ${EXTRA[*]}}; dlib: $("$PY" -c 'import dlib; print(dlib.__version__)'), HOG upsample 1, $(nproc) processes; $ROUNDS rounds, median frames/s end to end"
for clip in "$DFL_HOME/samples/carphone_pristine.mp4" "$DFL_HOME/samples/Megamind.avi" "$small"; do
  name=$(basename "$clip")
  size=$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=s=x:p=0 "$clip" | sed s/x/×/)
  looped=$tmp/looped.${name##*.}
  make_looped "$clip" "$looped"
  echo
  echo "#### $name ($size)"
  echo
  echo "| run | frames | frames with a face (dfl / dlib) | faces (dfl / dlib) | dfl frames/s | dlib frames/s | dfl / dlib |"
  echo "|---|---|---|---|---|---|---|"
  bench_clip "$clip" original keep
  bench_clip "$looped" "looped ×$(($(frame_count "$looped") / $(frame_count "$clip")))"
  echo
  landmark_line
  rm -f "$looped"
done
