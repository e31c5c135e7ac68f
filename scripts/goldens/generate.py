#!/usr/bin/env python3
"""Generates ember's golden vectors: inputs and TFLite reference-kernel outputs.

For every case this writes a directory under tests/golden/ with
  case.json    what the case is (model, tensor dtypes and shapes, sample count, tolerance)
  inputs.bin   every sample's inputs, raw little-endian, sample after sample
               (within a sample: graph input 0, then input 1, ...)
  outputs.bin  the reference outputs in the same layout
  model.tflite only for the single-op models built here; the shared models are referenced
               by their path under ../shared/models.

The reference is TFLite's interpreter with its *reference* kernels
(OpResolverType.BUILTIN_REF), never the optimized ones. Everything is seeded, so a
rerun produces identical bytes; `--check` regenerates into a temporary directory and
fails if anything differs from the committed files.

Usage:
  python3 scripts/goldens/generate.py            # rewrite tests/golden/
  python3 scripts/goldens/generate.py --check    # verify tests/golden/ is up to date
"""

from __future__ import annotations

import argparse
import filecmp
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO_ROOT / "tests" / "golden"
DEFAULT_SHARED_DIR = REPO_ROOT.parent / "shared"
SCHEMA_RELATIVE = Path("schemas") / "tflite_schema.fbs"

# Float outputs are compared with |actual - expected| <= REL * |expected| + ABS.
FLOAT_TOLERANCE = {"kind": "float", "rel": 1e-5, "abs": 1e-6}
EXACT_TOLERANCE = {"kind": "exact"}

SHARED_MODEL_SAMPLES = 200
OP_SAMPLES = 24

# Files this script owns inside tests/golden/; anything else there is left alone.
CASE_FILES = ("case.json", "inputs.bin", "outputs.bin", "model.tflite")


def note(message: str) -> None:
    print(message, file=sys.stderr)


# --------------------------------------------------------------------------------------
# TFLite reference interpreter
# --------------------------------------------------------------------------------------


def reference_interpreter(model_path: str | None = None, model_content: bytes | None = None):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=model_path,
        model_content=model_content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
    )
    interpreter.allocate_tensors()
    return interpreter


def run_reference(interpreter, samples: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    input_details = interpreter.get_input_details()
    output_details = interpreter.get_output_details()
    results = []
    for sample in samples:
        if len(sample) != len(input_details):
            raise ValueError(f"sample has {len(sample)} inputs, model has {len(input_details)}")
        for detail, value in zip(input_details, sample):
            interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]).reshape(detail["shape"]))
        interpreter.invoke()
        results.append([interpreter.get_tensor(d["index"]).copy() for d in output_details])
    return results


# --------------------------------------------------------------------------------------
# Input generation
# --------------------------------------------------------------------------------------


def case_seed(name: str) -> int:
    # Seeded by the case name, so adding or reordering cases never changes another case.
    return zlib.crc32(name.encode("utf-8"))


@dataclass
class TensorSpec:
    dtype: str  # "int8" or "float32"
    shape: list[int]
    scale: float = 0.0
    zero_point: int = 0
    # Range for random float inputs.
    low: float = -4.0
    high: float = 4.0

    def to_json(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape)}


def make_samples(specs: list[TensorSpec], count: int, rng: np.random.Generator) -> list[list[np.ndarray]]:
    """Edge cases first (extremes, zero point / zeros), then seeded random samples."""
    samples: list[list[np.ndarray]] = []

    def edge(fill_int8, fill_float):
        sample = []
        for spec in specs:
            if spec.dtype == "int8":
                sample.append(np.full(spec.shape, fill_int8(spec), dtype=np.int8))
            else:
                sample.append(np.full(spec.shape, fill_float(spec), dtype=np.float32))
        return sample

    samples.append(edge(lambda s: -128, lambda s: s.low))
    samples.append(edge(lambda s: 127, lambda s: s.high))
    samples.append(edge(lambda s: s.zero_point, lambda s: 0.0))
    while len(samples) < count:
        sample = []
        for spec in specs:
            if spec.dtype == "int8":
                sample.append(rng.integers(-128, 128, size=spec.shape, dtype=np.int64).astype(np.int8))
            else:
                sample.append(rng.uniform(spec.low, spec.high, size=spec.shape).astype(np.float32))
        samples.append(sample)
    return samples


# --------------------------------------------------------------------------------------
# Writing a case
# --------------------------------------------------------------------------------------


def to_le_bytes(array: np.ndarray) -> bytes:
    if array.dtype == np.float32:
        return array.astype("<f4").tobytes()
    if array.dtype == np.int8:
        return array.tobytes()
    raise ValueError(f"unsupported dtype {array.dtype}")


