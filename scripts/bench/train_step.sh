#!/usr/bin/env bash
# Times SAEHD training steps at batch 8 on random tensors: dfl (tch, release) and the same step
# in plain PyTorch (scripts/bench/torch_step.py), on this machine, alternating the two for
# several rounds and printing dfl's speed-up (PyTorch s/step ÷ dfl s/step, > 1 = dfl faster)
# per round and model. Compare ratios from the same round: the absolute times move with the
# machine's load. Numbers go to docs/performance.md ("Training step").
#
# usage: scripts/bench/train_step.sh [steps] [rounds]      (env: DFL_HOME for the venv)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DFL_HOME=${DFL_HOME:-$HOME/.cache/dfl}
STEPS=${1:-3}
ROUNDS=${2:-2}
cd "$REPO"
cargo build --release --example train_step -q
s_per_step() { sed -n 's/.*: \([0-9.]*\) s\/step.*/\1/p'; }
for round in $(seq 1 "$ROUNDS"); do
  for spec in "df 128" "liae-ud 128"; do
    set -- $spec
    ours=$("$REPO/target/release/examples/train_step" "$1" "$2" 8 "$STEPS" 2>/dev/null | tail -1)
    theirs=$("$DFL_HOME/venv/bin/python" scripts/bench/torch_step.py "$1" "$2" 8 "$STEPS" 2>/dev/null | tail -1)
    echo "$ours"
    echo "$theirs"
    ratio=$(echo "$(echo "$theirs" | s_per_step) $(echo "$ours" | s_per_step)" | awk '{printf "%.2f", $1 / $2}')
    echo "round $round $1@$2: dfl speed-up over PyTorch ${ratio}x"
  done
done
