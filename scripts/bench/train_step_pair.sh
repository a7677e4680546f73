#!/usr/bin/env bash
# Times SAEHD training steps of dfl and of plain PyTorch (scripts/bench/torch_step.py) *at the
# same time*, one libtorch thread each, each pinned to its own core, swapping the cores every
# round. On a machine whose speed drifts by ±30 % from minute to minute (a shared host), two
# runs side by side see the same drift, so their ratio holds where alternating runs (what
# scripts/bench/train_step.sh does, with all cores each) do not. Prints dfl's speed-up
# (PyTorch s/step ÷ dfl s/step, > 1 = dfl faster) per round and model. Needs 2 free cores.
#
# usage: scripts/bench/train_step_pair.sh [steps] [rounds]      (env: DFL_HOME for the venv)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DFL_HOME=${DFL_HOME:-$HOME/.cache/dfl}
STEPS=${1:-3}
ROUNDS=${2:-2}
cd "$REPO"
cargo build --release --example train_step -q
export OMP_NUM_THREADS=1
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
s_per_step() { sed -n 's/.*: \([0-9.]*\) s\/step.*/\1/p' "$1" | tail -1; }
for round in $(seq 1 "$ROUNDS"); do
  ours_core=$(( (round + 1) % 2 ))
  theirs_core=$(( round % 2 ))
  for spec in "df 128" "liae-ud 128"; do
    set -- $spec
    taskset -c "$ours_core" "$REPO/target/release/examples/train_step" "$1" "$2" 8 "$STEPS" \
      > "$OUT/ours" 2>/dev/null &
    taskset -c "$theirs_core" "$DFL_HOME/venv/bin/python" scripts/bench/torch_step.py \
      "$1" "$2" 8 "$STEPS" > "$OUT/theirs" 2>/dev/null &
    wait
    tail -1 "$OUT/ours"
    tail -1 "$OUT/theirs"
    ratio=$(awk -v a="$(s_per_step "$OUT/theirs")" -v b="$(s_per_step "$OUT/ours")" \
      'BEGIN { printf "%.2f", a / b }')
    echo "round $round $1@$2 (dfl on core $ours_core): dfl speed-up over PyTorch ${ratio}x"
  done
done
