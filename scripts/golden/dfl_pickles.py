#!/usr/bin/env python3
"""Writes the fixtures for dfl's reader of DeepFaceLab's pickles (src/dfl_format/).

Run with CPython 3 and numpy (1.x or 2.x) from the repository root:

    /root/.cache/dfl/venv/bin/python scripts/golden/dfl_pickles.py

ffmpeg must be on PATH (it encodes the two tiny JPEGs). Everything else is made here.

Output in tests/fixtures/dfl/:

  manifest.json          one entry per fixture: its file, its kind (pickle, jpeg, png) and
                         either the expected value (`expect`, a file below) or a piece of the
                         error text the reader must give (`error`); images also give their size
  face.expected.json     what face_p{2,3,4,5}.pickle, face_np1_p{3,4}.pickle and face.jpg
                         decode to: a face's metadata dict as DeepFaceLab writes it
  numpy.expected.json    what numpy_p{2,3,4,5}.pickle decode to: every array and scalar form,
                         every int width, floats, strings, bytes, shared objects
  batches_p4.pickle      {"list": [i % 7 for i in 0..1001], "dict": {i: None for i in 0..1001}}
                         (the Rust test builds this value itself)
  pak.expected.json      what pak_configs_p4.pickle and pak_configs_getattr_p4.pickle decode
                         to: a faceset.pak sample-config list; DFL's two IntEnums become ints
                         (pickled by value, and by name as Python 3.11 and later do)
  small.expected.json    the metadata inside face_fcwp.png and face_janf.png (DeepFaceLab's
                         PNG faces, chunk types of 2019-2020 and of 2021)
  plain.jpg, face.jpg    a 24x16 JPEG without and with an APP15 segment holding the face's
                         pickle (protocol 3, numpy 1.x names), inserted as DeepFaceLab does
  hostile.jpg            the JPEG with an APP15 pickle that would run a command
  hostile_*.pickle       pickles that would run a command (or build arbitrary objects) when
                         loaded by Python; the reader must refuse them and run nothing
  bad_*.pickle           malformed pickles: the reader must give a clean error

The expected values use one JSON form for every pickled value:
  {"t": "none"} {"t": "bool", "v": b} {"t": "int", "v": n}
  {"t": "float", "bits": "<16 hex digits of the IEEE-754 double>"}   (exact, NaN included)
  {"t": "str", "v": s} {"t": "bytes", "hex": h}
  {"t": "list" | "tuple", "v": [..]} {"t": "dict", "v": [[key, value], ..]}   (in order)
  {"t": "ndarray", "dtype": "<f4", "shape": [..], "hex": h}   (bytes in C order, as stored)
  {"t": "scalar", "dtype": "<f4", "hex": h}                   (a numpy scalar)

face_np1_* are the numpy-2 pickles with the module names numpy 1.x writes
(numpy.core.multiarray, numpy.core.numeric), which is what real DeepFaceLab files contain;
protocol 3 is what DeepFaceLab's Python (3.6, 3.7) writes by default.
"""

import enum
import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import tempfile
import types
import zlib
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "dfl"
# The hostile pickles would create this file if Python loaded them.
PWNED_MARKER = "/tmp/dfl-pickle-fixture-pwned"


def expect(v):
    """The JSON form of a value (see the module doc)."""
    if v is None:
        return {"t": "none"}
    if isinstance(v, bool):
        return {"t": "bool", "v": v}
    if isinstance(v, np.generic):
        return {"t": "scalar", "dtype": v.dtype.str, "hex": v.tobytes().hex()}
    if isinstance(v, np.ndarray):
        return {"t": "ndarray", "dtype": v.dtype.str, "shape": list(v.shape),
                "hex": v.tobytes(order="C").hex()}
    if isinstance(v, int):
        return {"t": "int", "v": int(v)}
    if isinstance(v, float):
        return {"t": "float", "bits": struct.pack(">d", v).hex()}
    if isinstance(v, str):
        return {"t": "str", "v": v}
    if isinstance(v, (bytes, bytearray)):
        return {"t": "bytes", "hex": bytes(v).hex()}
    if isinstance(v, list):
        return {"t": "list", "v": [expect(x) for x in v]}
    if isinstance(v, tuple):
        return {"t": "tuple", "v": [expect(x) for x in v]}
    if isinstance(v, dict):
        return {"t": "dict", "v": [[expect(k), expect(x)] for k, x in v.items()]}
    raise TypeError(type(v))


