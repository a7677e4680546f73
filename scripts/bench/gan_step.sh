#!/usr/bin/env bash
# Times a SAEHD training step with GAN and true face off and on (DF-128 batch 8 and the CPU
# demo model), dfl (tch, release) beside the same step in plain PyTorch
# (scripts/bench/torch_gan_step.py), on this machine. Numbers go to docs/performance.md.
#
# usage: scripts/bench/gan_step.sh [rounds]        (env: DFL_HOME for the venv)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DFL_HOME=${DFL_HOME:-$HOME/.cache/dfl}
ROUNDS=${1:-3}
cd "$REPO"
for model in demo df128; do
  DFL_BENCH_MODEL=$model DFL_BENCH_ROUNDS=$ROUNDS \
    cargo test --release -q --lib bench_adversarial_step -- --ignored --nocapture 2>&1 |
    grep '^dfl (tch)'
  "$DFL_HOME/venv/bin/python" scripts/bench/torch_gan_step.py "$model" "$ROUNDS"
done
