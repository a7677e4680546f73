#!/usr/bin/env bash
# Thumbnail cache speed (src/faceset/thumbs.rs) on a faceset of 10,000 faces: a real faceset
# is copied under new names until there are COUNT faces, each copy with a few bytes after the
# image's end (the same picture, its own content key, as every real face has). Then
# `bench_thumbs` (an ignored test in thumbs.rs, release build) measures: a cold build (faces/s,
# ROUNDS times, from an empty cache), the warm listing and lookup of every face, a build with
# nothing to do, serving every thumbnail, the size of the cache, a lookup after renaming every
# face (as a sort does) and one without an index. Numbers go to docs/performance.md.
#
# usage: scripts/bench/thumbs.sh FACESET_DIR [ROUNDS] [COUNT]
#   FACESET_DIR: an aligned faceset (e.g. a demo workspace's data_dst/aligned); it is copied.
#   ROUNDS: default 3; COUNT: faces in the copy, default 10000.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FACES=${1:?usage: scripts/bench/thumbs.sh FACESET_DIR [ROUNDS] [COUNT]}
ROUNDS=${2:-3}
COUNT=${3:-10000}
cd "$REPO"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir "$TMP/aligned"

originals=()
for f in "$FACES"/*; do
  case "${f,,}" in *.jpg | *.jpeg | *.png) originals+=("$f") ;; esac
done
[ ${#originals[@]} -gt 0 ] || { echo "no .jpg/.png faces in $FACES" >&2; exit 2; }
n=0
copy=0
while [ $n -lt "$COUNT" ]; do
  for f in "${originals[@]}"; do
    [ $n -lt "$COUNT" ] || break
    name=$(basename "$f")
    out="$TMP/aligned/${name%.*}_c$(printf %03d $copy).${name##*.}"
    cp "$f" "$out"
    printf 'dfl-bench-copy-%d' "$n" >>"$out"
    n=$((n + 1))
  done
  copy=$((copy + 1))
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "faceset: $COUNT faces from the ${#originals[@]} of $FACES ($(du -sh "$TMP/aligned" | cut -f1)," \
  "$(file -b "${originals[0]}" | grep -o '[0-9]*x[0-9]*' | tail -1) $(file -b "${originals[0]}" | cut -d' ' -f1))"
# Faces written less than 2 s ago are read every time (thumbs::RACY_SECS): let the copies settle.
sleep 3
DFL_BENCH_FACESET="$TMP/aligned" DFL_BENCH_CACHE="$TMP/thumbs" DFL_BENCH_ROUNDS=$ROUNDS \
  cargo test --release -q --lib bench_thumbs -- --ignored --nocapture 2>&1 | grep '^thumbs'