def dtype_name(dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype == np.int8:
        return "int8"
    if dtype == np.float32:
        return "float32"
    raise ValueError(f"unsupported dtype {dtype}")


def write_case(
    out_dir: Path,
    name: str,
    description: str,
    model_ref: str,
    model_bytes: bytes | None,
    samples: list[list[np.ndarray]],
    outputs: list[list[np.ndarray]],
    op: str | None,
) -> None:
    case_dir = out_dir / name
    case_dir.mkdir(parents=True, exist_ok=False)
    if model_bytes is not None:
        (case_dir / "model.tflite").write_bytes(model_bytes)
    with open(case_dir / "inputs.bin", "wb") as f:
        for sample in samples:
            for tensor in sample:
                f.write(to_le_bytes(tensor))
    with open(case_dir / "outputs.bin", "wb") as f:
        for result in outputs:
            for tensor in result:
                f.write(to_le_bytes(tensor))
    output_dtypes = {dtype_name(t.dtype) for t in outputs[0]}
    case = {
        "name": name,
        "description": description,
        "op": op,
        "model": model_ref,
        "source": "TFLite interpreter (ai-edge-litert), OpResolverType.BUILTIN_REF; "
        "generated by scripts/goldens/generate.py",
        "count": len(samples),
        "inputs": [{"dtype": dtype_name(t.dtype), "shape": list(t.shape)} for t in samples[0]],
        "outputs": [{"dtype": dtype_name(t.dtype), "shape": list(t.shape)} for t in outputs[0]],
        "tolerance": EXACT_TOLERANCE if output_dtypes == {"int8"} else FLOAT_TOLERANCE,
    }
    (case_dir / "case.json").write_text(json.dumps(case, indent=2) + "\n")


# --------------------------------------------------------------------------------------
# Shared models
# --------------------------------------------------------------------------------------

SHARED_MODELS = [
    ("kws_ref_model", "MLPerf Tiny keyword spotting DS-CNN, int8"),
    ("kws_ref_model_float32", "MLPerf Tiny keyword spotting DS-CNN, float32"),
    ("ad01_int8", "MLPerf Tiny anomaly detection autoencoder, int8"),
    ("micro_speech_quantized", "TFLite Micro micro_speech, int8"),
    ("hello_world_int8", "TFLite Micro hello_world sine model, int8"),
]

# A float model's inputs are drawn from the input range of its int8 twin, so they look
# like what the network was trained on.
FLOAT_INPUT_RANGE_FROM = {"kws_ref_model_float32": "kws_ref_model"}


def input_specs(interpreter) -> list[TensorSpec]:
    specs = []
    for detail in interpreter.get_input_details():
        scale, zero_point = detail["quantization"]
        specs.append(
            TensorSpec(
                dtype=dtype_name(detail["dtype"]),
                shape=[int(d) for d in detail["shape"]],
                scale=float(scale),
                zero_point=int(zero_point),
            )
        )
    return specs


def generate_shared_models(out_dir: Path, shared_dir: Path) -> None:
    models_dir = shared_dir / "models"
    for name, description in SHARED_MODELS:
        path = models_dir / f"{name}.tflite"
        interpreter = reference_interpreter(model_path=str(path))
        specs = input_specs(interpreter)
        twin = FLOAT_INPUT_RANGE_FROM.get(name)
        if twin is not None:
            twin_specs = input_specs(reference_interpreter(model_path=str(models_dir / f"{twin}.tflite")))
            for spec, twin_spec in zip(specs, twin_specs):
                spec.low = twin_spec.scale * (-128 - twin_spec.zero_point)
                spec.high = twin_spec.scale * (127 - twin_spec.zero_point)
        rng = np.random.default_rng(case_seed(name))
        if len(specs) == 1 and specs[0].dtype == "int8" and int(np.prod(specs[0].shape)) == 1:
            # A one-element int8 input has only 256 values: test them all.
            samples = [[np.full(specs[0].shape, v, dtype=np.int8)] for v in range(-128, 128)]
        else:
            samples = make_samples(specs, SHARED_MODEL_SAMPLES, rng)
        outputs = run_reference(interpreter, samples)
        write_case(
            out_dir,
            f"model_{name}",
            description,
            f"shared:models/{name}.tflite",
            None,
            samples,
            outputs,
            None,
        )


# --------------------------------------------------------------------------------------
# Building single-op TFLite models
# --------------------------------------------------------------------------------------


class Schema:
    """The Python object API that `flatc --python --gen-object-api` generates from the schema."""

    def __init__(self, schema_path: Path, work_dir: Path):
        text = schema_path.read_text()
        # flatc 2.0 does not accept attributes on enum and union values; they change nothing
        # about the binary layout, so drop them from a private copy.
        text = re.sub(r"^(\s+\w+(?:\s*=\s*\d+)?)\s*\(deprecated\)\s*,", r"\1,", text, flags=re.M)
        copy = work_dir / "schema.fbs"
        copy.write_text(text)
        subprocess.run(
            ["flatc", "--python", "--gen-object-api", "-o", str(work_dir), str(copy)],
            check=True,
        )
        sys.path.insert(0, str(work_dir))
        for module in [m for m in sys.modules if m == "tflite" or m.startswith("tflite.")]:
            del sys.modules[module]
        self.BuiltinOperator = self._module("BuiltinOperator").BuiltinOperator
        self.BuiltinOptions = self._module("BuiltinOptions").BuiltinOptions
        self.TensorType = self._module("TensorType").TensorType
        self.Padding = self._module("Padding").Padding
        self.Activation = self._module("ActivationFunctionType").ActivationFunctionType

    def _module(self, name: str):
        return importlib.import_module(f"tflite.{name}")

    def new(self, table: str):
        return getattr(self._module(table), f"{table}T")()


@dataclass
class GraphBuilder:
    schema: Schema
    tensors: list = field(default_factory=list)
    buffers: list = field(default_factory=list)
    opcodes: list = field(default_factory=list)
    operators: list = field(default_factory=list)

    def __post_init__(self):
        self.buffers.append(self.schema.new("Buffer"))  # buffer 0: the empty buffer

    def tensor(self, name, shape, dtype, data=None, scale=None, zero_point=None, quantized_dimension=0):
        t = self.schema.new("Tensor")
        t.name = name
        t.shape = [int(d) for d in shape]
        t.type = {
            "int8": self.schema.TensorType.INT8,
            "int32": self.schema.TensorType.INT32,
            "float32": self.schema.TensorType.FLOAT32,
        }[dtype]
        if data is not None:
            np_dtype = {"int8": np.int8, "int32": "<i4", "float32": "<f4"}[dtype]
            raw = np.asarray(data).astype(np_dtype).reshape(shape).tobytes()
            buf = self.schema.new("Buffer")
            buf.data = list(raw)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        if scale is not None:
            q = self.schema.new("QuantizationParameters")
            q.scale = [float(s) for s in np.atleast_1d(scale)]
            zp = np.atleast_1d(zero_point if zero_point is not None else 0)
            if len(zp) == 1 and len(q.scale) > 1:
                zp = np.repeat(zp, len(q.scale))
            q.zeroPoint = [int(z) for z in zp]
            q.quantizedDimension = quantized_dimension
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, builtin: str, inputs, outputs, options_type: str | None = None, options=None):
        code = getattr(self.schema.BuiltinOperator, builtin)
        for index, existing in enumerate(self.opcodes):
            if existing.builtinCode == code:
                opcode_index = index
                break
        else:
            oc = self.schema.new("OperatorCode")
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            self.opcodes.append(oc)
            opcode_index = len(self.opcodes) - 1
        o = self.schema.new("Operator")
        o.opcodeIndex = opcode_index
        o.inputs = list(inputs)
        o.outputs = list(outputs)
        if options_type is not None:
            o.builtinOptionsType = getattr(self.schema.BuiltinOptions, options_type)
            o.builtinOptions = options
        self.operators.append(o)

    def finish(self, inputs, outputs) -> bytes:
        import flatbuffers

        sg = self.schema.new("SubGraph")
        sg.tensors = self.tensors
        sg.inputs = list(inputs)
        sg.outputs = list(outputs)
        sg.operators = self.operators
        sg.name = "main"
        m = self.schema.new("Model")
        m.version = 3
        m.operatorCodes = self.opcodes
        m.subgraphs = [sg]
        m.buffers = self.buffers
        m.description = "ember golden single-op model"
        builder = flatbuffers.Builder(1024)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def options(schema: Schema, table: str, **fields):
    o = schema.new(table)
    for key, value in fields.items():
        if not hasattr(o, key):
            raise AttributeError(f"{table} has no field {key}")
        setattr(o, key, value)
    return o


@dataclass
class OpCase:
    name: str
    description: str
    op: str
    model: bytes
    inputs: list[TensorSpec]


