#!/usr/bin/env bash
# The studio's faceset browser over 10,000 faces (src/studio/faces.rs, assets/studio/faces.js).
#
# `studio_faces_bench` (an ignored test in tests/studio/faces.rs, release build, headless
# Chromium) copies a real faceset (FACESET_DIR, or the faces `dfl extract` finds in the bundled
# Megamind.avi) into a fresh workspace's data_src/aligned under new names until there are COUNT
# faces, each copy with its frame name changed in its metadata (`<frame>_c<copy>`, rewritten
# without re-encoding the pixels): the same picture, but its own content key, so every copy gets
# its own thumbnail and score, as every real face has. `dfl sort src --by blur` fills the score
# cache (the page offers that order). Then it measures:
#   - cold: thumbnails and index removed; navigation to the first screen of thumbnails, the
#     studio's background build rate (faces/s), and navigation to every thumbnail built;
#   - warm, ROUNDS times with a fresh studio and a fresh browser: navigation to the first screen
#     of thumbnails loaded, and to "interactive" (a click on a thumbnail selected it);
#   - scrolling through every face a screen at a time (each screen's thumbnails loaded), the
#     page's long tasks, and the studio's peak resident memory (VmHWM) afterwards.
# Numbers go to docs/performance.md.
#
# usage: scripts/bench/studio_faces.sh [FACESET_DIR] [ROUNDS] [COUNT]
#   FACESET_DIR: an aligned faceset to copy (default: extracted from Megamind.avi).
#   ROUNDS: default 3; COUNT: faces in the copy, default 10000.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FACES=${1:-}
ROUNDS=${2:-3}
COUNT=${3:-10000}
cd "$REPO"
cargo build --release -q
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ -z "$FACES" ]; then
  SAMPLES=${DFL_HOME:-$HOME/.cache/dfl}/samples
  "$REPO/target/release/dfl" -q -w "$TMP/source" extract src --input "$SAMPLES/Megamind.avi"
  FACES="$TMP/source/data_src/aligned"
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
DFL_BENCH_FACESET="$FACES" DFL_BENCH_COUNT=$COUNT DFL_BENCH_ROUNDS=$ROUNDS \
  cargo test --release -q --test studio studio_faces_bench -- --ignored --nocapture 2>&1 |
  grep '^studio_faces'
