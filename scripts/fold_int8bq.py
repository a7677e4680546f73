#!/usr/bin/env python3
"""Folds a block-quantized (int8bq) ONNX model into a plain fp32 one.

The OpenCV zoo's YuNet 2023mar and SFace 2021dec ship as int8 weights with per-block scales
(`DequantizeLinear` with a `block_size` attribute, opset 21). Debian's OpenCV 4.6 cannot load
that operator, so setup turns every constant `DequantizeLinear` (and a `Reshape` of its result)
into an fp32 initializer, once, and lowers the opset to 13. The result is deterministic for a
given input file and pinned onnx/numpy versions (setup checks its sha256).

usage: fold_int8bq.py IN_int8bq.onnx OUT_fp32.onnx
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def constants(graph):
    """Returns every value known at load time: initializers and Constant node outputs."""
    known = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            known[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return known


def expand_blocks(values, block_size, axis, length):
    """Repeats per-block scales (or zero points) along `axis` so they cover `length` items."""
    expanded = np.repeat(values, block_size, axis=axis)
    return np.take(expanded, np.arange(length), axis=axis)


def dequantize(node, known):
    """Computes (q - zero_point) * scale for one constant DequantizeLinear node, in fp32."""
    q = known[node.input[0]].astype(np.float32)
    scale = known[node.input[1]].astype(np.float32)
    has_zp = len(node.input) > 2 and node.input[2]
    zero = known[node.input[2]].astype(np.float32) if has_zp else np.zeros_like(scale)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
    if block:
        scale = expand_blocks(scale, block, axis, q.shape[axis])
        zero = expand_blocks(zero, block, axis, q.shape[axis])
    elif scale.ndim == 1 and q.ndim > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (q - zero) * scale


def fold(model):
    """Replaces constant dequantization in `model.graph` by fp32 initializers, in place."""
    graph = model.graph
    known = constants(graph)
    folded, kept = {}, []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in known:
            folded[node.output[0]] = known[node.output[0]] = dequantize(node, known)
        elif node.op_type == "Reshape" and node.input[0] in folded and node.input[1] in known:
            shape = known[node.input[1]].astype(np.int64)
            folded[node.output[0]] = known[node.output[0]] = folded[node.input[0]].reshape(shape)
        else:
            kept.append(node)
    used = {name for node in kept for name in node.input} | {out.name for out in graph.output}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in folded.items() if k in used]
    inits += [init for init in graph.initializer if init.name in used]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    # SFace lists its weights as graph inputs too; drop the stale ones.
    init_names = {init.name for init in inits}
    inputs = [i for i in graph.input if i.name not in init_names and i.name in used]
    del graph.input[:]
    graph.input.extend(inputs)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = 13
    model.ir_version = 7


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: fold_int8bq.py IN_int8bq.onnx OUT_fp32.onnx")
    src, dst = sys.argv[1], sys.argv[2]
    model = onnx.load(src)
    fold(model)
    onnx.checker.check_model(model)
    onnx.save(model, dst)


if __name__ == "__main__":
    main()
