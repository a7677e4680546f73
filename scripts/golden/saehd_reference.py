#!/usr/bin/env python3
"""Writes the PyTorch reference for dfl's SAEHD test (tests/saehd_reference.rs).

For a few tiny archis it builds the network in plain PyTorch (saehd_torch.py, beside this
file), with seeded weights, runs a fixed batch through src->src, dst->dst and the swap,
computes DFL's src and dst losses, back-propagates their sum over the batch (as DFL's
tf.gradients of the per-sample vector does) and takes one AdaBelief step. Everything goes into
tests/data/golden/saehd/<archi>.safetensors:

  w.<name>       initial weights, under dfl's checkpoint names
  in.<name>      warped_src, warped_dst, target_src, target_dst, mask_src, mask_dst, em_src, em_dst
  out.<name>     src_src, src_src_mask, dst_dst, dst_dst_mask, swap, swap_mask
  loss.src/dst   per-sample losses [N]
  step.<name>    weights after one AdaBelief step (lr STEP_LR)

and the configuration into the file's metadata.

needs: ~/.cache/dfl/venv/bin/pip install safetensors      (torch comes from scripts/setup.sh)
usage: ~/.cache/dfl/venv/bin/python scripts/golden/saehd_reference.py
"""
import json
import pathlib
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from saehd_torch import AdaBelief, Saehd, side_loss  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests/data/golden/saehd"
# Tiny dims, 64 px (DSSIM kernel 5, mask blur sigma 2), batch 2.
CASES = {
    "df": dict(resolution=64, ae=16, e=4, d=2, m=2),
    "liae-ud": dict(resolution=64, ae=16, e=4, d=2, m=2),
    "df-udt": dict(resolution=64, ae=16, e=4, d=2, m=2),
}
BATCH = 2
# Large enough that one step visibly moves every weight (DFL's 5e-5 would hide mistakes).
STEP_LR = 1e-3


def blob_mask(n, r, gen):
    """Ellipse-ish face masks with random centres: [n, 1, r, r] in {0, 1}."""
    ys, xs = torch.meshgrid(torch.arange(r), torch.arange(r), indexing="ij")
    masks = []
    for _ in range(n):
        cy, cx = (0.4 + 0.2 * torch.rand(2, generator=gen)) * r
        inside = ((ys - cy) / (0.35 * r)) ** 2 + ((xs - cx) / (0.28 * r)) ** 2 <= 1.0
        masks.append(inside.float())
    return torch.stack(masks)[:, None]


def inputs(r, gen):
    img = lambda: torch.rand(BATCH, 3, r, r, generator=gen)  # noqa: E731
    em = torch.zeros(BATCH, 1, r, r)
    em[:, :, r // 3 : r // 2, r // 4 : 3 * r // 4] = 1.0  # eyes
    em[:, :, 2 * r // 3 : 3 * r // 4, r // 3 : 2 * r // 3] = 1.0  # mouth
    return {
        "warped_src": img(), "warped_dst": img(), "target_src": img(), "target_dst": img(),
        "mask_src": blob_mask(BATCH, r, gen), "mask_dst": blob_mask(BATCH, r, gen),
        "em_src": em.clone(), "em_dst": em.clone(),
    }


def run(archi, cfg):
    torch.manual_seed(1234)
    gen = torch.Generator().manual_seed(99)
    r = cfg["resolution"]
    model = Saehd(archi, r, cfg["ae"], cfg["e"], cfg["d"], cfg["m"])
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x = inputs(r, gen)
    ss, ssm = model.src_src(x["warped_src"])
    dd, ddm = model.dst_dst(x["warped_dst"])
    with torch.no_grad():
        sw, swm = model.swap(x["warped_dst"])
    src_loss = side_loss(x["target_src"], x["mask_src"], x["em_src"], ss, ssm, r)
    dst_loss = side_loss(x["target_dst"], x["mask_dst"], x["em_dst"], dd, ddm, r)
    (src_loss + dst_loss).sum().backward()
    AdaBelief(model.parameters(), lr=STEP_LR).step()
    out = {f"w.{k}": v for k, v in weights.items()}
    out.update({f"in.{k}": v for k, v in x.items()})
    outputs = {"src_src": ss, "src_src_mask": ssm, "dst_dst": dd, "dst_dst_mask": ddm, "swap": sw, "swap_mask": swm}
    out.update({f"out.{k}": v.detach() for k, v in outputs.items()})
    out["loss.src"], out["loss.dst"] = src_loss.detach(), dst_loss.detach()
    out.update({f"step.{k}": v.detach().clone() for k, v in model.state_dict().items()})
    meta = {"archi": archi, "batch": str(BATCH), "step_lr": str(STEP_LR), "torch": torch.__version__}
    meta.update({k: str(v) for k, v in cfg.items()})
    save_file({k: v.contiguous() for k, v in out.items()}, OUT / f"{archi}.safetensors", metadata=meta)
    print(f"{archi}: src loss {src_loss.tolist()}, dst loss {dst_loss.tolist()}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for archi, cfg in CASES.items():
        run(archi, cfg)
    (OUT / "README.md").write_text(
        "Written by scripts/golden/saehd_reference.py (PyTorch reference for SAEHD); "
        "read by tests/saehd_reference.rs. Cases: " + json.dumps(CASES) + "\n"
    )


if __name__ == "__main__":
    main()
