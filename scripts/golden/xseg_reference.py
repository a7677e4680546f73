#!/usr/bin/env python3
"""Writes the PyTorch reference for dfl's XSeg network (scripts/golden/xseg_torch.py is the
network; this script makes the data the Rust test reads).

For each case, a small XSeg with seeded weights (Glorot kernels as DFL, then every bias, FRN
weight/bias/eps and TLU tau moved away from its init value so those paths are exercised; some
FRN eps are negative, so |eps| is tested), a fixed batch of 2, then:

  - the forward pass, normal and in pretraining mode (skips replaced by zeros);
  - the XSeg loss against a binary mask, and the pretraining loss of the pretraining forward's
    sigmoid against the grayscale of the input image;
  - the gradient of the XSeg loss summed over the batch (DFL differentiates the per-sample
    vector, i.e. its sum) and one RMSprop step on it.

Output, per case, in tests/data/golden/xseg/<case>.safetensors (all float32):

  w.<name>              initial weights, under the state_dict names of xseg_torch.XSeg
                        (conv01.conv.weight [o,i,3,3], conv01.frn.eps [1], up5.conv.weight
                        [i,o,3,3], dense1.weight [out,in], out_conv.bias, ...)
  in.image              [N,3,R,R] uniform in [0,1], channel 0 = B, 1 = G, 2 = R
  in.mask               [N,1,R,R] in {0,1}
  out.logits            [N,1,R,R]  forward(image)
  out.sigmoid           [N,1,R,R]
  out.pretrain_sigmoid  [N,1,R,R]  forward(image, pretrain=True)
  loss.xseg             [N]        xseg_loss(out.logits, in.mask)
  loss.pretrain         [N]        xseg_pretrain_loss(out.pretrain_sigmoid, gray(in.image), R)
  grad.<name>           d(sum of loss.xseg)/d(weight)
  step.<name>           weights after one RMSprop step on grad (lr 1e-3, rho 0.9, eps 1e-6,
                        no lr dropout, no clipping, accumulators starting at 0)

gray(image) = 0.114 B + 0.587 G + 0.299 R (OpenCV's BGR2GRAY, DFL's 'G' channel type), [N,1,R,R].

The file's metadata (safetensors header, string values) holds the case's configuration:
resolution, base_ch, in_ch, out_ch, batch, lr, rho, eps, lr_dropout, clipnorm, gray,
dssim_filters, flatten, seed, torch, and `config` (all of it as one JSON object).

Note for tolerances: a first RMSprop step is lr * g / (sqrt(0.1) |g| + 1e-6), about
3.16e-3 * sign(g) unless |g| is near 1e-6, so step.* mostly checks the gradients' signs;
grad.* checks their values. Re-running these float32 files in float64 moved logits by up to
1.5e-5 (|logits| <= 3.4), sigmoids by up to 1.1e-5, losses by up to 5e-7, gradients by up to
1.7e-6 (absolute), and steps by up to 4e-5 (a dozen elements whose |g| is about 1e-6; every
other element within 1e-5). Some gradients are exactly 0: channels that TLU clips everywhere,
and at R 64 the up5 taps that only reach the dropped last row/column of its 1x1 -> 2x2 output.

needs: ~/.cache/dfl/venv/bin/pip install safetensors      (torch comes from scripts/setup.sh)
usage: ~/.cache/dfl/venv/bin/python scripts/golden/xseg_reference.py
"""
import json
import pathlib
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from saehd_reference import blob_mask  # noqa: E402
from saehd_torch import RmsProp  # noqa: E402
from xseg_torch import FRN, TLU, XSeg, check_transposed_conv, xseg_loss, xseg_pretrain_loss  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests/data/golden/xseg"
BATCH = 2
LR, RHO, EPS = 1e-3, 0.9, 1e-6  # DFL's RMSprop epsilon is np.finfo(float32).resolution = 1e-6
GRAY = "0.114*B + 0.587*G + 0.299*R (channel 0 = B)"
CASES = {
    # R 64: bottleneck 1x1, dense 32 -> 512 -> 32.
    "r64_b4": dict(resolution=64, base_ch=4, seed=64),
    # R 128: bottleneck 2x2, dense 64 -> 512 -> 64 (flatten order matters here).
    "r128_b2": dict(resolution=128, base_ch=2, seed=128),
}


