#!/usr/bin/env python3
"""Writes the PyTorch reference for dfl's GAN, true face and style training (read by
tests/adversarial_reference.rs and by the trainer's reference test in src/train/trainer.rs).

For each case, a tiny DF model at 32 px with both discriminators, seeded weights and a fixed
batch: every new loss term on its own, then one whole training step as dfl takes it:

  1. the autoencoder's objective: src and dst losses on the (blur-out-mask) targets, face style
     and background style in the src loss, the true-face and GAN generator terms and, with
     masked training, the GAN stabilisers; its sum over the batch is differentiated (the
     discriminators learn nothing from it) and the autoencoder's optimizer steps;
  2. the code discriminator steps on the dst (real) and src (fake) codes of that forward pass;
  3. the patch discriminator steps on the src target (real) and src->src (fake) of that pass,
     both as the losses see them (multiplied by the loss mask with masked training).

Each network has its own optimizer of the case's kind. Output, per case, in
tests/data/golden/saehd_gan/<case>.safetensors:

  w.<name>, gan.<name>, code.<name>     initial weights (autoencoder, patch D, code D)
  in.<name>                             the batch (as saehd_reference.py)
  term.<name>                           each term per sample [N], and blur_out_src [N,3,R,R]
  logits.<name>                         code D on the src code; patch D on src->src (center, pixel)
  loss.src, loss.dst                    the reported per-sample losses (with the style terms)
  step.<name>, step_gan.<name>, step_code.<name>   every weight after the step
  grad.<name>, grad_gan.<name>, grad_code.<name>   every gradient of the step (after clipping):
                                        a first optimizer step is close to lr * sign(gradient),
                                        so the gradients are what shows a wrong weight in a loss

At 32 px the code is 4x4 and the code discriminator has one conv; the first case also holds a
narrower one (base 8 channels instead of 256) on a 16x16 code, with three convs, and its logits:
extra.code16.w.<name>, extra.code16.in, extra.code16.out.

needs: ~/.cache/dfl/venv/bin/pip install safetensors      (torch comes from scripts/setup.sh)
usage: ~/.cache/dfl/venv/bin/python scripts/golden/saehd_gan_reference.py
"""
import json
import pathlib
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from saehd_reference import BATCH, inputs  # noqa: E402
from saehd_torch import (  # noqa: E402
    Adam, AdaBelief, CodeDiscriminator, RmsProp, Saehd, UNetPatchDiscriminator, bce,
    bg_style_loss, blur_out_mask, clip_global_norm, dssim, gaussian_blur, loss_mask, side_loss,
    style_loss, total_variation_mse,
)

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests/data/golden/saehd_gan"
R, AE, E, D, M = 32, 16, 4, 2, 2
GAN_DIMS = 4
STEP_LR = 1e-3
COMMON = dict(gan_power=0.1, true_face_power=0.01, face_style_power=5.0, bg_style_power=10.0)
CASES = {
    # The default patch size (R/8 = 4) gives one stride-2 layer; 11 gives stride 2, 1, 2.
    "adabelief": dict(optimizer="adabelief", masked_training=True, blur_out_mask=True, clip_grad=None, gan_patch_size=4, **COMMON),
    "rmsprop": dict(optimizer="rmsprop", masked_training=True, blur_out_mask=False, clip_grad=1.0, gan_patch_size=11, **COMMON),
    "adam": dict(optimizer="adam", masked_training=False, blur_out_mask=True, clip_grad=None, gan_patch_size=4, **COMMON),
}


def optimizer(kind, params):
    return {"adabelief": AdaBelief, "adam": Adam, "rmsprop": RmsProp}[kind](params, lr=STEP_LR)


def masked_loss(target, mask, em, pred, pred_mask, masked):
    if masked:
        return side_loss(target, mask, em, pred, pred_mask, R)
    # Masked training off: compare the raw images (the mask term stays).
    loss = (10 * dssim(target, pred, int(R / 11.6))).mean(1)
    loss = loss + (10 * (target - pred).square()).mean((1, 2, 3))
    loss = loss + (300 * (target * em - pred * em).abs()).mean((1, 2, 3))
    return loss + (10 * (mask - pred_mask).square()).mean((1, 2, 3))