def png(width, height, rows, extra_chunks=()):
    """A grayscale 8-bit PNG; `extra_chunks` (type, data) go right before IEND."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
    for kind, data in extra_chunks:
        out += chunk(kind, data)
    return out + chunk(b"IEND", b"")


def jpeg(width, height):
    """A tiny baseline JPEG from ffmpeg's test pattern."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.jpg"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc=size={width}x{height}", "-frames:v", "1", "-q:v", "10",
                        str(path)], check=True)
        return path.read_bytes()


def jpeg_segments(data):
    """(marker, payload) of every segment before the scan, then the rest as one blob."""
    assert data[:2] == b"\xff\xd8"
    pos, segs = 2, []
    while True:
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        segs.append((marker, data[pos + 4:pos + 2 + length]))
        pos += 2 + length
        if marker == 0xDA:
            return segs, data[pos:]


def with_app15(data, payload):
    """The JPEG with an APP15 segment holding `payload` after its last APPn, as DFL writes."""
    segs, rest = jpeg_segments(data)
    last_app = max(i for i, (m, _) in enumerate(segs) if m & 0xF0 == 0xE0)
    segs.insert(last_app + 1, (0xEF, payload))
    out = b"\xff\xd8"
    for marker, body in segs:
        out += bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body
    return out + rest


def numpy1_names(data):
    """The pickle re-emitted with numpy 1.x's module names, unframed."""
    out = bytearray()
    ops = list(pickletools.genops(data))
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        if op.name == "FRAME":
            continue
        if op.name == "GLOBAL" and arg.startswith("numpy._core."):
            module, name = arg.split(" ")
            module = module.replace("numpy._core.", "numpy.core.")
            out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        elif op.name == "SHORT_BINUNICODE" and arg.startswith("numpy._core."):
            s = arg.replace("numpy._core.", "numpy.core.").encode()
            out += b"\x8c" + bytes([len(s)]) + s
        else:
            out += data[pos:end]
    return bytes(out)


def face_dict(rng):
    """A face's metadata as DeepFaceLab's extractor and XSeg tools leave it."""
    lm = (rng.random((68, 2)) * 256).astype(np.float32)
    mask = [[255 if 2 <= x <= 5 and 1 <= y <= 6 else 0 for x in range(8)] for y in range(8)]
    mask_png = png(8, 8, mask)
    return {
        "face_type": "whole_face",
        "landmarks": lm,
        "source_filename": "00017.png",
        "source_rect": (412, 96, 688, 372),
        # The extractor stores these as nested lists of Python floats.
        "source_landmarks": (lm.astype(np.float64) * 1.078125 + 400.0).tolist(),
        "image_to_face_mat": np.array([[1.25, -0.0625, -500.5], [0.0625, 1.25, -120.0]]),
        "eyebrows_expand_mod": 1.0,
        "seg_ie_polys": {"polys": [
            {"type": 1, "pts": np.array([[10, 10], [200, 12], [190, 240], [14, 230]],
                                        np.float32) + 0.5},
            {"type": 0, "pts": np.array([[90, 120], [140, 120], [115, 160]], np.float32)},
        ]},
        # cv2.imencode's result: a uint8 array of shape (N, 1).
        "xseg_mask": np.frombuffer(mask_png, np.uint8).reshape(-1, 1).copy(),
    }


