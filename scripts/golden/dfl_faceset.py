#!/usr/bin/env python3
"""Writes a DeepFaceLab-style faceset for the tests of `dfl faceset import-dfl`.

Run with CPython 3 and numpy from the repository root (ffmpeg on PATH):

    /root/.cache/dfl/venv/bin/python scripts/golden/dfl_faceset.py

Output in tests/fixtures/dfl_faceset/ (a DeepFaceLab workspace's data_dst, in miniature):

  data_dst/00017.png, 00018.png   two 720x480 frames (black; only their size matters)
  data_dst/aligned/               the faceset as DeepFaceLab's extractor and XSeg editor leave
                                  it: 256x256 JPEG faces named <frame>_<index>.jpg, each with
                                  one APP15 segment after the last APPn holding the pickled
                                  metadata dict; 00017_0.jpg has XSeg polygons and an applied
                                  mask, 00018_0.jpg is pickled with numpy 1.x names and lists
                                  for its landmarks (as older DeepFaceLab wrote), plus two files
                                  that are not faces (notes.jpg: no metadata; cut_0.jpg: cut
                                  short) which an import must skip
  packed/faceset.pak              the three faces packed as DeepFaceLab's faceset packer does
                                  (sample configs, offset table whose last entry counts from
                                  the start of the file, the face files' bytes)
  expected.json                   what each face must import as, in dfl's terms: face type,
                                  size, landmarks, frame name and index, frame size, box
                                  [x, y, w, h], matrix, polygons and the binarised mask's rows
"""

import json
import pickle
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dfl_pickles import dfl_enums, jpeg, numpy1_names, png, with_app15  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "dfl_faceset"
FRAME_W, FRAME_H = 720, 480
FACE_PX = 256


def face_dict(rng, frame, labelled, lists):
    """One face's metadata as DeepFaceLab writes it."""
    lm = (rng.random((68, 2)) * FACE_PX).astype(np.float32)
    src_lm = lm.astype(np.float64) * 1.078125 + 300.0
    d = {
        "face_type": "whole_face",
        "landmarks": lm.tolist() if lists else lm,
        "source_filename": f"{frame}.png",
        "source_rect": (300 + int(rng.integers(0, 20)), 290, 600, 590 - int(rng.integers(0, 20))),
        "source_landmarks": src_lm.tolist(),
        "image_to_face_mat": np.array([[0.9275, -0.0625, -278.5], [0.0625, 0.9275, -265.25]]),
        "eyebrows_expand_mod": 1.0,
    }
    if labelled:
        d["seg_ie_polys"] = {"polys": [
            {"type": 1, "pts": np.array([[10, 10], [200, 12], [190, 240], [14, 230]],
                                        np.float32) + 0.5},
            {"type": 0, "pts": np.array([[90, 120], [140, 120], [115, 160]], np.float32)},
        ]}
        rows = [[255 if 3 <= x <= 12 and 2 <= y <= 13 else (100 if x == 0 else 0)
                 for x in range(16)] for y in range(16)]
        d["xseg_mask"] = np.frombuffer(png(16, 16, rows), np.uint8).reshape(-1, 1).copy()
        d["_mask_rows"] = rows
    return d


def expected(name, d):
    """What dfl's importer must make of face `name`."""
    lm = np.asarray(d["landmarks"], np.float32)
    l, t, r, b = d["source_rect"]
    out = {
        "face_type": "whole_face",
        "size_px": FACE_PX,
        "source_filename": Path(d["source_filename"]).stem,
        "face_index": int(Path(name).stem.split("_")[1]),
        "source_size": [FRAME_W, FRAME_H],
        "landmarks": lm.astype(np.float64).tolist(),
        "source_landmarks": np.asarray(d["source_landmarks"], np.float32).astype(np.float64).tolist(),
        "source_rect": [l, t, r - l, b - t],
        "image_to_face_mat": d["image_to_face_mat"].tolist(),
        "seg_ie_polys": [],
        "mask_rows": None,
    }
    if "seg_ie_polys" in d:
        out["seg_ie_polys"] = [
            {"kind": "include" if p["type"] == 1 else "exclude",
             "points": p["pts"].astype(np.float64).tolist()}
            for p in d["seg_ie_polys"]["polys"]]
        out["mask_rows"] = [[255 if v >= 128 else 0 for v in row] for row in d["_mask_rows"]]
    return out


def pack(faces, path):
    """DeepFaceLab's faceset.pak of `faces` [(name, dict, bytes)]."""
    SampleType, FaceType = dfl_enums(False)
    configs = [{
        "sample_type": SampleType.FACE,
        "filename": name,
        "face_type": FaceType.WHOLE_FACE,
        "shape": (FACE_PX, FACE_PX, 3),
        "landmarks": np.asarray(d["landmarks"]).tolist(),
        "seg_ie_polys": d.get("seg_ie_polys", {"polys": []}),
        "xseg_mask": None,
        "xseg_mask_compressed": d.get("xseg_mask"),
        "eyebrows_expand_mod": 1.0,
        "source_filename": d["source_filename"],
        "person_name": None,
    } for name, d, _ in faces]
    data = pickle.dumps(configs, 4)
    out = struct.pack("Q", 1) + struct.pack("Q", len(data)) + data
    table = len(out)
    out += bytes(8 * (len(faces) + 1))
    data_start = len(out)
    offsets = []
    for _, _, b in faces:
        offsets.append(len(out) - data_start)
        out += b
    offsets.append(len(out))  # DeepFaceLab's last offset counts from the start of the file
    out = bytearray(out)
    for i, o in enumerate(offsets):
        out[table + 8 * i:table + 8 * i + 8] = struct.pack("Q", o)
    path.write_bytes(bytes(out))


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    frames = OUT / "data_dst"
    aligned = frames / "aligned"
    aligned.mkdir(parents=True)
    (OUT / "packed").mkdir()
    rng = np.random.default_rng(18)
    black = [[0] * FRAME_W for _ in range(FRAME_H)]
    for frame in ("00017", "00018"):
        (frames / f"{frame}.png").write_bytes(png(FRAME_W, FRAME_H, black))
    plain = jpeg(FACE_PX, FACE_PX)
    faces, want = [], {}
    for name, labelled, old in (("00017_0.jpg", True, False), ("00017_1.jpg", False, False),
                                ("00018_0.jpg", False, True)):
        d = face_dict(rng, name[:5], labelled, lists=old)
        want[name] = expected(name, d)
        d.pop("_mask_rows", None)
        payload = numpy1_names(pickle.dumps(d, 3)) if old else pickle.dumps(d, 4)
        data = with_app15(plain, payload)
        (aligned / name).write_bytes(data)
        faces.append((name, d, data))
    (aligned / "notes.jpg").write_bytes(plain)
    (aligned / "cut_0.jpg").write_bytes(faces[0][2][:200])
    pack(faces, OUT / "packed" / "faceset.pak")
    (OUT / "expected.json").write_text(json.dumps(want, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {len(faces)} faces, 2 junk files and a faceset.pak, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