def run(name, cfg):
    torch.manual_seed(1234)
    gen = torch.Generator().manual_seed(99)
    model = Saehd("df", R, AE, E, D, M)
    code_d = CodeDiscriminator(AE, 2 * (R // 16))
    gan_d = UNetPatchDiscriminator(cfg["gan_patch_size"], 3, GAN_DIMS)
    out = {f"w.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    out.update({f"gan.{k}": v.detach().clone() for k, v in gan_d.state_dict().items()})
    out.update({f"code.{k}": v.detach().clone() for k, v in code_d.state_dict().items()})
    x = inputs(R, gen)
    out.update({f"in.{k}": v for k, v in x.items()})
    g_opt = optimizer(cfg["optimizer"], model.parameters())
    code_opt = optimizer(cfg["optimizer"], code_d.parameters())
    gan_opt = optimizer(cfg["optimizer"], gan_d.parameters())

    t_src, t_dst = x["target_src"], x["target_dst"]
    if cfg["blur_out_mask"]:
        t_src = blur_out_mask(t_src, x["mask_src"], R)
        t_dst = blur_out_mask(t_dst, x["mask_dst"], R)
    out["term.blur_out_src"] = blur_out_mask(x["target_src"], x["mask_src"], R)

    # The autoencoder's forward pass (DF).
    src_code = model.inter(model.encoder(x["warped_src"]))
    dst_code = model.inter(model.encoder(x["warped_dst"]))
    ss, ssm = model.decoder_src(src_code)
    dd, ddm = model.decoder_dst(dst_code)
    sd, sdm = model.decoder_src(dst_code)
    sd_ncg, _ = model.decoder_src(dst_code.detach())
    masked = cfg["masked_training"]
    src_loss = masked_loss(t_src, x["mask_src"], x["em_src"], ss, ssm, masked)
    dst_loss = masked_loss(t_dst, x["mask_dst"], x["em_dst"], dd, ddm, masked)
    face_style = style_loss(sd_ncg * sdm.detach(), (dd * ddm).detach(), R // 8, 100.0 * cfg["face_style_power"])
    bg_style = bg_style_loss(sd, t_dst, x["mask_src"], R, cfg["bg_style_power"])
    src_loss = src_loss + face_style + bg_style

    for p in list(code_d.parameters()) + list(gan_d.parameters()):
        p.requires_grad_(False)
    code_logits = code_d(src_code)
    true_face_g = cfg["true_face_power"] * bce(code_logits, 1.0)
    weight = loss_mask(x["mask_src"], R)
    seen_t, seen_p = (t_src * weight, ss * weight) if masked else (t_src, ss)
    center, pixel = gan_d(seen_p)
    gan_g = cfg["gan_power"] * (bce(center, 1.0) + bce(pixel, 1.0))
    total = src_loss + dst_loss + true_face_g + gan_g
    stabilisers = torch.zeros(BATCH)
    if masked:
        anti = 1.0 - weight
        stabilisers = 1e-6 * total_variation_mse(ss) + 0.02 * (ss * anti - t_src * anti).square().mean((1, 2, 3))
        total = total + stabilisers
    total.sum().backward()
    if cfg["clip_grad"]:
        clip_global_norm(list(model.parameters()), cfg["clip_grad"])
    g_opt.step()
    for p in list(code_d.parameters()) + list(gan_d.parameters()):
        p.requires_grad_(True)

    # The discriminators, on that pass's codes and images, detached.
    code_loss = 0.5 * (bce(code_d(dst_code.detach()), 1.0) + bce(code_d(src_code.detach()), 0.0))
    code_loss.sum().backward()
    if cfg["clip_grad"]:
        clip_global_norm(list(code_d.parameters()), cfg["clip_grad"])
    code_opt.step()
    rc, rp = gan_d(seen_t.detach())
    fc, fp = gan_d(seen_p.detach())
    patch_loss = 0.5 * (bce(rc, 1.0) + bce(fc, 0.0)) + 0.5 * (bce(rp, 1.0) + bce(fp, 0.0))
    patch_loss.sum().backward()
    if cfg["clip_grad"]:
        clip_global_norm(list(gan_d.parameters()), cfg["clip_grad"])
    gan_opt.step()

    terms = dict(face_style=face_style, bg_style=bg_style, true_face_g=true_face_g, gan_g=gan_g,
                 stabilisers=stabilisers, code_d=code_loss, patch_d=patch_loss)
    out.update({f"term.{k}": v.detach() for k, v in terms.items()})
    out.update({"logits.code": code_logits.detach(), "logits.center": center.detach(), "logits.pixel": pixel.detach()})
    out["loss.src"], out["loss.dst"] = src_loss.detach(), dst_loss.detach()
    for prefix, net in (("grad", model), ("grad_gan", gan_d), ("grad_code", code_d)):
        out.update({f"{prefix}.{k}": p.grad.detach().clone() for k, p in net.named_parameters()})
    out.update({f"step.{k}": v.detach().clone() for k, v in model.state_dict().items()})
    out.update({f"step_gan.{k}": v.detach().clone() for k, v in gan_d.state_dict().items()})
    out.update({f"step_code.{k}": v.detach().clone() for k, v in code_d.state_dict().items()})
    if name == "adabelief":
        wide = CodeDiscriminator(AE, 16, base=8)
        code16 = torch.rand(BATCH, AE, 16, 16, generator=gen) * 2 - 1
        out.update({f"extra.code16.w.{k}": v.detach().clone() for k, v in wide.state_dict().items()})
        out["extra.code16.in"], out["extra.code16.out"] = code16, wide(code16).detach()
    meta = {k: str(v) for k, v in cfg.items()}
    meta.update(resolution=str(R), ae=str(AE), e=str(E), d=str(D), m=str(M), gan_dims=str(GAN_DIMS),
                step_lr=str(STEP_LR), batch=str(BATCH), torch=torch.__version__)
    save_file({k: v.contiguous() for k, v in out.items()}, OUT / f"{name}.safetensors", metadata=meta)
    print(f"{name}: src {src_loss.tolist()} dst {dst_loss.tolist()} D code {code_loss.tolist()} D patch {patch_loss.tolist()}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for name, cfg in CASES.items():
        run(name, cfg)
    (OUT / "README.md").write_text(
        "Written by scripts/golden/saehd_gan_reference.py (PyTorch reference for GAN, true face "
        "and the style terms); read by tests/adversarial_reference.rs and src/train/trainer.rs. "
        "Cases: " + json.dumps(CASES) + "\n"
    )


if __name__ == "__main__":
    main()