def numpy_dict(rng):
    """Every array, scalar and plain-value form the reader must decode."""
    shared = [1, 2]
    return {
        "landmarks_f64": (rng.random((68, 2)) * 256).astype(np.float64),
        "fortran_i32": np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
        "fortran_u8_3d": np.asfortranarray(np.arange(24, dtype=np.uint8).reshape(2, 3, 4)),
        "zero_d": np.array(3.25),
        "empty": np.zeros((0, 3), np.float32),
        "bool": np.array([[True, False, True], [False, True, False]]),
        "big_endian_i4": np.array([1, -2, 300], dtype=">i4"),
        "f16": np.array([1.5, -2.0, 65504.0], dtype=np.float16),
        "u16": np.array([0, 65535], dtype=np.uint16),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u64": np.array([0, 2**64 - 1], dtype=np.uint64),
        "i64": np.array([-2**63, 2**63 - 1], dtype=np.int64),
        "scalar_f32": np.float32(1.5),
        "scalar_f64": np.float64(-0.1),
        "scalar_i64": np.int64(-2**63),
        "scalar_u8": np.uint8(200),
        "scalar_bool": np.bool_(True),
        "ints": [0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31 - 1, 2**31, -2**31 - 1,
                 2**40, -2**40, 2**63 - 1, -2**63],
        "floats": [0.0, -0.0, 1.5, -0.1, 5e-324, 1e308, float("inf"), float("-inf"),
                   float("nan")],
        "none": None,
        "bools": (True, False),
        "str": "Zoë – 😀",
        "empty_str": "",
        "bytes": b"\x00\xff\n.abc",
        "empty_bytes": b"",
        "bytearray": bytearray(b"\x01\x02\x80"),
        "empty_bytearray": bytearray(),
        "shared": (shared, shared),
        "nested": {"a": [{"b": ()}, [], {}]},
        "tuple_sizes": ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)),
        "non_str_keys": {1: "one", (2, 3): "pair", None: "none", 1.5: "float"},
    }


def dfl_enums(by_name):
    """DeepFaceLab's two IntEnums, under the module names they have in DFL's tree, pickled by
    value as Python up to 3.10 does (what DFL's Python writes), or by name as 3.11 and later
    do (`getattr(cls, name)`), whatever Python runs this script."""
    def reduce_ex(self, proto):
        if by_name:
            return getattr, (self.__class__, self._name_)
        return self.__class__, (self._value_,)

    class SampleType(enum.IntEnum):
        IMAGE = 0
        FACE = 1
        __reduce_ex__ = reduce_ex

    class FaceType(enum.IntEnum):
        FULL = 2
        WHOLE_FACE = 4
        __reduce_ex__ = reduce_ex

    for module, cls in (("samplelib.Sample", SampleType), ("facelib.FaceType", FaceType)):
        package = module.split(".")[0]
        sys.modules.setdefault(package, types.ModuleType(package))
        mod = types.ModuleType(module)
        setattr(mod, cls.__name__, cls)
        cls.__module__ = module
        cls.__qualname__ = cls.__name__
        sys.modules[module] = mod
    return SampleType, FaceType


def pak_configs(face, by_name):
    """Two sample configs as faceset.pak stores them (landmarks shortened to 4 points)."""
    SampleType, FaceType = dfl_enums(by_name)
    def config(name, mask):
        return {
            "sample_type": SampleType.FACE,
            "filename": name,
            "face_type": FaceType.WHOLE_FACE,
            "shape": (256, 256, 3),
            "landmarks": face["landmarks"][:4].tolist(),
            "seg_ie_polys": {"polys": []},
            "xseg_mask": None,
            "xseg_mask_compressed": mask,
            "eyebrows_expand_mod": 1.0,
            "source_filename": "00017.png",
            "person_name": None,
        }
    return [config("00017_0.jpg", face["xseg_mask"]), config("00018_0.jpg", None)]


class Reduce:
    """An object that pickles as a call of `fn(*args)`, the classic pickle exploit."""
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def sbu(s):
    """The opcode SHORT_BINUNICODE with its argument."""
    s = s.encode()
    return b"\x8c" + bytes([len(s)]) + s


