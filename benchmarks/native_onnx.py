"""dfx conv bodies as ONNX: a float model, and two int8 QDQ models that onnxruntime fuses into QLinearConv.

* :func:`to_onnx` with ``qdq=False`` writes the float network (a float dfx model's Conv2D, Relu, max
  Pool2D and FullyConnected layers).
* :func:`ort_quantize_static` quantizes that float ONNX model with onnxruntime's own tooling
  (``quantize_static``, QDQ, uint8 activations, per-channel int8 weights).
* :func:`to_onnx` with ``qdq=True`` writes the same configuration from an 8-bit dfx model's own formats:
  uint8 activations with scale 2^-fl (zero point 128, or 0 after a ReLU, which onnxruntime then drops),
  per-channel int8 weights with scales 2^-fl, int32 biases with scale s_x * s_w.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: How each int8 model was made, as printed by the benchmark.
ORT_INT8_KINDS = {"ort int8 qs": "onnxruntime.quantization.quantize_static (QDQ, QUInt8 act., QInt8 per-channel w.)",
                  "ort int8 dfx": "QDQ graph from the dfx formats (uint8 act. 2^-fl, per-channel int8 w.)"}


def _fls(t, n: int) -> np.ndarray:
    q = t.qformat
    return np.array(q.channel_fl if q.per_channel else [q.fl] * n, np.float64)


class _Writer:
    def __init__(self, model, qdq: bool) -> None:
        self.model, self.qdq = model, qdq
        self.nodes: list = []
        self.inits: list = []
        self.value: dict[str, str] = {}     # dfx tensor -> ONNX float value
        self.folded: set[str] = set()       # Conv2D/FC outputs whose only user is a Relu (quantized after it)
        self.relu: set[str] = set()         # quantized tensors with zero point 0 (ReLU outputs)

    def const(self, name: str, arr: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op: str, ins: list[str], out: str, **attrs) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    def qdq_act(self, src: str, tensor: str, relu: bool, tag: str = "") -> str:
        """Quantize ``src`` (float) to uint8 in ``tensor``'s format and dequantize it again."""
        if relu:
            self.relu.add(tensor)
        name = tensor + tag
        s = self.const(name + "_s", np.float32(2.0 ** -self.model.tensors[tensor].qformat.fl))
        z = self.const(name + "_z", np.uint8(0 if relu else 128))
        q = self.node("QuantizeLinear", [src, s, z], name + "_q")
        return self.node("DequantizeLinear", [q, s, z], name + "_dq")

    def weights(self, name: str, n: int, per_channel: bool = True) -> str:
        """Float weights, or int8 codes and their DequantizeLinear (per output channel for Conv; per tensor for
        Gemm, which onnxruntime fuses into QGemm only so)."""
        t = self.model.tensors[name]
        if not self.qdq:
            return self.const(name, np.asarray(t.data, np.float32))
        scales = (2.0 ** -_fls(t, n)).astype(np.float32)
        if not per_channel and np.all(scales == scales[0]):
            s, z = self.const(name + "_s", scales[0]), self.const(name + "_z", np.int8(0))
        else:
            s, z = self.const(name + "_s", scales), self.const(name + "_z", np.zeros(n, np.int8))
        codes = self.const(name + "_q", np.asarray(t.data).astype(np.int8))
        return self.node("DequantizeLinear", [codes, s, z], name + "_dq", axis=0)

    def bias(self, name: str, x: str, w: str, n: int, per_channel: bool = True) -> str:
        t = self.model.tensors[name]
        if not self.qdq:
            return self.const(name, np.asarray(t.data, np.float32))
        real = np.asarray(t.data, np.float64) * 2.0 ** -_fls(t, n)
        fl = self.model.tensors[x].qformat.fl + _fls(self.model.tensors[w], n)
        codes = np.round(real * 2.0 ** fl).astype(np.int32)
        if not per_channel and np.all(fl == fl[0]):
            s, z = self.const(name + "_s", np.float32(2.0 ** -fl[0])), self.const(name + "_z", np.int32(0))
        else:
            s = self.const(name + "_s", (2.0 ** -fl).astype(np.float32))
            z = self.const(name + "_z", np.zeros(n, np.int32))
        return self.node("DequantizeLinear", [self.const(name + "_q", codes), s, z], name + "_dq", axis=0)

    def layer(self, layer) -> None:
        ins, out, op = layer.inputs, layer.outputs[0], layer.op
        if layer.type == "Requantize":
            self.value[out] = self.qdq_act(self.value[ins[0]], out, relu=False)
            return
        x = self.value[ins[0]]
        if layer.type == "Conv2D":
            n = self.model.tensors[ins[1]].shape[0]
            args = [x, self.weights(ins[1], n)] + ([self.bias(ins[2], ins[0], ins[1], n)] if len(ins) > 2 and ins[2]
                                                   else [])
            y = self.node("Conv", args, out + "_f", kernel_shape=[op.kernel_h, op.kernel_w],
                          strides=[op.stride_h, op.stride_w], dilations=[op.dilation_h, op.dilation_w],
                          pads=[op.pad_top, op.pad_left, op.pad_bottom, op.pad_right], group=op.group)
        elif layer.type == "FullyConnected":
            n = self.model.tensors[ins[1]].shape[0]
            flat = self.node("Flatten", [x], out + "_flat", axis=1)
            if self.qdq:   # onnxruntime fuses QGemm only with a DequantizeLinear right before it
                flat = self.qdq_act(flat, ins[0], relu=ins[0] in self.relu, tag="_flat")
            args = [flat, self.weights(ins[1], n, per_channel=False)] + ([self.bias(ins[2], ins[0], ins[1], n, False)]
                                                      if len(ins) > 2 and ins[2] else [])
            y = self.node("Gemm", args, out + "_f", transB=1)
        elif layer.type == "Relu":
            y = self.node("Relu", [x], out + "_f")
        elif layer.type == "Pool2D" and op.type == 0 and not op.global_:
            y = self.node("MaxPool", [x], out + "_f", kernel_shape=[op.kernel_h, op.kernel_w],
                          strides=[op.stride_h, op.stride_w], ceil_mode=int(bool(op.ceil_mode)),
                          pads=[op.pad_top, op.pad_left, op.pad_bottom, op.pad_right])
        else:
            raise SystemExit(f"operator {layer.type} of {layer.name} is not exported to ONNX")
        if self.qdq and out in self.folded:
            self.value[out] = y                 # its only user is a Relu: quantized after the Relu
        elif self.qdq:
            self.value[out] = self.qdq_act(y, out, relu=layer.type == "Relu")
        else:
            self.value[out] = y