class OpCases:
    """Builds every single-op case. Each method adds one or more cases to `self.cases`."""

    def __init__(self, schema: Schema):
        self.s = schema
        self.cases: list[OpCase] = []

    def rng(self, name: str) -> np.random.Generator:
        # A separate stream from the inputs' (which use case_seed(name) directly).
        return np.random.default_rng([case_seed(name), 1])

    def act(self, name: str) -> int:
        return getattr(self.s.Activation, name)

    def pad(self, name: str) -> int:
        return getattr(self.s.Padding, name)

    def add(self, name, description, op, g: GraphBuilder, graph_inputs, graph_outputs, specs):
        self.cases.append(OpCase(name, description, op, g.finish(graph_inputs, graph_outputs), specs))

    # ---------------------------------------------------------------- helpers for weights

    @staticmethod
    def int8_weights(rng, shape):
        return rng.integers(-127, 128, size=shape, dtype=np.int64)

    @staticmethod
    def output_scale(in_scale, weight_scales, depth):
        # Uniform int8 inputs and weights have a standard deviation of ~74 levels; pick an
        # output scale that maps about +-3 standard deviations of the accumulator onto int8,
        # so typical outputs use the whole range and the extreme inputs saturate.
        std = in_scale * float(np.mean(weight_scales)) * np.sqrt(depth) * 74.0 * 74.0
        return float(np.float32(6.0 * std / 255.0))

    # ---------------------------------------------------------------- CONV_2D

    def conv2d_s8(self, name, in_shape, out_channels, kernel, stride, dilation, padding, activation,
                  per_channel=True, description=""):
        rng = self.rng(name)
        g = GraphBuilder(self.s)
        n, h, w, c = in_shape
        kh, kw = kernel
        in_scale, in_zp = 0.05, int(rng.integers(-20, 21))
        if per_channel:
            w_scales = (rng.uniform(0.5, 1.5, size=out_channels) * 0.01).astype(np.float32)
        else:
            w_scales = np.array([0.01], dtype=np.float32)
        weights = self.int8_weights(rng, (out_channels, kh, kw, c))
        bias_scales = (np.float32(in_scale) * w_scales).astype(np.float32)
        bias = rng.integers(-3000, 3001, size=out_channels)
        out_h, out_w = conv_output_hw(h, w, kh, kw, stride, dilation, padding)
        out_scale = self.output_scale(in_scale, w_scales, kh * kw * c)
        out_zp = int(rng.integers(-10, 11))
        i = g.tensor("input", in_shape, "int8", scale=in_scale, zero_point=in_zp)
        f = g.tensor("filter", weights.shape, "int8", weights, scale=w_scales, zero_point=0)
        b = g.tensor("bias", [out_channels], "int32", bias, scale=bias_scales
                     if per_channel else bias_scales[:1], zero_point=0)
        o = g.tensor("output", [n, out_h, out_w, out_channels], "int8", scale=out_scale, zero_point=out_zp)
        g.op("CONV_2D", [i, f, b], [o], "Conv2DOptions", options(
            self.s, "Conv2DOptions", padding=self.pad(padding), strideH=stride[0], strideW=stride[1],
            dilationHFactor=dilation[0], dilationWFactor=dilation[1],
            fusedActivationFunction=self.act(activation)))
        self.add(name, description, "CONV_2D", g, [i], [o],
                 [TensorSpec("int8", in_shape, in_scale, in_zp)])

    def conv2d_f32(self, name, in_shape, out_channels, kernel, stride, dilation, padding, activation,
                   description=""):
        rng = self.rng(name)
        g = GraphBuilder(self.s)
        n, h, w, c = in_shape
        kh, kw = kernel
        weights = rng.normal(0, 1.0 / np.sqrt(kh * kw * c), size=(out_channels, kh, kw, c))
        bias = rng.normal(0, 0.1, size=out_channels)
        out_h, out_w = conv_output_hw(h, w, kh, kw, stride, dilation, padding)
        i = g.tensor("input", in_shape, "float32")
        f = g.tensor("filter", weights.shape, "float32", weights)
        b = g.tensor("bias", [out_channels], "float32", bias)
        o = g.tensor("output", [n, out_h, out_w, out_channels], "float32")
        g.op("CONV_2D", [i, f, b], [o], "Conv2DOptions", options(
            self.s, "Conv2DOptions", padding=self.pad(padding), strideH=stride[0], strideW=stride[1],
            dilationHFactor=dilation[0], dilationWFactor=dilation[1],
            fusedActivationFunction=self.act(activation)))
        self.add(name, description, "CONV_2D", g, [i], [o], [TensorSpec("float32", in_shape)])

    def conv2d_hybrid(self, name, in_shape, out_channels, kernel, stride, padding, activation,
                      description=""):
        rng = self.rng(name)
        g = GraphBuilder(self.s)
        n, h, w, c = in_shape
        kh, kw = kernel
        weights = self.int8_weights(rng, (out_channels, kh, kw, c))
        w_scales = (rng.uniform(0.5, 1.5, size=out_channels) * 0.01).astype(np.float32)
        bias = rng.normal(0, 0.1, size=out_channels)
        out_h, out_w = conv_output_hw(h, w, kh, kw, stride, (1, 1), padding)
        i = g.tensor("input", in_shape, "float32")
        f = g.tensor("filter", weights.shape, "int8", weights, scale=w_scales, zero_point=0)
        b = g.tensor("bias", [out_channels], "float32", bias)
        o = g.tensor("output", [n, out_h, out_w, out_channels], "float32")
        g.op("CONV_2D", [i, f, b], [o], "Conv2DOptions", options(
            self.s, "Conv2DOptions", padding=self.pad(padding), strideH=stride[0], strideW=stride[1],
            fusedActivationFunction=self.act(activation)))
        self.add(name, description, "CONV_2D", g, [i], [o], [TensorSpec("float32", in_shape)])

    # ---------------------------------------------------------------- DEPTHWISE_CONV_2D

    def depthwise_s8(self, name, in_shape, multiplier, kernel, stride, dilation, padding, activation,
                     per_channel=True, description=""):
        rng = self.rng(name)
        g = GraphBuilder(self.s)
        n, h, w, c = in_shape
        kh, kw = kernel
        out_c = c * multiplier
        in_scale, in_zp = 0.04, int(rng.integers(-20, 21))
        if per_channel:
            w_scales = (rng.uniform(0.5, 1.5, size=out_c) * 0.01).astype(np.float32)
        else:
            w_scales = np.array([0.01], dtype=np.float32)
        weights = self.int8_weights(rng, (1, kh, kw, out_c))
        bias_scales = (np.float32(in_scale) * w_scales).astype(np.float32)
        bias = rng.integers(-2000, 2001, size=out_c)
        out_h, out_w = conv_output_hw(h, w, kh, kw, stride, dilation, padding)
        out_scale = self.output_scale(in_scale, w_scales, kh * kw)
        out_zp = int(rng.integers(-10, 11))
        i = g.tensor("input", in_shape, "int8", scale=in_scale, zero_point=in_zp)
        f = g.tensor("filter", weights.shape, "int8", weights, scale=w_scales, zero_point=0,
                     quantized_dimension=3)
        b = g.tensor("bias", [out_c], "int32", bias, scale=bias_scales, zero_point=0)
        o = g.tensor("output", [n, out_h, out_w, out_c], "int8", scale=out_scale, zero_point=out_zp)
        g.op("DEPTHWISE_CONV_2D", [i, f, b], [o], "DepthwiseConv2DOptions", options(
            self.s, "DepthwiseConv2DOptions", padding=self.pad(padding), strideH=stride[0],
            strideW=stride[1], depthMultiplier=multiplier, dilationHFactor=dilation[0],
            dilationWFactor=dilation[1], fusedActivationFunction=self.act(activation)))
        self.add(name, description, "DEPTHWISE_CONV_2D", g, [i], [o],
                 [TensorSpec("int8", in_shape, in_scale, in_zp)])

    def depthwise_f32(self, name, in_shape, multiplier, kernel, stride, dilation, padding, activation,
                      description=""):
        rng = self.rng(name)
        g = GraphBuilder(self.s)
        n, h, w, c = in_shape
        kh, kw = kernel
        out_c = c * multiplier
        weights = rng.normal(0, 1.0 / np.sqrt(kh * kw), size=(1, kh, kw, out_c))
        bias = rng.normal(0, 0.1, size=out_c)
        out_h, out_w = conv_output_hw(h, w, kh, kw, stride, dilation, padding)
        i = g.tensor("input", in_shape, "float32")
        f = g.tensor("filter", weights.shape, "float32", weights)
        b = g.tensor("bias", [out_c], "float32", bias)
        o = g.tensor("output", [n, out_h, out_w, out_c], "float32")
        g.op("DEPTHWISE_CONV_2D", [i, f, b], [o], "DepthwiseConv2DOptions", options(
            self.s, "DepthwiseConv2DOptions", padding=self.pad(padding), strideH=stride[0],
            strideW=stride[1], depthMultiplier=multiplier, dilationHFactor=dilation[0],
            dilationWFactor=dilation[1], fusedActivationFunction=self.act(activation)))
        self.add(name, description, "DEPTHWISE_CONV_2D", g, [i], [o], [TensorSpec("float32", in_shape)])

    def depthwise_hybrid(self, name, in_shape, multiplier, kernel, stride, padding, activation,
                         description=""):
        rng = self.rng(name)
        g = GraphBuilder(self.s)
        n, h, w, c = in_shape
        kh, kw = kernel
        out_c = c * multiplier
        weights = self.int8_weights(rng, (1, kh, kw, out_c))
        w_scales = (rng.uniform(0.5, 1.5, size=out_c) * 0.01).astype(np.float32)
        bias = rng.normal(0, 0.1, size=out_c)
        out_h, out_w = conv_output_hw(h, w, kh, kw, stride, (1, 1), padding)
        i = g.tensor("input", in_shape, "float32")
        f = g.tensor("filter", weights.shape, "int8", weights, scale=w_scales, zero_point=0,
                     quantized_dimension=3)
        b = g.tensor("bias", [out_c], "float32", bias)
        o = g.tensor("output", [n, out_h, out_w, out_c], "float32")
        g.op("DEPTHWISE_CONV_2D", [i, f, b], [o], "DepthwiseConv2DOptions", options(
            self.s, "DepthwiseConv2DOptions", padding=self.pad(padding), strideH=stride[0],
            strideW=stride[1], depthMultiplier=multiplier, fusedActivationFunction=self.act(activation)))
        self.add(name, description, "DEPTHWISE_CONV_2D", g, [i], [o], [TensorSpec("float32", in_shape)])

    # ---------------------------------------------------------------- FULLY_CONNECTED

    def fc_s8(self, name, in_shape, units, with_bias, activation, per_channel=False, keep_num_dims=False,
              description=""):
        rng = self.rng(name)
        g = GraphBuilder(self.s)
        depth = in_shape[-1]
        batches = int(np.prod(in_shape[:-1]))
        in_scale, in_zp = 0.06, int(rng.integers(-20, 21))
        if per_channel:
            w_scales = (rng.uniform(0.5, 1.5, size=units) * 0.01).astype(np.float32)
        else:
            w_scales = np.array([0.01], dtype=np.float32)
        weights = self.int8_weights(rng, (units, depth))
        out_scale = self.output_scale(in_scale, w_scales, depth)
        out_zp = int(rng.integers(-10, 11))
        i = g.tensor("input", in_shape, "int8", scale=in_scale, zero_point=in_zp)
        f = g.tensor("weights", weights.shape, "int8", weights, scale=w_scales, zero_point=0)
        inputs = [i, f]
        if with_bias:
            bias_scales = (np.float32(in_scale) * w_scales).astype(np.float32)
            bias = rng.integers(-3000, 3001, size=units)
            inputs.append(g.tensor("bias", [units], "int32", bias, scale=bias_scales, zero_point=0))
        else:
            inputs.append(-1)
        out_shape = list(in_shape[:-1]) + [units] if keep_num_dims else [batches, units]
        o = g.tensor("output", out_shape, "int8", scale=out_scale, zero_point=out_zp)
        g.op("FULLY_CONNECTED", inputs, [o], "FullyConnectedOptions", options(
            self.s, "FullyConnectedOptions", fusedActivationFunction=self.act(activation),
            keepNumDims=keep_num_dims))
        self.add(name, description, "FULLY_CONNECTED", g, [i], [o],
                 [TensorSpec("int8", in_shape, in_scale, in_zp)])

    def fc_f32(self, name, in_shape, units, with_bias, activation, description=""):
        rng = self.rng(name)
        g = GraphBuilder(self.s)
        depth = in_shape[-1]
        batches = int(np.prod(in_shape[:-1]))
        weights = rng.normal(0, 1.0 / np.sqrt(depth), size=(units, depth))
        i = g.tensor("input", in_shape, "float32")
        f = g.tensor("weights", weights.shape, "float32", weights)
        inputs = [i, f]
        if with_bias:
            inputs.append(g.tensor("bias", [units], "float32", rng.normal(0, 0.1, size=units)))
        else:
            inputs.append(-1)
        o = g.tensor("output", [batches, units], "float32")
        g.op("FULLY_CONNECTED", inputs, [o], "FullyConnectedOptions", options(
            self.s, "FullyConnectedOptions", fusedActivationFunction=self.act(activation)))
        self.add(name, description, "FULLY_CONNECTED", g, [i], [o], [TensorSpec("float32", in_shape)])

    def fc_hybrid(self, name, in_shape, units, per_channel, asymmetric, activation, description=""):
        rng = self.rng(name)
        g = GraphBuilder(self.s)
        depth = in_shape[-1]
        batches = int(np.prod(in_shape[:-1]))
        weights = self.int8_weights(rng, (units, depth))
        if per_channel:
            w_scales = (rng.uniform(0.5, 1.5, size=units) * 0.01).astype(np.float32)
        else:
            w_scales = np.array([0.01], dtype=np.float32)
        i = g.tensor("input", in_shape, "float32")
        f = g.tensor("weights", weights.shape, "int8", weights, scale=w_scales, zero_point=0)
        b = g.tensor("bias", [units], "float32", rng.normal(0, 0.1, size=units))
        o = g.tensor("output", [batches, units], "float32")
        g.op("FULLY_CONNECTED", [i, f, b], [o], "FullyConnectedOptions", options(
            self.s, "FullyConnectedOptions", fusedActivationFunction=self.act(activation),
            asymmetricQuantizeInputs=asymmetric))
        self.add(name, description, "FULLY_CONNECTED", g, [i], [o], [TensorSpec("float32", in_shape)])

    # ---------------------------------------------------------------- pooling

    def pool(self, name, builtin, dtype, in_shape, filt, stride, padding, activation, description=""):
        rng = self.rng(name)
        g = GraphBuilder(self.s)
        n, h, w, c = in_shape
        out_h, out_w = conv_output_hw(h, w, filt[0], filt[1], stride, (1, 1), padding)
        if dtype == "int8":
            scale, zp = 0.07, int(rng.integers(-30, 31))
            i = g.tensor("input", in_shape, "int8", scale=scale, zero_point=zp)
            o = g.tensor("output", [n, out_h, out_w, c], "int8", scale=scale, zero_point=zp)
            spec = TensorSpec("int8", in_shape, scale, zp)
        else:
            i = g.tensor("input", in_shape, "float32")
            o = g.tensor("output", [n, out_h, out_w, c], "float32")
            spec = TensorSpec("float32", in_shape)
        g.op(builtin, [i], [o], "Pool2DOptions", options(
            self.s, "Pool2DOptions", padding=self.pad(padding), strideH=stride[0], strideW=stride[1],
            filterHeight=filt[0], filterWidth=filt[1], fusedActivationFunction=self.act(activation)))
        self.add(name, description, builtin, g, [i], [o], [spec])

    # ---------------------------------------------------------------- ADD / MUL

    def binary(self, name, builtin, dtype, shape_a, shape_b, quant_a, quant_b, quant_out, activation,
               const_b=False, description=""):
        rng = self.rng(name)
        g = GraphBuilder(self.s)
        out_shape = list(np.broadcast_shapes(tuple(shape_a), tuple(shape_b)))
        if dtype == "int8":
            a = g.tensor("a", shape_a, "int8", scale=quant_a[0], zero_point=quant_a[1])
            if const_b:
                b = g.tensor("b", shape_b, "int8", rng.integers(-128, 128, size=shape_b),
                             scale=quant_b[0], zero_point=quant_b[1])
            else:
                b = g.tensor("b", shape_b, "int8", scale=quant_b[0], zero_point=quant_b[1])
            o = g.tensor("output", out_shape, "int8", scale=quant_out[0], zero_point=quant_out[1])
            specs = [TensorSpec("int8", shape_a, *quant_a)]
            if not const_b:
                specs.append(TensorSpec("int8", shape_b, *quant_b))
        else:
            a = g.tensor("a", shape_a, "float32")
            if const_b:
                b = g.tensor("b", shape_b, "float32", rng.uniform(-2, 2, size=shape_b))
            else:
                b = g.tensor("b", shape_b, "float32")
            o = g.tensor("output", out_shape, "float32")
            specs = [TensorSpec("float32", shape_a)] + ([] if const_b else [TensorSpec("float32", shape_b)])
        opts = "AddOptions" if builtin == "ADD" else "MulOptions"
        g.op(builtin, [a, b], [o], opts, options(self.s, opts, fusedActivationFunction=self.act(activation)))
        self.add(name, description, builtin, g, [a] if const_b else [a, b], [o], specs)

    # ---------------------------------------------------------------- PAD, RESHAPE, MEAN

    def pad_case(self, name, dtype, in_shape, paddings, description=""):
        rng = self.rng(name)
        g = GraphBuilder(self.s)
        out_shape = [d + p[0] + p[1] for d, p in zip(in_shape, paddings)]
        if dtype == "int8":
            scale, zp = 0.05, int(rng.integers(-40, 41))
            i = g.tensor("input", in_shape, "int8", scale=scale, zero_point=zp)
            o = g.tensor("output", out_shape, "int8", scale=scale, zero_point=zp)
            spec = TensorSpec("int8", in_shape, scale, zp)
        else:
            i = g.tensor("input", in_shape, "float32")
            o = g.tensor("output", out_shape, "float32")
            spec = TensorSpec("float32", in_shape)
        p = g.tensor("paddings", [len(in_shape), 2], "int32", np.array(paddings))
        g.op("PAD", [i, p], [o], "PadOptions", options(self.s, "PadOptions"))
        self.add(name, description, "PAD", g, [i], [o], [spec])

    def reshape_case(self, name, dtype, in_shape, out_shape, description=""):
        g = GraphBuilder(self.s)
        if dtype == "int8":
            i = g.tensor("input", in_shape, "int8", scale=0.1, zero_point=3)
            o = g.tensor("output", out_shape, "int8", scale=0.1, zero_point=3)
            spec = TensorSpec("int8", in_shape, 0.1, 3)
        else:
            i = g.tensor("input", in_shape, "float32")
            o = g.tensor("output", out_shape, "float32")
            spec = TensorSpec("float32", in_shape)
        s = g.tensor("shape", [len(out_shape)], "int32", np.array(out_shape))
        g.op("RESHAPE", [i, s], [o], "ReshapeOptions", options(self.s, "ReshapeOptions", newShape=list(out_shape)))
        self.add(name, description, "RESHAPE", g, [i], [o], [spec])

    def mean_case(self, name, dtype, in_shape, axes, keep_dims, in_quant=None, out_quant=None,
                  description=""):
        g = GraphBuilder(self.s)
        axes_norm = sorted({a % len(in_shape) for a in axes})
        if keep_dims:
            out_shape = [1 if d in axes_norm else s for d, s in enumerate(in_shape)]
        else:
            out_shape = [s for d, s in enumerate(in_shape) if d not in axes_norm]
        if dtype == "int8":
            i = g.tensor("input", in_shape, "int8", scale=in_quant[0], zero_point=in_quant[1])
            o = g.tensor("output", out_shape, "int8", scale=out_quant[0], zero_point=out_quant[1])
            spec = TensorSpec("int8", in_shape, *in_quant)
        else:
            i = g.tensor("input", in_shape, "float32")
            o = g.tensor("output", out_shape, "float32")
            spec = TensorSpec("float32", in_shape)
        a = g.tensor("axes", [len(axes)], "int32", np.array(axes))
        g.op("MEAN", [i, a], [o], "ReducerOptions", options(self.s, "ReducerOptions", keepDims=keep_dims))
        self.add(name, description, "MEAN", g, [i], [o], [spec])

    # ---------------------------------------------------------------- activations

    def unary(self, name, builtin, dtype, shape, in_quant=None, out_quant=None, opts=None, low=-8.0,
              high=8.0, description=""):
        g = GraphBuilder(self.s)
        if dtype == "int8":
            i = g.tensor("input", shape, "int8", scale=in_quant[0], zero_point=in_quant[1])
            o = g.tensor("output", shape, "int8", scale=out_quant[0], zero_point=out_quant[1])
            spec = TensorSpec("int8", shape, *in_quant)
        else:
            i = g.tensor("input", shape, "float32")
            o = g.tensor("output", shape, "float32")
            spec = TensorSpec("float32", shape, low=low, high=high)
        if opts is None:
            g.op(builtin, [i], [o])
        else:
            g.op(builtin, [i], [o], opts[0], opts[1])
        self.add(name, description, builtin, g, [i], [o], [spec])

    def softmax(self, name, dtype, shape, in_quant=None, beta=1.0, description=""):
        self.unary(name, "SOFTMAX", dtype, shape, in_quant, (1.0 / 256.0, -128),
                   ("SoftmaxOptions", options(self.s, "SoftmaxOptions", beta=beta)), description=description)

    # ---------------------------------------------------------------- CONCATENATION

    def concat(self, name, dtype, shapes, axis, quants=None, out_quant=None, description=""):
        g = GraphBuilder(self.s)
        rank = len(shapes[0])
        ax = axis % rank
        out_shape = list(shapes[0])
        out_shape[ax] = sum(s[ax] for s in shapes)
        inputs, specs = [], []
        for k, shape in enumerate(shapes):
            if dtype == "int8":
                inputs.append(g.tensor(f"in{k}", shape, "int8", scale=quants[k][0], zero_point=quants[k][1]))
                specs.append(TensorSpec("int8", shape, *quants[k]))
            else:
                inputs.append(g.tensor(f"in{k}", shape, "float32"))
                specs.append(TensorSpec("float32", shape))
        if dtype == "int8":
            o = g.tensor("output", out_shape, "int8", scale=out_quant[0], zero_point=out_quant[1])
        else:
            o = g.tensor("output", out_shape, "float32")
        g.op("CONCATENATION", inputs, [o], "ConcatenationOptions",
             options(self.s, "ConcatenationOptions", axis=axis))
        self.add(name, description, "CONCATENATION", g, inputs, [o], specs)

    # ---------------------------------------------------------------- QUANTIZE / DEQUANTIZE

    def quantize_f32(self, name, shape, out_quant, low, high, description=""):
        g = GraphBuilder(self.s)
        i = g.tensor("input", shape, "float32")
        o = g.tensor("output", shape, "int8", scale=out_quant[0], zero_point=out_quant[1])
        g.op("QUANTIZE", [i], [o])
        self.add(name, description, "QUANTIZE", g, [i], [o], [TensorSpec("float32", shape, low=low, high=high)])

    def requantize(self, name, shape, in_quant, out_quant, description=""):
        g = GraphBuilder(self.s)
        i = g.tensor("input", shape, "int8", scale=in_quant[0], zero_point=in_quant[1])
        o = g.tensor("output", shape, "int8", scale=out_quant[0], zero_point=out_quant[1])
        g.op("QUANTIZE", [i], [o])
        self.add(name, description, "QUANTIZE", g, [i], [o], [TensorSpec("int8", shape, *in_quant)])

    def dequantize(self, name, shape, in_quant, description=""):
        g = GraphBuilder(self.s)
        i = g.tensor("input", shape, "int8", scale=in_quant[0], zero_point=in_quant[1])
        o = g.tensor("output", shape, "float32")
        g.op("DEQUANTIZE", [i], [o])
        self.add(name, description, "DEQUANTIZE", g, [i], [o], [TensorSpec("int8", shape, *in_quant)])

    # ---------------------------------------------------------------- the list

    def build_all(self):
        # CONV_2D int8
        self.conv2d_s8("conv2d_s8_1x1", [1, 6, 6, 8], 5, (1, 1), (1, 1), (1, 1), "VALID", "NONE",
                       description="1x1 kernel, per-channel weights")
        self.conv2d_s8("conv2d_s8_3x3_same_relu", [1, 7, 7, 3], 4, (3, 3), (1, 1), (1, 1), "SAME", "RELU",
                       description="3x3 SAME, per-channel, fused RELU")
        self.conv2d_s8("conv2d_s8_3x3_valid_stride2_relu6", [1, 9, 8, 3], 6, (3, 3), (2, 2), (1, 1), "VALID",
                       "RELU6", description="3x3 VALID stride 2, per-channel, fused RELU6")
        self.conv2d_s8("conv2d_s8_3x3_same_stride2", [1, 8, 9, 2], 3, (3, 3), (2, 2), (1, 1), "SAME", "NONE",
                       description="3x3 SAME stride 2 (asymmetric padding)")
        self.conv2d_s8("conv2d_s8_3x3_same_dilation2", [1, 10, 10, 2], 4, (3, 3), (1, 1), (2, 2), "SAME",
                       "NONE", description="3x3 SAME dilation 2")
        self.conv2d_s8("conv2d_s8_2x3_valid_stride21_per_tensor", [2, 7, 6, 3], 4, (2, 3), (2, 1), (1, 1),
                       "VALID", "RELU", per_channel=False,
                       description="2x3 kernel, strides (2,1), per-tensor weights, batch 2")
        self.conv2d_s8("conv2d_s8_10x4_kws_like", [1, 12, 10, 1], 8, (10, 4), (2, 2), (1, 1), "SAME", "RELU",
                       description="10x4 kernel stride 2 SAME, single input channel (like the KWS stem)")
        # DEPTHWISE_CONV_2D int8
        self.depthwise_s8("depthwise_s8_3x3_m1_same", [1, 8, 8, 4], 1, (3, 3), (1, 1), (1, 1), "SAME", "NONE",
                          description="depth multiplier 1, SAME")
        self.depthwise_s8("depthwise_s8_3x3_m2_valid_relu", [1, 7, 7, 3], 2, (3, 3), (1, 1), (1, 1), "VALID",
                          "RELU", description="depth multiplier 2, VALID, RELU")
        self.depthwise_s8("depthwise_s8_3x3_stride2_relu6", [1, 9, 9, 4], 1, (3, 3), (2, 2), (1, 1), "SAME",
                          "RELU6", description="stride 2 SAME, RELU6")
        self.depthwise_s8("depthwise_s8_3x3_dilation2", [1, 10, 10, 3], 1, (3, 3), (1, 1), (2, 2), "VALID",
                          "RELU", description="dilation 2, VALID")
        self.depthwise_s8("depthwise_s8_m2_per_tensor_stride2", [1, 8, 7, 2], 2, (3, 2), (2, 2), (1, 1), "SAME",
                          "NONE", per_channel=False, description="multiplier 2, 3x2 kernel, per-tensor, stride 2")
        # FULLY_CONNECTED int8
        self.fc_s8("fully_connected_s8_bias_relu", [1, 32], 10, True, "RELU", description="bias, RELU")
        self.fc_s8("fully_connected_s8_no_bias", [1, 20], 7, False, "NONE", description="no bias")
        self.fc_s8("fully_connected_s8_batches", [4, 16], 6, True, "NONE", description="4 batches")
        self.fc_s8("fully_connected_s8_batches_rank3_relu6", [2, 3, 12], 5, True, "RELU6",
                   description="rank-3 input flattened to 6 batches, RELU6")
        self.fc_s8("fully_connected_s8_per_channel", [2, 24], 8, True, "NONE", per_channel=True,
                   description="per-channel weights")
        # Pooling int8
        self.pool("avg_pool_s8_2x2_valid_stride2", "AVERAGE_POOL_2D", "int8", [1, 8, 8, 3], (2, 2), (2, 2),
                  "VALID", "NONE")
        self.pool("avg_pool_s8_3x3_same_stride1", "AVERAGE_POOL_2D", "int8", [1, 6, 7, 2], (3, 3), (1, 1),
                  "SAME", "NONE", description="SAME padding: border windows average fewer elements")
        self.pool("avg_pool_s8_3x3_same_stride2_relu", "AVERAGE_POOL_2D", "int8", [1, 9, 8, 4], (3, 3), (2, 2),
                  "SAME", "RELU")
        self.pool("avg_pool_s8_global", "AVERAGE_POOL_2D", "int8", [1, 5, 3, 6], (5, 3), (5, 3), "VALID",
                  "NONE", description="whole-plane window (like the KWS head)")
        self.pool("max_pool_s8_2x2_valid_stride2", "MAX_POOL_2D", "int8", [1, 8, 8, 3], (2, 2), (2, 2),
                  "VALID", "NONE")
        self.pool("max_pool_s8_3x3_same_stride2", "MAX_POOL_2D", "int8", [1, 9, 7, 2], (3, 3), (2, 2),
                  "SAME", "NONE")
        self.pool("max_pool_s8_3x3_same_stride1_relu6", "MAX_POOL_2D", "int8", [1, 5, 6, 3], (3, 3), (1, 1),
                  "SAME", "RELU6")
        # ADD / MUL int8
        self.binary("add_s8_different_scales", "ADD", "int8", [1, 4, 4, 3], [1, 4, 4, 3], (0.05, -3),
                    (0.1, 10), (0.12, 2), "NONE")
        self.binary("add_s8_broadcast_channel_relu", "ADD", "int8", [1, 4, 4, 3], [1, 1, 1, 3], (0.03, 5),
                    (0.2, -20), (0.25, -30), "RELU", description="second operand broadcast over H and W")
        self.binary("add_s8_broadcast_both_relu6", "ADD", "int8", [1, 1, 4, 3], [1, 5, 1, 3], (0.04, 0),
                    (0.06, 7), (0.05, -128), "RELU6", description="both operands broadcast")
        self.binary("add_s8_const_operand", "ADD", "int8", [1, 6, 5], [1, 6, 5], (0.08, -1), (0.02, 15),
                    (0.09, 0), "NONE", const_b=True, description="second operand a constant")
        self.binary("mul_s8_different_scales", "MUL", "int8", [1, 4, 4, 3], [1, 4, 4, 3], (0.05, -3),
                    (0.1, 10), (0.3, 2), "NONE")
        self.binary("mul_s8_broadcast_relu", "MUL", "int8", [2, 3, 4], [1, 1, 4], (0.02, 8), (0.05, -5),
                    (0.06, -40), "RELU", description="second operand broadcast")
        self.binary("mul_s8_broadcast_both_relu6", "MUL", "int8", [1, 1, 4, 3], [1, 5, 1, 1], (0.1, 0),
                    (0.03, -7), (0.04, -128), "RELU6", description="both operands broadcast")
        self.binary("mul_s8_const_operand", "MUL", "int8", [1, 10], [1, 10], (0.05, 3), (0.01, -2),
                    (0.03, 1), "NONE", const_b=True, description="second operand a constant")
        # PAD
        self.pad_case("pad_s8", "int8", [1, 5, 5, 3], [[0, 0], [1, 2], [2, 1], [0, 0]],
                      description="pads with the zero point")
        self.pad_case("pad_s8_channels", "int8", [1, 3, 4, 2], [[0, 0], [0, 0], [0, 0], [1, 3]])
        self.pad_case("pad_f32", "float32", [1, 4, 3, 2], [[0, 0], [2, 0], [0, 1], [0, 0]])
        # MEAN
        self.mean_case("mean_s8_axes12_keep_dims", "int8", [1, 6, 6, 4], [1, 2], True, (0.05, -10), (0.05, -10),
                       description="global average (axes 1,2, keep_dims), same quantization")
        self.mean_case("mean_s8_axes12_keep_dims_requant", "int8", [1, 5, 7, 3], [1, 2], True, (0.05, -10),
                       (0.02, 4), description="axes 1,2 keep_dims, different output quantization")
        self.mean_case("mean_s8_axes12_no_keep_dims", "int8", [1, 4, 4, 6], [1, 2], False, (0.1, 3), (0.07, -5))
        self.mean_case("mean_s8_axis3", "int8", [1, 4, 5, 6], [3], False, (0.05, 0), (0.04, 2),
                       description="reduce the channel axis")
        self.mean_case("mean_s8_axis1_keep_dims", "int8", [1, 6, 3, 4], [1], True, (0.05, -3), (0.05, -3))
        self.mean_case("mean_f32_axes12_keep_dims", "float32", [1, 6, 5, 4], [1, 2], True)
        self.mean_case("mean_f32_axis_neg1", "float32", [2, 3, 7], [-1], False)
        # RESHAPE
        self.reshape_case("reshape_s8", "int8", [1, 4, 4, 3], [1, 48])
        self.reshape_case("reshape_f32", "float32", [1, 2, 6], [3, 4])
        # SOFTMAX
        self.softmax("softmax_s8_scale_0p1", "int8", [1, 10], (0.1, 5),
                     description="input scale 0.1; output scale 1/256 zero point -128")
        self.softmax("softmax_s8_scale_0p0625_rows", "int8", [3, 7], (0.0625, -10),
                     description="input scale 1/16, 3 rows")
        self.softmax("softmax_s8_scale_0p3_beta", "int8", [1, 12], (0.3, -20), beta=0.5,
                     description="input scale 0.3, beta 0.5")
        self.softmax("softmax_f32", "float32", [2, 9])
        # LOGISTIC / TANH
        self.unary("logistic_s8", "LOGISTIC", "int8", [1, 40], (0.05, 3), (1.0 / 256.0, -128))
        self.unary("logistic_s8_wide_input", "LOGISTIC", "int8", [2, 20], (0.2, -40), (1.0 / 256.0, -128),
                   description="input range beyond the saturation points")
        self.unary("logistic_f32", "LOGISTIC", "float32", [1, 40], low=-12.0, high=12.0)
        self.unary("tanh_s8", "TANH", "int8", [1, 40], (0.04, -2), (1.0 / 128.0, 0))
        self.unary("tanh_s8_wide_input", "TANH", "int8", [2, 20], (0.1, 30), (1.0 / 128.0, 0))
        self.unary("tanh_f32", "TANH", "float32", [1, 40], low=-6.0, high=6.0)
        # CONCATENATION
        self.concat("concatenation_s8_axis3_same_quant", "int8", [[1, 3, 3, 2], [1, 3, 3, 5]], 3,
                    [(0.05, 1), (0.05, 1)], (0.05, 1))
        self.concat("concatenation_s8_axis1_three", "int8", [[1, 2, 4], [1, 3, 4], [1, 1, 4]], 1,
                    [(0.1, -4)] * 3, (0.1, -4))
        self.concat("concatenation_s8_different_quant", "int8", [[1, 4, 3], [1, 4, 2]], -1,
                    [(0.05, 1), (0.1, -20)], (0.08, -5),
                    description="inputs with different scales and zero points than the output")
        self.concat("concatenation_f32_axis_neg1", "float32", [[2, 3], [2, 5]], -1)
        # QUANTIZE / DEQUANTIZE
        self.quantize_f32("quantize_f32_to_s8", [1, 30], (0.07, -5), low=-12.0, high=12.0,
                          description="float -> int8, including values that saturate")
        self.requantize("quantize_s8_to_s8", [1, 30], (0.05, 3), (0.08, -10), description="int8 -> int8")
        self.requantize("quantize_s8_to_s8_upscale", [2, 16], (0.1, -20), (0.03, 7),
                        description="int8 -> int8 to a finer scale (saturates)")
        self.dequantize("dequantize_s8_to_f32", [1, 25], (0.03, 7))
        # Float32 versions
        self.conv2d_f32("conv2d_f32_3x3_same_relu", [1, 7, 7, 3], 4, (3, 3), (1, 1), (1, 1), "SAME", "RELU")
        self.conv2d_f32("conv2d_f32_3x3_valid_stride2_dilation2", [1, 11, 10, 2], 3, (3, 3), (2, 2), (2, 2),
                        "VALID", "NONE")
        self.conv2d_f32("conv2d_f32_1x1_relu6", [1, 4, 4, 6], 5, (1, 1), (1, 1), (1, 1), "VALID", "RELU6")
        self.depthwise_f32("depthwise_f32_3x3_m2_same", [1, 6, 6, 3], 2, (3, 3), (1, 1), (1, 1), "SAME", "NONE")
        self.depthwise_f32("depthwise_f32_stride2_relu", [1, 9, 9, 4], 1, (3, 3), (2, 2), (1, 1), "SAME", "RELU")
        self.fc_f32("fully_connected_f32_batches", [3, 20], 8, True, "NONE")
        self.fc_f32("fully_connected_f32_no_bias_relu", [1, 16], 6, False, "RELU")
        self.pool("avg_pool_f32_3x3_same_stride2", "AVERAGE_POOL_2D", "float32", [1, 7, 8, 3], (3, 3), (2, 2),
                  "SAME", "NONE")
        self.pool("max_pool_f32_2x2_valid_stride2", "MAX_POOL_2D", "float32", [1, 8, 6, 2], (2, 2), (2, 2),
                  "VALID", "NONE")
        self.binary("add_f32_broadcast_relu6", "ADD", "float32", [1, 3, 4, 2], [1, 1, 1, 2], None, None, None,
                    "RELU6")
        self.binary("add_f32_same_shape", "ADD", "float32", [2, 10], [2, 10], None, None, None, "NONE")
        self.binary("mul_f32_broadcast", "MUL", "float32", [1, 3, 4, 2], [1, 3, 1, 1], None, None, None, "NONE")
        self.binary("mul_f32_const_relu", "MUL", "float32", [1, 12], [1, 12], None, None, None, "RELU",
                    const_b=True)
        # Hybrid: float activations, int8 per-channel weights
        self.conv2d_hybrid("conv2d_hybrid_per_channel_3x3_same", [1, 6, 6, 3], 4, (3, 3), (1, 1), "SAME", "NONE")
        self.conv2d_hybrid("conv2d_hybrid_per_channel_stride2_relu", [1, 9, 8, 2], 5, (3, 3), (2, 2), "VALID",
                           "RELU")
        self.depthwise_hybrid("depthwise_hybrid_per_channel_m2", [1, 6, 6, 3], 2, (3, 3), (1, 1), "SAME", "NONE")
        self.fc_hybrid("fully_connected_hybrid_per_channel", [2, 24], 8, True, False, "NONE")
        self.fc_hybrid("fully_connected_hybrid_per_channel_asymmetric", [2, 24], 8, True, True, "RELU")
        self.fc_hybrid("fully_connected_hybrid_per_tensor", [1, 30], 6, False, False, "NONE")
        self.fc_hybrid("fully_connected_hybrid_per_tensor_asymmetric", [3, 16], 5, False, True, "NONE")