def hostile():
    """(name, bytes, error text) of pickles that must be refused."""
    cmd = f"touch {PWNED_MARKER}"
    out = [
        ("hostile_posix_system_p2", pickle.dumps(Reduce(os.system, cmd), 2), "posix.system"),
        ("hostile_posix_system_p4", pickle.dumps(Reduce(os.system, cmd), 4), "posix.system"),
        ("hostile_builtins_eval_p2",
         pickle.dumps(Reduce(eval, f"__import__('os').system('{cmd}')"), 2), "builtins.eval"),
        ("hostile_builtins_eval_p4",
         pickle.dumps(Reduce(eval, f"__import__('os').system('{cmd}')"), 4), "builtins.eval"),
        ("hostile_subprocess_p4",
         pickle.dumps(Reduce(subprocess.Popen, ["touch", PWNED_MARKER]), 4), "subprocess.Popen"),
        # Hand-made: a pickler on Linux names os.system posix.system, but any loader resolves
        # os.system too.
        ("hostile_os_system_p2",
         b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd.encode() + b"\x85R.",
         "os.system"),
        ("hostile_os_system_p4",
         b"\x80\x04" + sbu("os") + sbu("system") + b"\x93" + sbu(cmd) + b"\x85R.", "os.system"),
        ("hostile_numpy_runstring_p4",
         b"\x80\x04" + sbu("numpy.testing._private.utils") + sbu("runstring") + b"\x93"
         + sbu(f"import os; os.system('{cmd}')") + b"}\x86R.",
         "numpy.testing._private.utils.runstring"),
        # getattr is read on DFL's enums only.
        ("hostile_getattr_p4",
         b"\x80\x04" + sbu("builtins") + sbu("getattr") + b"\x93" + sbu("numpy") + sbu("ndarray")
         + b"\x93" + sbu("tofile") + b"\x86R.", "builtins.getattr"),
        # A whitelisted global is still refused where it is used as something else.
        ("hostile_ndarray_call_p4",
         b"\x80\x04" + sbu("numpy") + sbu("ndarray") + b"\x93K\x02\x85R.", "numpy.ndarray"),
        # Opcodes that build arbitrary objects.
        ("hostile_inst_p0", b"(ios\nsystem\n.", "INST"),
        ("hostile_obj_p1", b"(N)o.", "OBJ"),
        ("hostile_newobj_p2", b"\x80\x02N)\x81.", "NEWOBJ"),
        ("hostile_newobj_ex_p4", b"\x80\x04N)}\x92.", "NEWOBJ_EX"),
        ("hostile_ext1_p2", b"\x80\x02\x82\x01.", "EXT1"),
        ("hostile_persid_p0", b"Pfoo\n.", "PERSID"),
        ("hostile_binpersid_p2", b"\x80\x02N\x51.", "BINPERSID"),
    ]
    return out


def malformed():
    """(name, bytes, error text) of broken pickles."""
    deep = []
    for _ in range(150):
        deep = [deep]
    cyclic = []
    cyclic.append(cyclic)
    bomb = b"\x80\x04N\x94"
    for i in range(40):  # each level is a pair of the previous one: 2**40 leaves
        bomb += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86\x94"
    bomb += b"."
    return [
        ("bad_memo", b"\x80\x04h\x05.", "memo"),
        ("bad_underflow", b"\x80\x02a.", "stack"),
        ("bad_unknown_opcode", b"\x80\x02\xff.", "0xff"),
        ("bad_protocol", b"\x80\x09N.", "protocol 9"),
        ("bad_huge_length", b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"abc.", "declares"),
        ("bad_no_stop", b"\x80\x04N", "truncated"),
        ("bad_int_too_large", pickle.dumps(2**64, 2), "64 bits"),
        ("bad_object_array", pickle.dumps(np.array([1, "a"], dtype=object), 4), "O8"),
        ("bad_structured_array", pickle.dumps(np.zeros(2, dtype=[("a", "<i4")]), 4), "V4"),
        ("bad_deep", pickle.dumps(deep, 4), "deeper"),
        ("bad_cycle", pickle.dumps(cyclic, 4), "contains itself"),
        ("bad_memo_bomb", bomb, "more than"),
        ("bad_stack_global_types", b"\x80\x04K\x01K\x02\x93.", "STACK_GLOBAL"),
        ("bad_set", pickle.dumps({1, 2}, 4), "EMPTY_SET"),
    ]


