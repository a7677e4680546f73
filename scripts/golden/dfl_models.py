#!/usr/bin/env python3
"""Writes tiny SAEHD models as DeepFaceLab model folders, for tests/dfl_model.rs.

For each variant it builds the PyTorch reference network (saehd_torch.py, beside this file) with
seeded weights (random biases too, so a bias in the wrong place shows), then lays it out exactly
as DeepFaceLab's SAEHD saves a model folder named "tiny":

  tiny_SAEHD_data.dat          pickle {iter, options, loss_history, sample_for_preview,
                               choosed_gpu_indexes}; options with DFL's keys and value types
                               (numpy integers and floats where DFL's np.clip makes them)
  tiny_SAEHD_<part>.npy        one per network part: a pickled dict {variable path inside the
                               part's TensorFlow scope, e.g. "down1/downs_0/conv1/weight:0" ->
                               float32 ndarray}; conv kernels HWIO, dense weights (in, out)
  tiny_SAEHD_src_dst_opt.npy   the optimizer: "iters:0" (an np.int64 scalar, as TensorFlow hands it to DFL) and per weight "ms_<scope>/<path
                               with :0 as _0>:0" + "vs_..." (AdaBelief) or "acc_..." (RMSprop)

and, beside them, reference.safetensors: DFL's AE_merge outputs of the reference network on a
fixed seeded input (NCHW, BGR in [0,1]): in.warped_dst [1,3,R,R], out.swap [1,3,R,R],
out.swap_mask [1,1,R,R], out.dst_mask [1,1,R,R].

The variable paths follow DFL's naming (a sub-model's scope is the attribute holding it, a list
element gets "_<i>", and the saver drops the part's own scope, keeping TensorFlow's ":0") and are
written here independently of dfl's Rust mapping.

usage: ~/.cache/dfl/venv/bin/python scripts/golden/dfl_models.py
"""
import json
import pathlib
import pickle
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from saehd_torch import Saehd  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/dfl/models"
NAME = "tiny"
ITER = 12345
DIMS = dict(resolution=64, ae=8, e=2, d=2, m=2)
# variant -> optimizer saved with it (None: no optimizer file, as a model copied without it)
VARIANTS = {"df": "adabelief", "liae": "adabelief", "liae-ud": "rmsprop", "df-ud": None}


def save_safetensors(tensors, path, metadata):
    """A float32 safetensors file (8-byte header length, JSON header, raw data), written here so
    that the script needs nothing beyond torch and numpy."""
    header, blobs, offset = {}, [], 0
    for key in sorted(tensors):
        a = np.ascontiguousarray(tensors[key].detach().numpy().astype(np.float32))
        header[key] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def tf_path(part, module, leaf, opts):
    """DFL's variable path (inside the part's scope) of one of the reference's parameters."""
    segs = module.split(".")
    if part == "encoder":
        if segs[0] == "down":
            i = int(segs[1])
            p = f"down{i + 1}/conv1" if "t" in opts else f"down1/downs_{i}/conv1"
        else:  # res.0 / res.1 with t
            p = ["res1", "res5"][int(segs[1])] + "/" + segs[2]
    elif part in ("inter", "inter_ab", "inter_b"):
        p = segs[0] if segs[0].startswith("dense") else "upscale1/conv1"
    else:
        if segs[0] in ("upscale", "upscalem"):
            p = f"{segs[0]}{segs[1]}/conv1"
        elif segs[0] == "res":
            p = f"res{segs[1]}/{segs[2]}"
        else:
            p = segs[0]
    return f"{p}/{leaf}:0"


FILES = {"inter_ab": "inter_AB", "inter_b": "inter_B"}


def to_tf(name, t):
    """A torch parameter in TensorFlow's layout."""
    a = t.detach().numpy().astype(np.float32)
    if a.ndim == 4:
        return np.ascontiguousarray(a.transpose(2, 3, 1, 0))  # OIHW -> HWIO
    if a.ndim == 2:
        return np.ascontiguousarray(a.T)  # (out, in) -> (in, out)
    return np.ascontiguousarray(a)


def dfl_parts(model, opts):
    """{file stem: {variable path: array}} in the order DFL builds the variables."""
    parts = {}
    for name, t in model.state_dict().items():
        part, rest = name.split(".", 1)
        module, leaf = rest.rsplit(".", 1)
        file = FILES.get(part, part)
        parts.setdefault(file, {})[tf_path(part, module, leaf, opts)] = to_tf(name, t)
    return parts


