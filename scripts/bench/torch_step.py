#!/usr/bin/env python3
"""Times one SAEHD training step in plain PyTorch on this machine, for comparison with dfl's
Rust step (scripts/bench/train_step.sh): forward of src and dst, DFL's losses, backward,
AdaBelief. Random tensors, no data pipeline.

usage: ~/.cache/dfl/venv/bin/python scripts/bench/torch_step.py [archi] [resolution] [batch] [steps]
"""
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "golden"))
from saehd_torch import AdaBelief, Saehd, side_loss  # noqa: E402


def main():
    archi = sys.argv[1] if len(sys.argv) > 1 else "df"
    r = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    torch.manual_seed(0)
    model = Saehd(archi, r, 256, 64, 64, 22)
    opt = AdaBelief(model.parameters())
    img = lambda: torch.rand(batch, 3, r, r)  # noqa: E731
    mask = (torch.rand(batch, 1, r, r) > 0.3).float()
    em = (torch.rand(batch, 1, r, r) > 0.9).float()
    ws, wd, ts, td = img(), img(), img(), img()
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        for p in model.parameters():
            p.grad = None
        ss, ssm = model.src_src(ws)
        dd, ddm = model.dst_dst(wd)
        loss = side_loss(ts, mask, em, ss, ssm, r) + side_loss(td, mask, em, dd, ddm, r)
        loss.sum().backward()
        opt.step()
        if i > 0:  # the first step warms up allocators
            times.append(time.perf_counter() - start)
    t = sum(times) / len(times)
    print(f"pytorch {torch.__version__} {archi}@{r} batch {batch}: {t:.2f} s/step, "
          f"{1 / t:.3f} steps/s, {batch / t:.2f} samples/s ({torch.get_num_threads()} threads, {steps} steps)")


if __name__ == "__main__":
    main()
