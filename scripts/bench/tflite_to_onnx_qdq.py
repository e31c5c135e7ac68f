#!/usr/bin/env python3
"""Convert a TFLite model into an ONNX QDQ model (int8) or a plain float ONNX model.

Reads the TFLite flatbuffer with the `tflite` package and writes the same graph with `onnx`:
every quantized tensor stays int8 between operators, and every int8 operator becomes
DequantizeLinear -> float op -> QuantizeLinear, the form ONNX Runtime's graph optimizer fuses
into QLinearConv / QGemm / QLinearAveragePool / QLinearSoftmax (how a QDQ model is meant to run).
Weights keep their TFLite per-channel scales (DequantizeLinear with `axis`), biases are int32
with scale input_scale * weight_scale, as TFLite defines them.

Layout: tensors keep TFLite's NHWC layout and shapes; Conv and pooling are wrapped in
NHWC->NCHW->NHWC transposes, which ONNX Runtime's transpose optimizer cancels between
neighbouring layers. Graph inputs and outputs have exactly the TFLite shapes and dtypes, so
the same numpy arrays feed both interpreters.

Supported builtins: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D,
MAX_POOL_2D, RESHAPE, SOFTMAX; fused NONE/RELU/RELU6/RELU_N1_TO_1. Anything else raises
`Unsupported`.

Usage: tflite_to_onnx_qdq.py MODEL.tflite OUT.onnx
"""

import sys

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

# TFLite TensorType -> (numpy dtype, ONNX element type)
TYPES = {
    tflite.TensorType.FLOAT32: (np.float32, TensorProto.FLOAT),
    tflite.TensorType.INT8: (np.int8, TensorProto.INT8),
    tflite.TensorType.UINT8: (np.uint8, TensorProto.UINT8),
    tflite.TensorType.INT32: (np.int32, TensorProto.INT32),
    tflite.TensorType.INT64: (np.int64, TensorProto.INT64),
}
BUILTIN_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
NHWC_TO_NCHW = [0, 3, 1, 2]
NCHW_TO_NHWC = [0, 2, 3, 1]


class Unsupported(Exception):
    """The model uses something this converter does not translate."""