def optimizer_state(parts, kind, gen):
    """DFL's optimizer file for the weights in `parts`, with random (valid) moments."""
    # TensorFlow returns a scalar variable as a numpy scalar, which is what DFL pickles.
    d = {"iters:0": np.int64(ITER - 45)}
    prefixes = ["ms", "vs"] if kind == "adabelief" else ["acc"]
    for prefix in prefixes:
        for file, weights in parts.items():
            for path, w in weights.items():
                var = f"{file}/{path}".replace(":", "_")
                x = gen.standard_normal(w.shape).astype(np.float32) * np.float32(1e-3)
                d[f"{prefix}_{var}:0"] = np.abs(x) if prefix != "ms" else x
    return d


def options(archi, kind):
    """SAEHD's options as DFL stores them (np.clip makes numpy scalars of the dims)."""
    r, ae, e, d, m = (DIMS[k] for k in ("resolution", "ae", "e", "d", "m"))
    return {
        "autobackup_hour": 0,
        "write_preview_history": False,
        "target_iter": 0,
        "random_src_flip": False,
        "random_dst_flip": True,
        "batch_size": 4,
        "resolution": np.int64(r),
        "face_type": "wf",
        "models_opt_on_gpu": True,
        "archi": archi,
        "ae_dims": np.int64(ae),
        "e_dims": np.int64(e),
        "d_dims": np.int64(d),
        "d_mask_dims": np.int64(m),
        "masked_training": True,
        "eyes_mouth_prio": True,
        "uniform_yaw": False,
        "blur_out_mask": False,
        "adabelief": kind != "rmsprop",
        "lr_dropout": "n",
        "random_warp": True,
        "random_hsv_power": np.float64(0.05),
        "true_face_power": np.float64(0.0),
        "face_style_power": np.float64(0.0),
        "bg_style_power": np.float64(0.0),
        "ct_mode": "rct",
        "clipgrad": True,
        "pretrain": False,
        "gan_power": np.float64(0.0),
        "gan_patch_size": 8,
        "gan_dims": 16,
    }


def write_variant(archi, kind):
    out = OUT / archi
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    torch.manual_seed(1234)
    gen = np.random.default_rng(7)
    r = DIMS["resolution"]
    model = Saehd(archi, r, DIMS["ae"], DIMS["e"], DIMS["d"], DIMS["m"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape) * 0.1)
    opts = archi.partition("-")[2]
    parts = dfl_parts(model, opts)
    for file, weights in parts.items():
        (out / f"{NAME}_SAEHD_{file}.npy").write_bytes(pickle.dumps(weights, 4))
    if kind is not None:
        state = optimizer_state(parts, kind, gen)
        (out / f"{NAME}_SAEHD_src_dst_opt.npy").write_bytes(pickle.dumps(state, 4))
    history = [[float(1.0 - 0.01 * i), float(1.1 - 0.012 * i)] for i in range(25)]
    preview = [gen.random((1, 8, 8, 3), dtype=np.float32) for _ in range(2)]
    data = {
        "iter": ITER,
        "options": options(archi, kind),
        "loss_history": history,
        "sample_for_preview": preview,
        "choosed_gpu_indexes": None,
    }
    (out / f"{NAME}_SAEHD_data.dat").write_bytes(pickle.dumps(data))
    x = torch.rand(1, 3, r, r, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        swap, swap_mask = model.swap(x)
        _, dst_mask = model.dst_dst(x)
    tensors = {"in.warped_dst": x, "out.swap": swap, "out.swap_mask": swap_mask, "out.dst_mask": dst_mask}
    meta = {"archi": archi, "optimizer": str(kind), "torch": torch.__version__}
    meta.update({k: str(v) for k, v in DIMS.items()})
    save_safetensors(tensors, out / "reference.safetensors", meta)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"{archi}: {len(parts)} parts, optimizer {kind}, {size / 1e3:.0f} kB")


def main():
    torch.set_num_threads(1)
    for archi, kind in VARIANTS.items():
        write_variant(archi, kind)
    (OUT / "README.md").write_text(
        "Tiny SAEHD models in DeepFaceLab's model-folder layout, one folder per archi, written by\n"
        "scripts/golden/dfl_models.py (which documents every file) and read by tests/dfl_model.rs.\n\n"
        f"Model name `{NAME}`, iteration {ITER}, dims {json.dumps(DIMS)}.\n"
        f"Optimizer file per archi: {json.dumps(VARIANTS)} (null: none).\n\n"
        "Each folder: `tiny_SAEHD_data.dat`, one `tiny_SAEHD_<part>.npy` per network part\n"
        "(pickled dict {TensorFlow variable path -> float32 array}, conv kernels HWIO, dense\n"
        "weights (in, out)), `tiny_SAEHD_src_dst_opt.npy` when listed, and `reference.safetensors`:\n"
        "the PyTorch reference's merge outputs (DFL's AE_merge: the swapped face, its mask and the\n"
        "dst mask; NCHW, BGR in [0,1]) on the fixed input `in.warped_dst`.\n"
    )


if __name__ == "__main__":
    main()
