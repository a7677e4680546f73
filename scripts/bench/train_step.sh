#!/usr/bin/env bash
# Times SAEHD training steps at batch 8 on random tensors: dfl (tch, release) and the same step
# in plain PyTorch (scripts/bench/torch_step.py), on this machine. Numbers go to
# docs/performance.md.
#
# usage: scripts/bench/train_step.sh [steps]        (env: DFL_HOME for the venv)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DFL_HOME=${DFL_HOME:-$HOME/.cache/dfl}
STEPS=${1:-3}
cd "$REPO"
cargo build --release --example train_step -q
for spec in "df 128" "liae-ud 128"; do
  set -- $spec
  "$REPO/target/release/examples/train_step" "$1" "$2" 8 "$STEPS"
  "$DFL_HOME/venv/bin/python" scripts/bench/torch_step.py "$1" "$2" 8 "$STEPS"
done