def to_onnx(model, path: Path, *, qdq: bool = False) -> int:
    """Write ``model`` (a conv body, see native_nets.conv_body) as ONNX with a free batch size; returns the
    number of convolutions. ``qdq``: ``model`` is 8-bit and is written as a QDQ graph in its own formats."""
    import onnx
    from onnx import TensorProto, helper

    w = _Writer(model, qdq)
    users: dict[str, list] = {}
    for layer in model.layers:
        for i in layer.inputs:
            users.setdefault(i, []).append(layer)
    for layer in model.layers:
        u = users.get(layer.outputs[0], [])
        if layer.type in ("Conv2D", "FullyConnected") and len(u) == 1 and u[0].type == "Relu" \
                and layer.outputs[0] not in model.outputs:
            w.folded.add(layer.outputs[0])
    inp = model.inputs[0]
    w.value[inp] = inp
    for layer in model.layers:
        w.layer(layer)
    shape = ["N"] + list(model.tensors[inp].shape[1:])
    outs = [helper.make_tensor_value_info(w.value[o], TensorProto.FLOAT, ["N"] + list(model.tensors[o].shape[1:]))
            for o in model.outputs]
    graph = helper.make_graph(w.nodes, model.name or "dfx", [helper.make_tensor_value_info(inp, TensorProto.FLOAT,
                                                                                         shape)], outs, w.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return sum(layer.type == "Conv2D" for layer in model.layers)


def ort_quantize_static(float_path: Path, out_path: Path, calibration: list[dict[str, np.ndarray]]) -> None:
    """onnxruntime's ``quantize_static``: QDQ, uint8 activations, per-channel int8 weights."""
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    logging.getLogger().setLevel(logging.ERROR)   # its advice to pre-process (shape inference) is not needed here

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(float_path), str(out_path), _Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