def conv_output_hw(h, w, kh, kw, stride, dilation, padding):
    eff_h = (kh - 1) * dilation[0] + 1
    eff_w = (kw - 1) * dilation[1] + 1
    if padding == "SAME":
        return (h + stride[0] - 1) // stride[0], (w + stride[1] - 1) // stride[1]
    return (h - eff_h + stride[0]) // stride[0], (w - eff_w + stride[1]) // stride[1]


def generate_op_cases(out_dir: Path, shared_dir: Path, work_dir: Path) -> list[str]:
    schema = Schema(shared_dir / SCHEMA_RELATIVE, work_dir)
    builder = OpCases(schema)
    builder.build_all()
    skipped = []
    for case in builder.cases:
        try:
            interpreter = reference_interpreter(model_content=case.model)
            rng = np.random.default_rng(case_seed(case.name))
            samples = make_samples(case.inputs, OP_SAMPLES, rng)
            outputs = run_reference(interpreter, samples)
        except Exception as err:  # the interpreter rejects the model: skip, loudly
            note(f"SKIP {case.name}: the TFLite reference interpreter rejects it: {str(err).strip()}")
            skipped.append(case.name)
            continue
        write_case(out_dir, case.name, case.description, "model.tflite", case.model, samples, outputs, case.op)
    return skipped


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def generate(out_dir: Path, shared_dir: Path) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ember-goldens-flatc-") as work:
        generate_shared_models(out_dir, shared_dir)
        return generate_op_cases(out_dir, shared_dir, Path(work))