class Converter:
    def __init__(self, buf):
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        if self.model.SubgraphsLength() != 1:
            raise Unsupported("only single-subgraph models")
        self.graph = self.model.Subgraphs(0)
        self.nodes = []
        self.initializers = []
        self.counter = 0

    # -- helpers --------------------------------------------------------------------------
    def fresh(self, stem):
        self.counter += 1
        return f"{stem}_{self.counter}"

    def tensor(self, index):
        return self.graph.Tensors(index)

    def name(self, index):
        return f"t{index}"

    def dtype(self, index):
        kind = self.tensor(index).Type()
        if kind not in TYPES:
            raise Unsupported(f"tensor type {kind}")
        return TYPES[kind]

    def shape(self, index):
        return [int(d) for d in self.tensor(index).ShapeAsNumpy()]

    def quant(self, index):
        """(scales, zero_points, axis) or None for a float tensor."""
        q = self.tensor(index).Quantization()
        if q is None or q.ScaleLength() == 0:
            return None
        return q.ScaleAsNumpy().astype(np.float32), q.ZeroPointAsNumpy().astype(np.int64), q.QuantizedDimension()

    def constant(self, index):
        t = self.tensor(index)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data is None or len(data) == 0:
            return None
        np_type, _ = self.dtype(index)
        return np.frombuffer(data.tobytes(), dtype=np_type).reshape(self.shape(index))

    def add_init(self, array, stem):
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, outputs=None, **attrs):
        outputs = outputs or [self.fresh(op.lower())]
        self.nodes.append(helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0]

    def qparams(self, scales, zero_points, np_type, stem):
        """Scale and zero-point initializers (scalars when per-tensor)."""
        if len(scales) == 1:
            return (self.add_init(np.float32(scales[0]), stem + "_scale"),
                    self.add_init(np.array(zero_points[0], dtype=np_type), stem + "_zp"))
        return (self.add_init(scales, stem + "_scale"),
                self.add_init(zero_points.astype(np_type), stem + "_zp"))

    def dequant(self, index):
        """Float view of activation tensor `index` (DequantizeLinear when it is quantized)."""
        q = self.quant(index)
        np_type, _ = self.dtype(index)
        if q is None or np_type == np.float32:
            return self.name(index)
        s, z = self.qparams(q[0], q[1], np_type, f"t{index}")
        return self.node("DequantizeLinear", [self.name(index), s, z])

    def requant(self, value, index):
        """Writes float `value` to output tensor `index` (QuantizeLinear when quantized)."""
        q = self.quant(index)
        np_type, _ = self.dtype(index)
        if q is None or np_type == np.float32:
            return self.node("Identity", [value], [self.name(index)])
        s, z = self.qparams(q[0], q[1], np_type, f"t{index}")
        return self.node("QuantizeLinear", [value, s, z], [self.name(index)])

    def weight(self, index, onnx_axis, layout):
        """A constant weight transposed by `layout`, dequantized per channel along `onnx_axis`."""
        data = self.constant(index)
        if data is None:
            raise Unsupported("weights must be constant")
        data = np.transpose(data, layout) if layout is not None else data
        q = self.quant(index)
        if q is None or data.dtype == np.float32:
            return self.add_init(data.astype(np.float32), f"w{index}")
        w = self.add_init(data, f"w{index}")
        s, z = self.qparams(q[0], q[1], data.dtype.type, f"w{index}")
        attrs = {"axis": onnx_axis} if len(q[0]) > 1 else {}
        return self.node("DequantizeLinear", [w, s, z], **attrs)

    def bias(self, index, input_index, weight_index):
        data = self.constant(index)
        if data is None:
            raise Unsupported("bias must be constant")
        if data.dtype == np.float32:
            return self.add_init(data, f"b{index}")
        # TFLite defines the int32 bias scale as input_scale * weight_scale (per channel).
        scales = (self.quant(input_index)[0][0] * self.quant(weight_index)[0]).astype(np.float32)
        b = self.add_init(data.astype(np.int32), f"b{index}")
        s, z = self.qparams(scales, np.zeros(len(scales), np.int64), np.int32, f"b{index}")
        attrs = {"axis": 0} if len(scales) > 1 else {}
        return self.node("DequantizeLinear", [b, s, z], **attrs)

    def activation(self, value, fused):
        if fused == tflite.ActivationFunctionType.NONE:
            return value
        if fused == tflite.ActivationFunctionType.RELU:
            return self.node("Relu", [value])
        bounds = {
            tflite.ActivationFunctionType.RELU6: (0.0, 6.0),
            tflite.ActivationFunctionType.RELU_N1_TO_1: (-1.0, 1.0),
        }
        if fused not in bounds:
            raise Unsupported(f"fused activation {fused}")
        lo, hi = bounds[fused]
        return self.node("Clip", [value, self.add_init(np.float32(lo), "lo"), self.add_init(np.float32(hi), "hi")])

    @staticmethod
    def same_pads(size, kernel, stride, dilation):
        out = -(-size // stride)
        total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        return total // 2, total - total // 2

    def pads(self, padding, in_shape, kernel_hw, strides, dilations):
        if padding == tflite.Padding.VALID:
            return [0, 0, 0, 0]
        top, bottom = self.same_pads(in_shape[1], kernel_hw[0], strides[0], dilations[0])
        left, right = self.same_pads(in_shape[2], kernel_hw[1], strides[1], dilations[1])
        return [top, left, bottom, right]

    # -- operators ------------------------------------------------------------------------
    def conv(self, op, depthwise):
        x, w_index = op.Inputs(0), op.Inputs(1)
        b_index = op.Inputs(2) if op.InputsLength() > 2 else -1
        table = op.BuiltinOptions()
        opts = tflite.DepthwiseConv2DOptions() if depthwise else tflite.Conv2DOptions()
        opts.Init(table.Bytes, table.Pos)
        w_shape = self.shape(w_index)
        in_shape = self.shape(x)
        if depthwise:
            # TFLite [1, kh, kw, C*m] -> ONNX [C*m, 1, kh, kw], group = C
            w = self.weight(w_index, 0, [3, 0, 1, 2])
            group = in_shape[3]
        else:
            # TFLite [O, kh, kw, I] -> ONNX [O, I, kh, kw]
            w = self.weight(w_index, 0, [0, 3, 1, 2])
            group = 1
        kernel_hw = w_shape[1:3]
        strides = [opts.StrideH(), opts.StrideW()]
        dilations = [opts.DilationHFactor(), opts.DilationWFactor()]
        inputs = [self.node("Transpose", [self.dequant(x)], perm=NHWC_TO_NCHW), w]
        if b_index >= 0:
            inputs.append(self.bias(b_index, x, w_index))
        y = self.node("Conv", inputs, group=group, strides=strides, dilations=dilations,
                      kernel_shape=kernel_hw,
                      pads=self.pads(opts.Padding(), in_shape, kernel_hw, strides, dilations))
        y = self.activation(y, opts.FusedActivationFunction())
        y = self.node("Transpose", [y], perm=NCHW_TO_NHWC)
        self.requant(y, op.Outputs(0))

    def pool(self, op, kind):
        x = op.Inputs(0)
        table = op.BuiltinOptions()
        opts = tflite.Pool2DOptions()
        opts.Init(table.Bytes, table.Pos)
        kernel_hw = [opts.FilterHeight(), opts.FilterWidth()]
        strides = [opts.StrideH(), opts.StrideW()]
        attrs = {"kernel_shape": kernel_hw, "strides": strides,
                 "pads": self.pads(opts.Padding(), self.shape(x), kernel_hw, strides, [1, 1])}
        if kind == "AveragePool":
            attrs["count_include_pad"] = 0  # TFLite averages over the valid taps only
        y = self.node(kind, [self.node("Transpose", [self.dequant(x)], perm=NHWC_TO_NCHW)], **attrs)
        y = self.activation(y, opts.FusedActivationFunction())
        self.requant(self.node("Transpose", [y], perm=NCHW_TO_NHWC), op.Outputs(0))

    def fully_connected(self, op):
        x, w_index = op.Inputs(0), op.Inputs(1)
        b_index = op.Inputs(2) if op.InputsLength() > 2 else -1
        table = op.BuiltinOptions()
        opts = tflite.FullyConnectedOptions()
        opts.Init(table.Bytes, table.Pos)
        w_shape = self.shape(w_index)
        flat = self.node("Reshape", [self.dequant(x), self.add_init(np.array([-1, w_shape[1]], np.int64), "shape")])
        inputs = [flat, self.weight(w_index, 0, None)]
        if b_index >= 0:
            inputs.append(self.bias(b_index, x, w_index))
        y = self.node("Gemm", inputs, transB=1)
        y = self.activation(y, opts.FusedActivationFunction())
        out_shape = self.shape(op.Outputs(0))
        if len(out_shape) != 2:
            y = self.node("Reshape", [y, self.add_init(np.array(out_shape, np.int64), "shape")])
        self.requant(y, op.Outputs(0))

    def reshape(self, op):
        shape = self.add_init(np.array(self.shape(op.Outputs(0)), np.int64), "shape")
        self.requant(self.node("Reshape", [self.dequant(op.Inputs(0)), shape]), op.Outputs(0))

    def softmax(self, op):
        table = op.BuiltinOptions()
        opts = tflite.SoftmaxOptions()
        opts.Init(table.Bytes, table.Pos)
        x = self.dequant(op.Inputs(0))
        if opts.Beta() != 1.0:
            x = self.node("Mul", [x, self.add_init(np.float32(opts.Beta()), "beta")])
        self.requant(self.node("Softmax", [x], axis=-1), op.Outputs(0))

    def convert(self):
        for i in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            name = BUILTIN_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            if name == "CONV_2D":
                self.conv(op, depthwise=False)
            elif name == "DEPTHWISE_CONV_2D":
                self.conv(op, depthwise=True)
            elif name == "FULLY_CONNECTED":
                self.fully_connected(op)
            elif name == "AVERAGE_POOL_2D":
                self.pool(op, "AveragePool")
            elif name == "MAX_POOL_2D":
                self.pool(op, "MaxPool")
            elif name == "RESHAPE":
                self.reshape(op)
            elif name == "SOFTMAX":
                self.softmax(op)
            else:
                raise Unsupported(f"operator {name}")

        def value_info(index):
            return helper.make_tensor_value_info(self.name(index), self.dtype(index)[1], self.shape(index))

        inputs = [value_info(self.graph.Inputs(i)) for i in range(self.graph.InputsLength())]
        outputs = [value_info(self.graph.Outputs(i)) for i in range(self.graph.OutputsLength())]
        graph = helper.make_graph(self.nodes, "tflite", inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="ember tflite_to_onnx_qdq")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def convert(tflite_path, onnx_path):
    with open(tflite_path, "rb") as f:
        model = Converter(f.read()).convert()
    onnx.save(model, onnx_path)
    return onnx_path


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(sys.argv[1], sys.argv[2])
    print("wrote", sys.argv[2])