def gray(image):
    b, g, r = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    return 0.114 * b + 0.587 * g + 0.299 * r


@torch.no_grad()
def perturb(model, gen):
    """Moves the values that start constant (biases, FRN, TLU) off their init values."""
    u = lambda *shape: torch.rand(*shape, generator=gen) * 2 - 1  # noqa: E731
    for name, module in model.named_modules():
        if isinstance(module, FRN):
            c = module.weight.shape[0]
            module.weight.copy_(1.0 + 0.25 * u(c))
            module.bias.copy_(0.1 * u(c))
            sign = 1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0
            module.eps.copy_(sign * (0.01 + 0.09 * torch.rand(1, generator=gen)))
        elif isinstance(module, TLU):
            module.tau.copy_(-0.2 + 0.25 * u(module.tau.shape[0]))  # [-0.45, 0.05]
        elif isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            module.bias.copy_(0.05 * u(module.bias.shape[0]))


def run(name, cfg):
    r, b = cfg["resolution"], cfg["base_ch"]
    torch.manual_seed(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    model = XSeg(3, b, 1, r)
    perturb(model, gen)
    out = {f"w.{k}": v.detach().clone() for k, v in model.state_dict().items()}

    image = torch.rand(BATCH, 3, r, r, generator=gen)
    mask = blob_mask(BATCH, r, gen)
    out["in.image"], out["in.mask"] = image, mask

    with torch.no_grad():
        _, pre_sig = model(image, pretrain=True)
        pre_loss = xseg_pretrain_loss(pre_sig, gray(image), r)
    logits, sig = model(image)
    loss = xseg_loss(logits, mask)
    loss.sum().backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
    RmsProp(model.parameters(), lr=LR, rho=RHO, eps=EPS).step()

    out.update({"out.logits": logits.detach(), "out.sigmoid": sig.detach(), "out.pretrain_sigmoid": pre_sig})
    out["loss.xseg"], out["loss.pretrain"] = loss.detach(), pre_loss
    out.update({f"grad.{k}": g for k, g in grads.items()})
    out.update({f"step.{k}": v.detach().clone() for k, v in model.state_dict().items()})

    config = dict(
        resolution=r, base_ch=b, in_ch=3, out_ch=1, batch=BATCH, lr=LR, rho=RHO, eps=EPS,
        lr_dropout="none", clipnorm=0.0, gray=GRAY,
        dssim_filters=[int(r / 11.6), int(r / 23.2)],
        flatten="NCHW (C,H,W) order, torch x.flatten(1)", seed=cfg["seed"], torch=torch.__version__,
    )
    meta = {k: (json.dumps(v) if isinstance(v, list) else str(v)) for k, v in config.items()}
    meta["config"] = json.dumps(config)
    path = OUT / f"{name}.safetensors"
    save_file({k: v.contiguous().float() for k, v in out.items()}, path, metadata=meta)

    n_params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n_params:,} parameters, {path.stat().st_size / 1e6:.2f} MB, {len(out)} tensors")
    print(f"  loss.xseg {loss.tolist()}  loss.pretrain {pre_loss.tolist()}")
    for k in ("out.logits", "out.sigmoid", "out.pretrain_sigmoid"):
        print(f"  max|{k}| = {out[k].abs().max().item():.4g}")
    g_all = torch.cat([g.flatten() for g in grads.values()]).abs()
    print(f"  grad: max|g| {g_all.max().item():.4g}, min|g| {g_all.min().item():.3g}, "
          f"{int((g_all < 1e-5).sum())} of {g_all.numel()} below 1e-5")
    worst = max(grads, key=lambda k: grads[k].abs().max().item())
    print(f"  largest gradient in {worst}; max|step - w| "
          f"{max((out['step.' + k] - out['w.' + k]).abs().max().item() for k in grads):.4g}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    check_transposed_conv()
    assert sum(p.numel() for p in XSeg(3, 32, 1, 256).parameters()) == 17_569_317
    for name, cfg in CASES.items():
        run(name, cfg)
    (OUT / "README.md").write_text(
        "Written by scripts/golden/xseg_reference.py (PyTorch reference for DFL's XSeg network, "
        "its losses and one RMSprop step; the network is scripts/golden/xseg_torch.py). "
        "Cases: " + json.dumps(CASES) + "\n"
    )


if __name__ == "__main__":
    main()