def case_dirs(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir()}


def compare_trees(generated_root: Path, committed_root: Path) -> list[str]:
    problems = []
    generated, committed = case_dirs(generated_root), case_dirs(committed_root)
    for name in sorted(set(generated) | set(committed)):
        if name not in committed:
            problems.append(f"tests/golden/{name}/: missing (the script generates it)")
            continue
        if name not in generated:
            problems.append(f"tests/golden/{name}/: stale (the script no longer generates it)")
            continue
        for file in CASE_FILES:
            g, c = generated[name] / file, committed[name] / file
            if g.exists() and not c.exists():
                problems.append(f"tests/golden/{name}/{file}: missing")
            elif c.exists() and not g.exists():
                problems.append(f"tests/golden/{name}/{file}: stale (no longer generated)")
            elif g.exists() and not filecmp.cmp(g, c, shallow=False):
                problems.append(f"tests/golden/{name}/{file}: differs")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temporary directory and fail if tests/golden/ differs")
    parser.add_argument("--shared-dir", type=Path,
                        default=Path(os.environ.get("EMBER_SHARED_DIR", DEFAULT_SHARED_DIR)),
                        help="the shared/ directory with models/ and schemas/ (default: $EMBER_SHARED_DIR or ../shared)")
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR, help="where to write the cases")
    args = parser.parse_args()

    if args.check:
        with tempfile.TemporaryDirectory(prefix="ember-goldens-check-") as tmp:
            generate(Path(tmp), args.shared_dir)
            problems = compare_trees(Path(tmp), args.out)
        if problems:
            note("golden files are out of date; rerun scripts/goldens/generate.py:")
            for p in problems:
                note(f"  {p}")
            return 1
        print(f"golden files in {args.out} are up to date")
        return 0

    # Replace only the case directories, keeping README.md and anything else.
    for case_dir in case_dirs(args.out).values():
        for file in CASE_FILES:
            (case_dir / file).unlink(missing_ok=True)
        if not any(case_dir.iterdir()):
            case_dir.rmdir()
    with tempfile.TemporaryDirectory(prefix="ember-goldens-") as tmp:
        skipped = generate(Path(tmp), args.shared_dir)
        for name, case_dir in case_dirs(Path(tmp)).items():
            shutil.copytree(case_dir, args.out / name, dirs_exist_ok=True)
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {len(case_dirs(args.out))} cases to {args.out} ({total / 1e6:.2f} MB); "
          f"skipped {len(skipped)}: {', '.join(skipped) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
