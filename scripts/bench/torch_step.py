#!/usr/bin/env python3
"""Times one SAEHD training step in plain PyTorch on this machine, for comparison with dfl's
Rust step (scripts/bench/train_step.sh): forward of src and dst, DFL's losses, backward,
AdaBelief. Random tensors, no data pipeline.

usage: ~/.cache/dfl/venv/bin/python scripts/bench/torch_step.py [archi] [resolution] [batch] [steps]
       [--profile TRACE.json]

With --profile, one more (untimed) step runs under torch.profiler (CPU activities) and its Chrome trace is
written to the path (scripts/bench/profile_step.py sets it beside dfl's).
"""
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "golden"))
from saehd_torch import AdaBelief, Saehd, side_loss  # noqa: E402


def main():
    argv = sys.argv[1:]
    profile = None
    if "--profile" in argv:
        i = argv.index("--profile")
        profile = argv[i + 1]
        del argv[i : i + 2]
    archi = argv[0] if len(argv) > 0 else "df"
    r = int(argv[1]) if len(argv) > 1 else 128
    batch = int(argv[2]) if len(argv) > 2 else 8
    steps = int(argv[3]) if len(argv) > 3 else 3
    torch.manual_seed(0)
    model = Saehd(archi, r, 256, 64, 64, 22)
    opt = AdaBelief(model.parameters())
    img = lambda: torch.rand(batch, 3, r, r)  # noqa: E731
    mask = (torch.rand(batch, 1, r, r) > 0.3).float()
    em = (torch.rand(batch, 1, r, r) > 0.9).float()
    ws, wd, ts, td = img(), img(), img(), img()
    times = []
    for i in range(steps + 1 + (profile is not None)):
        prof = None
        if i > steps:  # one more step, untimed, under the profiler
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            prof.__enter__()
        start = time.perf_counter()
        rf = torch.profiler.record_function
        with rf("zero_grad"):
            for p in model.parameters():
                p.grad = None
        with rf("forward"):
            ss, ssm = model.src_src(ws)
            dd, ddm = model.dst_dst(wd)
        with rf("loss"):
            loss = side_loss(ts, mask, em, ss, ssm, r) + side_loss(td, mask, em, dd, ddm, r)
        with rf("backward"):
            loss.sum().backward()
        with rf("optimizer"):
            opt.step()
        if 0 < i <= steps:  # the first step warms up allocators
            times.append(time.perf_counter() - start)
        if prof is not None:
            prof.__exit__(None, None, None)
            prof.export_chrome_trace(profile)
    t = sum(times) / len(times)
    print(f"pytorch {torch.__version__} {archi}@{r} batch {batch}: {t:.2f} s/step, "
          f"{1 / t:.3f} steps/s, {batch / t:.2f} samples/s ({torch.get_num_threads()} threads, {steps} steps)")


if __name__ == "__main__":
    main()