def main():
    # Only this script's files: subfolders (models/) belong to other fixture scripts.
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        if old.is_file():
            old.unlink()
    rng = np.random.default_rng(7)
    manifest = []

    def write(name, data):
        (OUT / name).write_bytes(data)

    def expectation(name, value):
        (OUT / name).write_text(json.dumps(expect(value), separators=(",", ":")) + "\n")

    face = face_dict(rng)
    expectation("face.expected.json", face)
    for p in (2, 3, 4, 5):
        write(f"face_p{p}.pickle", pickle.dumps(face, protocol=p))
        manifest.append({"file": f"face_p{p}.pickle", "kind": "pickle",
                         "expect": "face.expected.json"})
    for p in (3, 4):
        write(f"face_np1_p{p}.pickle", numpy1_names(pickle.dumps(face, protocol=p)))
        manifest.append({"file": f"face_np1_p{p}.pickle", "kind": "pickle",
                         "expect": "face.expected.json"})

    nums = numpy_dict(rng)
    expectation("numpy.expected.json", nums)
    for p in (2, 3, 4, 5):
        write(f"numpy_p{p}.pickle", pickle.dumps(nums, protocol=p))
        manifest.append({"file": f"numpy_p{p}.pickle", "kind": "pickle",
                         "expect": "numpy.expected.json"})

    # More than 1000 items: the pickler splits the appends and setitems into batches.
    # Its expected value is built by the Rust test (it would be 50 kB of JSON).
    batches = {"list": [i % 7 for i in range(1001)], "dict": {i: None for i in range(1001)}}
    write("batches_p4.pickle", pickle.dumps(batches, 4))
    manifest.append({"file": "batches_p4.pickle", "kind": "pickle", "expect": "batches"})

    expectation("pak.expected.json", pak_configs(face, False))  # the IntEnums are ints
    for by_name, name in ((False, "pak_configs_p4.pickle"), (True, "pak_configs_getattr_p4.pickle")):
        write(name, pickle.dumps(pak_configs(face, by_name), 4))
        manifest.append({"file": name, "kind": "pickle", "expect": "pak.expected.json"})

    plain = jpeg(24, 16)
    write("plain.jpg", plain)
    manifest.append({"file": "plain.jpg", "kind": "jpeg", "width": 24, "height": 16,
                     "expect": None})
    write("face.jpg", with_app15(plain, numpy1_names(pickle.dumps(face, 3))))
    manifest.append({"file": "face.jpg", "kind": "jpeg", "width": 24, "height": 16,
                     "expect": "face.expected.json"})
    evil = pickle.dumps(Reduce(os.system, f"touch {PWNED_MARKER}"), 3)
    write("hostile.jpg", with_app15(plain, evil))
    manifest.append({"file": "hostile.jpg", "kind": "jpeg", "error": "posix.system"})

    small = {"face_type": "full_face", "landmarks": face["landmarks"][:3].tolist(),
             "source_rect": [1, 2, 3, 4], "eyebrows_expand_mod": 1.0}
    expectation("small.expected.json", small)
    rows = [[(x * 30 + y * 7) % 256 for x in range(8)] for y in range(6)]
    for chunk, p in ((b"fcWp", 3), (b"jaNf", 4)):
        name = f"face_{chunk.decode().lower()}.png"
        write(name, png(8, 6, rows, [(chunk, pickle.dumps(small, p))]))
        manifest.append({"file": name, "kind": "png", "width": 8, "height": 6,
                         "expect": "small.expected.json"})

    for name, data, error in hostile() + malformed():
        write(f"{name}.pickle", data)
        manifest.append({"file": f"{name}.pickle", "kind": "pickle", "error": error})

    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (OUT / "README.md").write_text(
        "Fixtures for `src/dfl_format/`: DeepFaceLab-style pickles, face images with "
        "embedded metadata, and hostile or malformed pickles. Produced by "
        f"`scripts/golden/dfl_pickles.py` (CPython {sys.version.split()[0]}, numpy "
        f"{np.__version__}, ffmpeg for the JPEGs); `manifest.json` says what each one must "
        "decode to or which error it must give.\n")
    total = sum(f.stat().st_size for f in OUT.iterdir() if f.is_file())
    print(f"wrote {len(manifest)} fixtures, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
