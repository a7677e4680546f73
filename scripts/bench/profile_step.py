#!/usr/bin/env python3
"""Profiles one SAEHD training step per op, dfl's beside PyTorch's: runs
examples/train_step.rs and scripts/bench/torch_step.py with --profile (one untimed step under
libtorch's profiler after the timed ones), then aggregates both Chrome traces by op name.

Printed per model:
- the phases (user ranges both sides open: zero_grad, forward, loss, backward, optimizer),
  wall time of each;
- the top ops by self CPU time (an op's time minus the ops it called), with calls, both sides;
- the top autograd nodes (backward functions) by total time, both sides;
- groups: forward / loss / backward / optimizer ops, and copies and casts (copy_, contiguous,
  clone, to, _to_copy, cat, fill_, zero_, zeros, empty) wherever they run.

usage: ~/.cache/dfl/venv/bin/python scripts/bench/profile_step.py [archi resolution ...]
           [--batch 8] [--steps 1] [--top 12] [--out DIR]
       ~/.cache/dfl/venv/bin/python scripts/bench/profile_step.py --traces OURS.json THEIRS.json

Default models: df 128 and liae-ud 128. Build the example first (scripts/bench/train_step.sh
does; or `cargo build --release --example train_step`).
"""
import argparse
import collections
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
PHASES = ["zero_grad", "forward", "loss", "backward", "optimizer"]
COPY_OPS = {
    "aten::copy_", "aten::contiguous", "aten::clone", "aten::to", "aten::_to_copy", "aten::cat",
    "aten::fill_", "aten::zero_", "aten::zeros", "aten::zeros_like", "aten::empty",
    "aten::empty_like", "aten::empty_strided", "aten::new_zeros", "aten::reshape",
    "aten::_unsafe_view", "aten::view", "aten::permute",
}
NODE_PREFIX = "autograd::engine::evaluate_function: "


def load(path):
    with open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    return [e for e in events if e.get("ph") == "X" and "dur" in e]


def aggregate(path):
    """Returns (phases {name: ms}, ops {name: [self_ms, calls]}, nodes {name: [ms, calls]},
    groups {group: ms}) of one trace."""
    events = load(path)
    ranges = [e for e in events if e.get("cat") == "user_annotation" and e["name"] in PHASES]
    phases = collections.Counter()
    for r in ranges:
        phases[r["name"]] += r["dur"] / 1e3

    def phase_of(ts):
        for r in ranges:
            if r["ts"] <= ts <= r["ts"] + r["dur"]:
                return r["name"]
        return "other"

    ops = [e for e in events if e.get("cat") == "cpu_op"]
    by_tid = collections.defaultdict(list)
    for e in ops:
        by_tid[(e.get("pid"), e.get("tid"))].append(e)
    self_us = {}
    for evs in by_tid.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for e in evs:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
                stack.pop()
            self_us[id(e)] = e["dur"]
            if stack:
                self_us[id(stack[-1])] -= e["dur"]
            stack.append(e)
    table = collections.defaultdict(lambda: [0.0, 0])
    nodes = collections.defaultdict(lambda: [0.0, 0])
    groups = collections.Counter()
    for e in ops:
        name, ms = e["name"], max(self_us[id(e)], 0) / 1e3
        table[name][0] += ms
        table[name][1] += 1
        if name.startswith(NODE_PREFIX):
            node = nodes[name[len(NODE_PREFIX):]]
            node[0] += e["dur"] / 1e3
            node[1] += 1
        phase = phase_of(e["ts"])
        groups["copies/casts" if name in COPY_OPS else phase] += ms
        groups["all ops (self)"] += ms
    return phases, table, nodes, groups


def fmt_ms(x):
    return f"{x:9.1f}" if x else "        -"


def report(title, ours_path, theirs_path, top):
    ours, theirs = aggregate(ours_path), aggregate(theirs_path)
    print(f"\n## {title}: dfl ({ours_path}) vs PyTorch ({theirs_path}); times in ms\n")
    print("| phase | dfl | PyTorch | dfl − PyTorch |\n|---|---:|---:|---:|")
    for p in PHASES:
        a, b = ours[0].get(p, 0.0), theirs[0].get(p, 0.0)
        print(f"| {p} | {a:.1f} | {b:.1f} | {a - b:+.1f} |")
    a, b = sum(ours[0].values()), sum(theirs[0].values())
    print(f"| **step** | **{a:.1f}** | **{b:.1f}** | **{a - b:+.1f}** |")

    print("\n| group (self time) | dfl | PyTorch | dfl − PyTorch |\n|---|---:|---:|---:|")
    for g in PHASES + ["copies/casts", "other", "all ops (self)"]:
        a, b = ours[3].get(g, 0.0), theirs[3].get(g, 0.0)
        if a or b:
            print(f"| {g} | {a:.1f} | {b:.1f} | {a - b:+.1f} |")

    def side_by_side(header, a, b, n):
        names = sorted(set(a) | set(b), key=lambda k: -max(a.get(k, [0])[0], b.get(k, [0])[0]))
        print(f"\n| {header} | dfl ms | calls | PyTorch ms | calls | dfl − PyTorch |")
        print("|---|---:|---:|---:|---:|---:|")
        for k in names[:n]:
            (am, ac), (bm, bc) = a.get(k, (0.0, 0)), b.get(k, (0.0, 0))
            print(f"| `{k}` | {am:.1f} | {ac} | {bm:.1f} | {bc} | {am - bm:+.1f} |")

    side_by_side("op (self CPU time)", ours[1], theirs[1], top)
    side_by_side("autograd node (total)", ours[2], theirs[2], top)
    # The ops whose time differs most, whichever side is larger.
    diff = sorted(set(ours[1]) | set(theirs[1]),
                  key=lambda k: -abs(ours[1].get(k, [0])[0] - theirs[1].get(k, [0])[0]))
    print("\nlargest differences (dfl − PyTorch, ms): " + ", ".join(
        f"`{k}` {ours[1].get(k, [0])[0] - theirs[1].get(k, [0])[0]:+.0f}" for k in diff[:8]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", default=["df", "128", "liae-ud", "128"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1, help="timed steps before the profiled one")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--out", default=os.environ.get("TMPDIR", "/tmp"))
    ap.add_argument("--traces", nargs=2, metavar=("OURS", "THEIRS"))
    args = ap.parse_args()
    if args.traces:
        report("traces", args.traces[0], args.traces[1], args.top)
        return
    dfl_home = pathlib.Path(os.environ.get("DFL_HOME", pathlib.Path.home() / ".cache/dfl"))
    example = REPO / "target/release/examples/train_step"
    pairs = list(zip(args.models[::2], args.models[1::2]))
    for archi, res in pairs:
        ours = pathlib.Path(args.out) / f"dfl-{archi}-{res}.json"
        theirs = pathlib.Path(args.out) / f"torch-{archi}-{res}.json"
        step = [archi, res, str(args.batch), str(args.steps)]
        subprocess.run([str(example), *step, "--profile", str(ours)], check=True)
        subprocess.run([str(dfl_home / "venv/bin/python"), str(REPO / "scripts/bench/torch_step.py"),
                        *step, "--profile", str(theirs)], check=True)
        report(f"{archi}@{res} batch {args.batch}", ours, theirs, args.top)


if __name__ == "__main__":
    sys.exit(main())
