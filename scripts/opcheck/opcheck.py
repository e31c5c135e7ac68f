#!/usr/bin/env python3
"""Single-op TFLite cross-check for ember's pointwise kernels.

Builds one-operator .tflite files (JSON -> flatc), runs them with TFLite's *reference* kernels
(OpResolverType.BUILTIN_REF) on random inputs, and writes every case to a text file that the
ignored Rust test `runtime/tests/opcheck.rs` replays through ember's kernels:

    python3 scripts/opcheck/opcheck.py /tmp/opcheck.txt
    EMBER_OPCHECK=/tmp/opcheck.txt cargo test -p ember-runtime --test opcheck -- --ignored

This is a kernel-development tool, not the golden-vector set (that lives with the goldens).

Record format, one line each:
    case <OP> [key=value ...]
    in|const|out <dtype> <scale_f32_bits> <zero_point> <rank> <dims...> : <values...>
    end
Float values and scales are written as their IEEE-754 bit patterns so nothing is lost.
"""
import json
import re
import os
import subprocess
import sys
import tempfile

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.environ.get("TFLITE_SCHEMA", "/work/shared/schemas/tflite_schema.fbs")
DTYPES = {"INT8": np.int8, "FLOAT32": np.float32, "INT32": np.int32}
CODES = {"ADD": 0, "CONCATENATION": 2, "DEQUANTIZE": 6, "LOGISTIC": 14, "MUL": 18, "SOFTMAX": 25,
         "TANH": 28, "PAD": 34, "MEAN": 40, "PADV2": 60, "QUANTIZE": 114}
OPTIONS = {"ADD": "AddOptions", "MUL": "MulOptions", "MEAN": "ReducerOptions",
           "CONCATENATION": "ConcatenationOptions", "SOFTMAX": "SoftmaxOptions", "PAD": "PadOptions",
           "PADV2": "PadV2Options", "QUANTIZE": "QuantizeOptions", "DEQUANTIZE": "DequantizeOptions"}


class T:
    """A tensor of the one-op model: `data` set means constant."""

    def __init__(self, dtype, shape, scale=None, zp=0, data=None):
        self.dtype, self.shape, self.scale, self.zp, self.data = dtype, list(shape), scale, zp, data


def build(op, inputs, output, options):
    tensors, buffers = [], [{}]
    for i, t in enumerate(inputs + [output]):
        entry = {"shape": t.shape, "type": t.dtype, "name": f"t{i}", "buffer": 0}
        if t.scale is not None:
            entry["quantization"] = {"scale": [float(t.scale)], "zero_point": [int(t.zp)]}
        if t.data is not None:
            arr = np.asarray(t.data, dtype=DTYPES[t.dtype]).reshape(t.shape)
            buffers.append({"data": list(arr.tobytes())})
            entry["buffer"] = len(buffers) - 1
        tensors.append(entry)
    operator = {"opcode_index": 0, "inputs": list(range(len(inputs))), "outputs": [len(inputs)]}
    if op in OPTIONS:
        operator["builtin_options_type"] = OPTIONS[op]
        operator["builtin_options"] = options
    model = {
        "version": 3,
        "operator_codes": [{"deprecated_builtin_code": min(CODES[op], 127), "builtin_code": op, "version": 1}],
        "subgraphs": [{"tensors": tensors, "operators": [operator], "outputs": [len(inputs)],
                       "inputs": [i for i, t in enumerate(inputs) if t.data is None]}],
        "buffers": buffers,
    }
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.json")
        with open(path, "w") as f:
            json.dump(model, f)
        # Old flatc releases reject `= N (deprecated)` on enum values; drop the attribute.
        schema = os.path.join(d, "schema.fbs")
        with open(SCHEMA) as src, open(schema, "w") as dst:
            dst.write(re.sub(r"(\w)\s*\(deprecated\),", r"\1,", src.read()))
        subprocess.run(["flatc", "-b", "-o", d, schema, path], check=True)
        with open(os.path.join(d, "m.tflite"), "rb") as f:
            return f.read()


