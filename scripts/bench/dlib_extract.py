#!/usr/bin/env python3
"""The classic dlib face-extraction pipeline, the peer `dfl extract` is measured against.

`extract`: decodes a video with OpenCV in this process and hands the frames, in order, to a
multiprocessing pool with one worker per core. Each worker loads dlib's HOG frontal face
detector and its 68-point shape predictor ($DFL_HOME/models/shape_predictor_68_face_landmarks.dat,
DFL_HOME defaults to ~/.cache/dfl) once; per frame it detects on the grey image with one
upsampling (finds faces from about 40 px), predicts 68 points per box on the RGB image, aligns
each face to 256x256 with a least-squares similarity onto a mean-face template (bilinear warp)
and writes it as JPEG quality 95. One JSON line per frame, in frame order, goes to the jsonl:
{"frame": 0-based index, "faces": [{"box": [left, top, right, bottom], "points": 68 [x, y]}]}.
Prints frames, frames with a face, faces, the seconds end to end and after the models are
loaded (steady state).

`compare`: agreement of dfl's landmarks with dlib's. Reads the dlib jsonl and the output of
`dfl faceset info` (one JSON object per face file); dfl frame names are 1-based ("00001" is
frame 0). Each dfl face is matched to the dlib face of the same frame whose landmark centre is
nearest (within one inter-ocular distance); the error is the mean point distance divided by the
distance between dlib's outer eye corners (points 36 and 45). `--shift N` maps dfl frame k to
dlib frame k + N, a check that the mapping is right (a wrong one gives a much larger error).

Missing packages are installed into the running interpreter with pip.

usage: ~/.cache/dfl/venv/bin/python scripts/bench/dlib_extract.py extract VIDEO OUT_DIR OUT_JSONL
       ~/.cache/dfl/venv/bin/python scripts/bench/dlib_extract.py compare DLIB_JSONL DFL_INFO [--shift N]
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

START = time.perf_counter()
REQUIREMENTS = ["dlib-bin==20.0.1.post1", "opencv-python-headless", "numpy"]
try:
    import cv2
    import dlib
    import numpy as np
except ImportError:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    import cv2
    import dlib
    import numpy as np

DFL_HOME = Path(os.environ.get("DFL_HOME") or Path.home() / ".cache" / "dfl")
PREDICTOR = DFL_HOME / "models" / "shape_predictor_68_face_landmarks.dat"
UPSAMPLE = 1
SIZE = 256
JPEG_QUALITY = 95
CHUNKSIZE = 4
# DFL's mean face (eyebrows, nose, eyes, mouth corners: these 68-point indices) in a unit square,
# placed in the middle 60 % of the output.
TEMPLATE_POINTS = list(range(17, 49)) + [54]
MEAN_FACE = np.array([
    [0.000213256, 0.106454], [0.0752622, 0.038915], [0.18113, 0.0187482], [0.29077, 0.0344891],
    [0.393397, 0.0773906], [0.586856, 0.0773906], [0.689483, 0.0344891], [0.799124, 0.0187482],
    [0.904991, 0.038915], [0.98004, 0.106454], [0.490127, 0.203352], [0.490127, 0.307009],
    [0.490127, 0.409805], [0.490127, 0.515625], [0.36688, 0.587326], [0.426036, 0.609345],
    [0.490127, 0.628106], [0.554217, 0.609345], [0.613373, 0.587326], [0.121737, 0.216423],
    [0.187122, 0.178758], [0.265825, 0.179852], [0.334606, 0.231733], [0.260918, 0.245099],
    [0.182743, 0.244077], [0.645647, 0.231733], [0.714428, 0.179852], [0.793132, 0.178758],
    [0.858516, 0.216423], [0.79751, 0.244077], [0.719335, 0.245099], [0.254149, 0.780233],
    [0.726104, 0.780233],
])
TEMPLATE = (0.2 + 0.6 * MEAN_FACE) * SIZE

# Per worker process: (detector, predictor, output folder).
_worker = None


def umeyama(src, dst):
    """Returns the 2x3 least-squares similarity (no reflection) mapping src points onto dst."""
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rot = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(0).sum()
    return np.hstack([scale * rot, (dst_mean - scale * rot @ src_mean)[:, None]])


def init_worker(out_dir, ready):
    """Loads the models once per worker, then waits until every worker has."""
    global _worker
    _worker = (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(PREDICTOR)), out_dir)
    ready.wait()


def process_frame(item):
    """Detects, landmarks, aligns and writes the faces of one frame; returns its jsonl record."""
    index, bgr = item
    detector, predictor, out_dir = _worker
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    faces = []
    for k, box in enumerate(detector(grey, UPSAMPLE)):
        shape = predictor(rgb, box)
        points = [[p.x, p.y] for p in shape.parts()]
        mat = umeyama(np.array(points, dtype=np.float64)[TEMPLATE_POINTS], TEMPLATE)
        face = cv2.warpAffine(bgr, mat, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        cv2.imwrite(str(out_dir / f"{index:06d}_{k}.jpg"), face,
                    [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        faces.append({"box": [box.left(), box.top(), box.right(), box.bottom()], "points": points})
    return {"frame": index, "faces": faces}


def frames(video):
    """Yields (0-based index, BGR frame) of a video."""
    cap = cv2.VideoCapture(str(video))
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        yield index, frame
        index += 1
    cap.release()


def extract(args):
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = os.cpu_count()
    ready = multiprocessing.Barrier(workers + 1)
    counts = {"frames": 0, "with_face": 0, "faces": 0}
    with multiprocessing.Pool(workers, init_worker, (out_dir, ready)) as pool, \
            open(args.out_jsonl, "w") as log:
        ready.wait()
        loaded = time.perf_counter()
        for record in pool.imap(process_frame, frames(args.video), CHUNKSIZE):
            log.write(json.dumps(record, separators=(",", ":")) + "\n")
            counts["frames"] += 1
            counts["with_face"] += bool(record["faces"])
            counts["faces"] += len(record["faces"])
    end = time.perf_counter()
    print(f"frames={counts['frames']} with_face={counts['with_face']} faces={counts['faces']} "
          f"seconds={end - START:.3f} steady_seconds={end - loaded:.3f} workers={workers}")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def inter_ocular(points):
    return float(np.linalg.norm(points[36] - points[45]))


def nearest(points, candidates):
    """Returns the candidate (68x2 array) whose centre is nearest to that of `points`, or None
    when none is within one inter-ocular distance."""
    centre = points.mean(0)
    best = min(candidates, key=lambda c: np.linalg.norm(c.mean(0) - centre), default=None)
    if best is None or np.linalg.norm(best.mean(0) - centre) > inter_ocular(best):
        return None
    return best


def compare(args):
    dlib_faces = {r["frame"]: [np.array(f["points"], dtype=np.float64) for f in r["faces"]]
                  for r in read_jsonl(args.dlib_jsonl)}
    errors, frames_both = [], set()
    for face in read_jsonl(args.dfl_info):
        frame = int(face["source_filename"]) - 1 + args.shift
        points = np.array(face["source_landmarks"], dtype=np.float64)
        match = nearest(points, dlib_faces.get(frame, []))
        if match is not None:
            errors.append(np.linalg.norm(points - match, axis=1).mean() / inter_ocular(match))
            frames_both.add(frame)
    if not errors:
        print("matched=0 frames=0 nme_median=nan nme_p90=nan")
        return
    print(f"matched={len(errors)} frames={len(frames_both)} "
          f"nme_median={np.median(errors):.4f} nme_p90={np.percentile(errors, 90):.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(required=True)
    p = sub.add_parser("extract", help="run the dlib pipeline on a video")
    p.add_argument("video")
    p.add_argument("out_dir")
    p.add_argument("out_jsonl")
    p.set_defaults(run=extract)
    p = sub.add_parser("compare", help="landmark agreement of dfl with dlib")
    p.add_argument("dlib_jsonl")
    p.add_argument("dfl_info")
    p.add_argument("--shift", type=int, default=0)
    p.set_defaults(run=compare)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
