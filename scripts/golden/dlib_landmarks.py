#!/usr/bin/env python3
"""Golden landmarks from real dlib, for tests/landmarks_golden.rs.

What it does:
  1. Takes stills and video frames from $DFL_HOME/samples (default ~/.cache/dfl/samples):
     obama.jpg, obama2.jpg, obama3.jpg, biden.jpg, messi5.jpg, astronaut.png, and frames of
     carphone_pristine.mp4 and Megamind.avi (extracted to PNG with the ffmpeg CLI).
     Stills are cropped around their face and downscaled; every image is saved as an 8-bit RGB
     PNG under tests/data/golden/landmarks/ (all PNGs together stay under ~1.5 MB).
  2. Reloads those saved PNGs (so dlib sees exactly the pixels the Rust test reads), finds faces
     with dlib's HOG frontal detector, and runs dlib's 68-point shape predictor
     ($DFL_HOME/models/shape_predictor_68_face_landmarks.dat) on each HOG box and on one
     enlarged box shifted to stick out of the image (to exercise out-of-image sampling).
  3. Writes tests/data/golden/landmarks/expected.json: per case the PNG name, the box
     (left, top, right, bottom; right/bottom inclusive, as dlib.rectangle) and dlib's 68 integer
     points.

Deterministic: same inputs and versions give the same files.

needs: ~/.cache/dfl/venv/bin/pip install dlib-bin==20.0.1.post1 pillow numpy
       and the ffmpeg CLI on PATH.
usage: ~/.cache/dfl/venv/bin/python scripts/golden/dlib_landmarks.py
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import dlib
import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[2]
OUT_DIR = REPO / "tests" / "data" / "golden" / "landmarks"
DFL_HOME = Path(os.environ.get("DFL_HOME") or Path.home() / ".cache" / "dfl")
SAMPLES = DFL_HOME / "samples"
PREDICTOR = DFL_HOME / "models" / "shape_predictor_68_face_landmarks.dat"

# Stills: crop a square of this many face widths around the first HOG face, then downscale so
# the longer side is at most STILL_MAX_PX.
STILLS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "messi5.jpg", "astronaut.png"]
CROP_FACE_WIDTHS = 2.2
STILL_MAX_PX = 260
# Video frames (0-based frame numbers); Megamind is downscaled to this width.
VIDEOS = {
    "carphone_pristine.mp4": [0, 15, 30, 60, 90, 110],
    "Megamind.avi": [40, 120, 200],
}
VIDEO_MAX_WIDTH = 320
# The HOG detector is run with this many upsamplings (carphone faces are ~50 px).
UPSAMPLE = 1
# The out-of-image box: the HOG box scaled by this factor about its centre, then moved toward
# the nearest image edge until this fraction of its size sticks out.
ENLARGE = 1.3
POKE_OUT = 0.15


def hog_boxes(detector, rgb):
    """Returns dlib HOG boxes as (left, top, right, bottom), largest first."""
    dets = detector(rgb, UPSAMPLE)
    boxes = [(d.left(), d.top(), d.right(), d.bottom()) for d in dets]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]))


def prepare_still(detector, name):
    """Crops a still around its largest face and downscales it; returns a PIL RGB image."""
    img = ImageOps.exif_transpose(Image.open(SAMPLES / name)).convert("RGB")
    scale = min(1.0, 1200 / max(img.size))  # detect on a manageable size
    small = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    boxes = hog_boxes(detector, np.asarray(small))
    if not boxes:
        sys.exit(f"no HOG face in {name}")
    left, top, right, bottom = (v / scale for v in boxes[0])
    cx, cy, side = (left + right) / 2, (top + bottom) / 2, (right - left) * CROP_FACE_WIDTHS
    crop = (
        max(0, round(cx - side / 2)),
        max(0, round(cy - side / 2)),
        min(img.width, round(cx + side / 2)),
        min(img.height, round(cy + side / 2)),
    )
    img = img.crop(crop)
    factor = min(1.0, STILL_MAX_PX / max(img.size))
    return img.resize((round(img.width * factor), round(img.height * factor)), Image.LANCZOS)


def video_frame(name, index):
    """Returns frame `index` of a sample video as a PIL RGB image (decoded by ffmpeg)."""
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "frame.png"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(SAMPLES / name),
             "-vf", f"select=eq(n\\,{index})", "-frames:v", "1", "-pix_fmt", "rgb24", str(png)],
            check=True,
        )
        img = Image.open(png).convert("RGB")
    if img.width > VIDEO_MAX_WIDTH:
        factor = VIDEO_MAX_WIDTH / img.width
        img = img.resize((VIDEO_MAX_WIDTH, round(img.height * factor)), Image.LANCZOS)
    return img


def poking_box(box, width, height):
    """Enlarges `box` and shifts it across the nearest image edge."""
    left, top, right, bottom = box
    cx, cy = (left + right) / 2, (top + bottom) / 2
    w, h = (right - left) * ENLARGE, (bottom - top) * ENLARGE
    left, top = round(cx - w / 2), round(cy - h / 2)
    right, bottom = left + round(w), top + round(h)
    gaps = {"left": left, "top": top, "right": width - 1 - right, "bottom": height - 1 - bottom}
    edge = min(gaps, key=gaps.get)
    dx = {"left": -(gaps["left"] + round(POKE_OUT * w)),
          "right": gaps["right"] + round(POKE_OUT * w)}.get(edge, 0)
    dy = {"top": -(gaps["top"] + round(POKE_OUT * h)),
          "bottom": gaps["bottom"] + round(POKE_OUT * h)}.get(edge, 0)
    return (left + dx, top + dy, right + dx, bottom + dy)


def save_images(detector):
    """Writes every input image as PNG; returns their file names."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    names = []
    for still in STILLS:
        name = Path(still).stem + ".png"
        prepare_still(detector, still).save(OUT_DIR / name, optimize=True)
        names.append(name)
    for video, frames in VIDEOS.items():
        for index in frames:
            name = f"{Path(video).stem}_f{index:03d}.png"
            video_frame(video, index).save(OUT_DIR / name, optimize=True)
            names.append(name)
    return names


def points(predictor, rgb, box):
    shape = predictor(rgb, dlib.rectangle(*box))
    return [[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)]


def cases_for(detector, predictor, name):
    rgb = np.ascontiguousarray(np.asarray(Image.open(OUT_DIR / name).convert("RGB")))
    height, width = rgb.shape[:2]
    cases = []
    for k, box in enumerate(hog_boxes(detector, rgb)):
        for kind, b in (("hog", box), ("poking", poking_box(box, width, height))):
            cases.append({
                "name": f"{Path(name).stem}_face{k}_{kind}",
                "image": name,
                "box": list(b),
                "points": points(predictor, rgb, b),
            })
    return cases


def main():
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(PREDICTOR))
    names = save_images(detector)
    cases = [c for name in names for c in cases_for(detector, predictor, name)]
    header = {
        "generator": "scripts/golden/dlib_landmarks.py",
        "dlib_version": dlib.__version__,
        "hog_upsample": UPSAMPLE,
    }
    # One case per line keeps diffs readable.
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in header.items()]
    body = ",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in cases)
    with open(OUT_DIR / "expected.json", "w") as f:
        f.write("{\n" + "\n".join(lines) + '\n "cases": [\n' + body + "\n ]\n}\n")
    total = sum((OUT_DIR / n).stat().st_size for n in names)
    print(f"{len(cases)} cases from {len(names)} images ({total / 1e6:.2f} MB of PNG)")
    for c in cases:
        print(f"  {c['name']}: box {c['box']}")


if __name__ == "__main__":
    main()