def run(model_bytes, feeds):
    interp = Interpreter(model_content=model_bytes,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    for detail, value in zip(interp.get_input_details(), feeds):
        interp.set_tensor(detail["index"], value)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def fmt_values(dtype, arr):
    arr = np.asarray(arr, dtype=DTYPES[dtype]).ravel()
    if dtype == "FLOAT32":
        return " ".join(str(v) for v in arr.view(np.uint32))
    return " ".join(str(int(v)) for v in arr)


def fmt_tensor(role, t, values):
    scale = np.float32(t.scale if t.scale is not None else 0.0).view(np.uint32)
    dims = " ".join(str(d) for d in t.shape)
    return f"{role} {t.dtype} {scale} {t.zp} {len(t.shape)} {dims} : {fmt_values(t.dtype, values)}"


def random_values(rng, t):
    n = int(np.prod(t.shape))
    if t.dtype == "INT8":
        return rng.integers(-128, 128, n).astype(np.int8).reshape(t.shape)
    return (rng.standard_normal(n) * 4).astype(np.float32).reshape(t.shape)


def case(out, rng, op, inputs, output, options, attrs=""):
    model = build(op, inputs, output, options)
    feeds = [random_values(rng, t) for t in inputs if t.data is None]
    result = run(model, feeds)
    out.write(f"case {op} {attrs}\n")
    fed = iter(feeds)
    for t in inputs:
        if t.data is None:
            out.write(fmt_tensor("in", t, next(fed)) + "\n")
        else:
            out.write(fmt_tensor("const", t, t.data) + "\n")
    out.write(fmt_tensor("out", output, result) + "\n")
    out.write("end\n")


def rand_scale(rng):
    return float(np.float32(np.exp(rng.uniform(np.log(1e-3), np.log(0.5)))))


def rand_zp(rng):
    return int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))


ACTS = ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]
BCAST = [([2, 3, 4], [2, 3, 4]), ([1, 3, 1, 5], [2, 1, 4, 5]), ([4], [2, 3, 4]), ([2, 1, 3], [1]),
         ([1, 2, 1, 2, 3], [2, 1, 3, 1, 1]), ([3, 1], [1, 4])]


def bshape(a, b):
    r = max(len(a), len(b))
    a, b = [1] * (r - len(a)) + a, [1] * (r - len(b)) + b
    return [max(x, y) for x, y in zip(a, b)]


