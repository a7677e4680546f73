#!/usr/bin/env python3
"""Times one SAEHD training step with GAN and true face off and on, in plain PyTorch, for
comparison with dfl's step (scripts/bench/gan_step.sh). The same terms and order as dfl and as
scripts/golden/saehd_gan_reference.py: the autoencoder's step (with the generator's
adversarial terms, the discriminators frozen), then each discriminator's step on the detached
codes and reconstructions of that forward pass. Random tensors, no data pipeline; the three
configurations are interleaved and the median of the rounds is reported.

usage: ~/.cache/dfl/venv/bin/python scripts/bench/torch_gan_step.py [df128|demo] [rounds]
"""
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "golden"))
from saehd_torch import (  # noqa: E402
    AdaBelief, CodeDiscriminator, Saehd, UNetPatchDiscriminator, bce, loss_mask, side_loss,
    total_variation_mse,
)

MODELS = {"df128": (128, 256, 64, 64, 22), "demo": (64, 64, 16, 16, 16)}


class Step:
    def __init__(self, r, dims, gan_power, true_face_power):
        torch.manual_seed(0)
        self.r, self.gan_power, self.true_face_power = r, gan_power, true_face_power
        self.model = Saehd("df", r, *dims)
        self.opt = AdaBelief(self.model.parameters())
        self.code_d = CodeDiscriminator(dims[0], 2 * (r // 16)) if true_face_power else None
        self.gan_d = UNetPatchDiscriminator(r // 8, 3, 16) if gan_power else None
        self.d_opts = [AdaBelief(d.parameters()) for d in (self.code_d, self.gan_d) if d]

    def __call__(self, ws, wd, ts, td, mask, em):
        m = self.model
        for p in m.parameters():
            p.grad = None
        codes = m.inter(m.encoder(torch.cat([ws, wd])))
        src_code, dst_code = codes.chunk(2)
        ss, ssm = m.decoder_src(src_code)
        dd, ddm = m.decoder_dst(dst_code)
        total = side_loss(ts, mask, em, ss, ssm, self.r) + side_loss(td, mask, em, dd, ddm, self.r)
        ds = [d for d in (self.code_d, self.gan_d) if d]
        for d in ds:
            d.requires_grad_(False)
        weight = loss_mask(mask, self.r)
        seen_t, seen_p = ts * weight, ss * weight
        if self.code_d:
            total = total + self.true_face_power * bce(self.code_d(src_code), 1.0)
        if self.gan_d:
            c, px = self.gan_d(seen_p)
            anti = 1.0 - weight
            total = total + self.gan_power * (bce(c, 1.0) + bce(px, 1.0))
            total = total + 1e-6 * total_variation_mse(ss) + 0.02 * (ss * anti - ts * anti).square().mean((1, 2, 3))
        total.sum().backward()
        self.opt.step()
        for d in ds:
            d.requires_grad_(True)
            for p in d.parameters():
                p.grad = None
        if self.code_d:
            logits = self.code_d(torch.cat([dst_code.detach(), src_code.detach()]))
            real, fake = logits.chunk(2)
            (0.5 * (bce(real, 1.0) + bce(fake, 0.0))).sum().backward()
        if self.gan_d:
            c, px = self.gan_d(torch.cat([seen_t.detach(), seen_p.detach()]))
            (cr, cf), (pr, pf) = c.chunk(2), px.chunk(2)
            (0.5 * (bce(cr, 1.0) + bce(cf, 0.0)) + 0.5 * (bce(pr, 1.0) + bce(pf, 0.0))).sum().backward()
        for o in self.d_opts:
            o.step()
        return total.detach().mean().item()


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "df128"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    r, *dims = MODELS[name]
    configs = [("off", 0.0, 0.0), ("GAN 0.1", 0.1, 0.0), ("GAN 0.1 + true face 0.01", 0.1, 0.01)]
    steps = [Step(r, dims, g, t) for _, g, t in configs]
    torch.manual_seed(1)
    img = lambda: torch.rand(8, 3, r, r)  # noqa: E731
    mask = (torch.rand(8, 1, r, r) > 0.3).float()
    em = (torch.rand(8, 1, r, r) > 0.9).float()
    batch = (img(), img(), img(), img(), mask, em)
    for s in steps:
        s(*batch)  # warm-up
    times = [[] for _ in steps]
    for _ in range(rounds):
        for s, t in zip(steps, times):
            start = time.perf_counter()
            s(*batch)
            t.append(time.perf_counter() - start)
    med = [sorted(t)[len(t) // 2] for t in times]
    for (label, _, _), t in zip(configs, med):
        print(f"pytorch {torch.__version__} {name} batch 8, {label}: {t:.3f} s/step (median of {rounds}), "
              f"{t / med[0]:.2f}x off ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