def generate(out, rng):
    for op in ["ADD", "MUL"]:
        for (a, b) in BCAST:
            for act in ACTS:
                q = lambda s: T("INT8", s, rand_scale(rng), rand_zp(rng))
                case(out, rng, op, [q(a), q(b)], q(bshape(a, b)), {"fused_activation_function": act},
                     f"act={act}")
                f = lambda s: T("FLOAT32", s)
                case(out, rng, op, [f(a), f(b)], f(bshape(a, b)), {"fused_activation_function": act},
                     f"act={act}")
    for shape, axes, keep in [([1, 5, 7, 8], [1, 2], True), ([2, 3, 4, 5], [2, 1], True),
                              ([1, 5, 7, 8], [1, 2], False), ([2, 3, 4, 5], [3], True),
                              ([2, 3, 4, 5], [-1], False), ([3, 50, 6], [1], False),
                              ([2, 3, 4, 5], [0, 2], True), ([4, 6], [0, 1], False),
                              ([1, 40, 40, 3], [1, 2], True), ([2, 4, 4, 3], [1, 2], False)]:
        outshape = [1 if (i in [a % len(shape) for a in axes]) else d for i, d in enumerate(shape)]
        if not keep:
            outshape = [d for i, d in enumerate(shape) if i not in [a % len(shape) for a in axes]]
        ax = T("INT32", [len(axes)], data=np.array(axes, np.int32))
        for same in [False, True]:
            s, z = rand_scale(rng), rand_zp(rng)
            qin = T("INT8", shape, s, z)
            qout = T("INT8", outshape, s, z) if same else T("INT8", outshape, rand_scale(rng), rand_zp(rng))
            case(out, rng, "MEAN", [qin, ax], qout, {"keep_dims": keep}, f"keep_dims={int(keep)}")
        case(out, rng, "MEAN", [T("FLOAT32", shape), ax], T("FLOAT32", outshape), {"keep_dims": keep},
             f"keep_dims={int(keep)}")
    for shape in [[1, 12], [3, 10], [2, 2, 35], [1, 1]]:
        for beta in [1.0, 0.5]:
            s = rand_scale(rng) * 0.3
            case(out, rng, "SOFTMAX", [T("INT8", shape, s, rand_zp(rng))],
                 T("INT8", shape, 1.0 / 256, -128), {"beta": beta}, f"beta={np.float32(beta).view(np.uint32)}")
            case(out, rng, "SOFTMAX", [T("FLOAT32", shape)], T("FLOAT32", shape), {"beta": beta},
                 f"beta={np.float32(beta).view(np.uint32)}")
    for op, oscale, ozp in [("LOGISTIC", 1.0 / 256, -128), ("TANH", 1.0 / 128, 0)]:
        for _ in range(4):
            case(out, rng, op, [T("INT8", [256], rand_scale(rng) * 0.5, rand_zp(rng))],
                 T("INT8", [256], oscale, ozp), {})
        case(out, rng, op, [T("FLOAT32", [300])], T("FLOAT32", [300]), {})
    for _ in range(4):
        s = rand_scale(rng)
        case(out, rng, "QUANTIZE", [T("FLOAT32", [200])], T("INT8", [200], s * 0.2, rand_zp(rng)), {})
        case(out, rng, "QUANTIZE", [T("INT8", [256], s, rand_zp(rng))], T("INT8", [256], rand_scale(rng), rand_zp(rng)), {})
        case(out, rng, "DEQUANTIZE", [T("INT8", [256], s, rand_zp(rng))], T("FLOAT32", [256]), {})
    for shape, pads in [([1, 3, 4, 2], [[0, 0], [1, 2], [2, 1], [0, 0]]), ([2, 3], [[1, 0], [0, 3]]),
                        ([1, 2, 2, 2, 2], [[0, 1], [1, 0], [0, 0], [2, 2], [1, 1]])]:
        outshape = [d + p[0] + p[1] for d, p in zip(shape, pads)]
        pt = T("INT32", [len(shape), 2], data=np.array(pads, np.int32))
        s, z = rand_scale(rng), rand_zp(rng)
        case(out, rng, "PAD", [T("INT8", shape, s, z), pt], T("INT8", outshape, s, z), {})
        case(out, rng, "PAD", [T("FLOAT32", shape), pt], T("FLOAT32", outshape), {})
        case(out, rng, "PADV2", [T("INT8", shape, s, z), pt, T("INT8", [1], s, z, data=np.array([77], np.int8))],
             T("INT8", outshape, s, z), {})
    for shapes, axis in [([[2, 3], [2, 5]], 1), ([[1, 4, 4, 2], [1, 4, 4, 3], [1, 4, 4, 1]], -1),
                         ([[2, 3, 4], [1, 3, 4]], 0), ([[2, 3, 4], [2, 2, 4]], 1)]:
        outshape = list(shapes[0])
        outshape[axis] = sum(s[axis] for s in shapes)
        same_s, same_z = rand_scale(rng), rand_zp(rng)
        # TFLite's Prepare rejects int8 inputs whose scale or zero point differ from the output's.
        for _ in range(2):
            ins = [T("INT8", s, same_s, same_z) for s in shapes]
            case(out, rng, "CONCATENATION", ins, T("INT8", outshape, same_s, same_z),
                 {"axis": axis, "fused_activation_function": "NONE"}, f"axis={axis}")
        case(out, rng, "CONCATENATION", [T("FLOAT32", s) for s in shapes], T("FLOAT32", outshape),
             {"axis": axis, "fused_activation_function": "NONE"}, f"axis={axis}")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/opcheck.txt"
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with open(path, "w") as out:
        generate(out, np.random.default_rng(seed))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
