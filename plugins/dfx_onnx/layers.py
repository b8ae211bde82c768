"""The operator handlers of the ONNX importer: one function per ONNX operator (CONVERTERS).

Each handler gets the :class:`~dfx_onnx.convert.Converter`, the node, its
attributes and its input values (:mod:`dfx_onnx.values`), and binds the node's
outputs, emitting dfx layers through the converter. See README.md for the
mapping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnx

from dfxsdk import ops
from dfxsdk.errors import DfxImportError, DfxUnsupportedError
from dfxsdk.formats import QFormat

from .values import Act, Const, Shape

if TYPE_CHECKING:
    from .convert import Converter


# -- geometry helpers ------------------------------------------------------------

def _ints(values, n: int, default: int) -> list[int]:
    vals = [int(v) for v in values] if values is not None else []
    return vals if vals else [default] * n


def same_pads(size: int, k: int, stride: int, dilation: int, mode: str) -> tuple[int, int]:
    """(begin, end) padding of auto_pad SAME_UPPER/SAME_LOWER along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    small = total // 2
    return (small, total - small) if mode == "SAME_UPPER" else (total - small, small)


def window_pads(a: dict, spatial: Shape, kernel: Sequence[int], strides: Sequence[int],
                dilations: Sequence[int]) -> list[int]:
    """Explicit [top, left, bottom, right] pads from ``pads`` or ``auto_pad``."""
    mode = a.get("auto_pad", "NOTSET") or "NOTSET"
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        pairs = [same_pads(s, k, st, d, mode) for s, k, st, d in zip(spatial, kernel, strides, dilations)]
        return [pairs[0][0], pairs[1][0], pairs[0][1], pairs[1][1]]
    if mode == "VALID":
        return [0, 0, 0, 0]
    if mode != "NOTSET":
        raise DfxImportError(f"unknown auto_pad '{mode}'")
    pads = _ints(a.get("pads"), 4, 0)
    if len(pads) != 4:
        raise DfxImportError(f"pads {pads} must have 4 values for a 2-D window")
    if any(p < 0 for p in pads):
        raise DfxUnsupportedError(f"negative pads {pads} are not supported")
    return pads


def _need_2d(c: Converter, x: str, what: str) -> Shape:
    s = c.shape(x)
    if len(s) != 4:
        raise DfxUnsupportedError(f"only 2-D {what} on N,C,H,W inputs is supported; the input has shape {s}")
    return s


def _norm_axis(axis: int, rank: int) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise DfxImportError(f"axis {axis} is out of range for rank {rank}")
    return a


def _keep_batch(c: Converter, x: str, out_shape: Shape, what: str) -> None:
    xs = c.shape(x)
    if not out_shape or out_shape[0] != xs[0]:
        raise DfxUnsupportedError(
            f"{what} turns shape {xs} into {tuple(out_shape)}, changing dimension 0; dfx keeps "
            "dimension 0 of every activation as the batch, so it cannot move, merge or drop it")


# -- converters ------------------------------------------------------------------

#: A handler: (converter, node, attributes, input values) -> None.
Handler = Callable[["Converter", onnx.NodeProto, dict, list], None]
#: The handler of every supported ONNX operator type.
CONVERTERS: dict[str, Handler] = {}


def converter(*names: str):
    def deco(fn: Handler) -> Handler:
        for n in names:
            CONVERTERS[n] = fn
        return fn
    return deco


@converter("Identity", "Dropout")
def _identity(c: Converter, node, a, ins) -> None:
    if node.op_type == "Dropout" and c.out_used(1):
        raise DfxUnsupportedError("the mask output of Dropout is not supported")
    if node.op_type == "Dropout" and (a.get("training_mode") or (len(ins) > 2 and isinstance(ins[2], Act))):
        raise DfxUnsupportedError("Dropout in training mode is not supported")
    if node.op_type == "Dropout" and len(ins) > 2 and isinstance(ins[2], Const) and bool(ins[2].value):
        raise DfxUnsupportedError("Dropout in training mode is not supported")
    c.alias(node.output[0], c.act(ins[0]))


@converter("Cast")
def _cast(c: Converter, node, a, ins) -> None:
    if a.get("to") != onnx.TensorProto.FLOAT:
        raise DfxUnsupportedError(f"Cast of an activation to {onnx.TensorProto.DataType.Name(a.get('to', 0))}"
                                  " is not supported (activations are float32 or dfx integers)")
    c.alias(node.output[0], c.act(ins[0]))


@converter("QuantizeLinear")
def _quantize(c: Converter, node, a, ins) -> None:
    c.quantize_linear(node, a, ins)


@converter("DequantizeLinear")
def _dequantize(c: Converter, node, a, ins) -> None:  # only reached for activations
    c.dequantize_linear(node, a, ins)


def _weights(c: Converter, w: Const, array: np.ndarray | None = None, codes: np.ndarray | None = None,
             qformat: QFormat | None = None, role: str = "weights") -> str:
    """A weights tensor: ``w`` itself, or a transformed copy (float ``array`` or integer ``codes``)."""
    if array is None and codes is None:
        return c.tensor_of(w, role)
    if codes is not None:
        return c.tensor_of(Const(np.zeros(0), codes=codes, qformat=qformat), role)
    return c.new_const(role, array)


@converter("Conv")
def _conv(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    w = c.const(ins, 1, "weights")
    if w.value.ndim != 4:
        raise DfxUnsupportedError(f"only 2-D convolutions are supported (weights of rank 4); these "
                                  f"weights have shape {w.value.shape}")
    _, _, h, wd = _need_2d(c, x, "convolution")
    o, _, kh, kw = w.value.shape
    if a.get("kernel_shape") and list(a["kernel_shape"]) != [kh, kw]:
        raise DfxImportError(f"kernel_shape {a['kernel_shape']} does not match the weights {w.value.shape}")
    strides, dil = _ints(a.get("strides"), 2, 1), _ints(a.get("dilations"), 2, 1)
    pt, pl, pb, pr = window_pads(a, (h, wd), (kh, kw), strides, dil)
    op = ops.Conv2D(kernel_h=kh, kernel_w=kw, stride_h=strides[0], stride_w=strides[1], pad_top=pt,
                    pad_left=pl, pad_bottom=pb, pad_right=pr, dilation_h=dil[0], dilation_w=dil[1],
                    group=int(a.get("group", 1)))
    b = c.const(ins, 2, "bias", required=False)
    c.emit(op, [x, c.tensor_of(w, "weights"), None if b is None else _bias(c, b, o)], node.output[0])


def _bias(c: Converter, b: Const, n: int) -> str:
    if b.value.size != n:
        raise DfxImportError(f"bias has {b.value.size} values for {n} output channels")
    if b.quantized:
        return c.tensor_of(Const(b.value.reshape(n), codes=b.codes.reshape(n),
                                 qformat=_flat_format(b.qformat)), "bias")
    return c.new_const("bias", b.value.reshape(n)) if b.value.shape != (n,) else c.tensor_of(b, "bias")


def _flat_format(q: QFormat) -> QFormat:
    return q if not q.per_channel else QFormat(q.bw, 0, q.rounding, channel_fl=q.channel_fl, channel_axis=0)


@converter("ConvTranspose")
def _conv_transpose(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    w = c.const(ins, 1, "weights")
    if w.value.ndim != 4:
        raise DfxUnsupportedError(f"only 2-D transposed convolutions are supported; the weights have "
                                  f"shape {w.value.shape}")
    _, _, h, wd = _need_2d(c, x, "transposed convolution")
    cin, og, kh, kw = w.value.shape
    group = int(a.get("group", 1))
    strides, dil = _ints(a.get("strides"), 2, 1), _ints(a.get("dilations"), 2, 1)
    out_pad = _ints(a.get("output_padding"), 2, 0)
    mode = a.get("auto_pad", "NOTSET") or "NOTSET"
    size = (h, wd)
    if a.get("output_shape") or mode in ("SAME_UPPER", "SAME_LOWER"):
        target = list(a.get("output_shape") or [s * st for s, st in zip(size, strides)])[-2:]
        begins, ends = [], []
        for i in range(2):
            k = kh if i == 0 else kw
            total = strides[i] * (size[i] - 1) + out_pad[i] + (k - 1) * dil[i] + 1 - target[i]
            small = total // 2
            begin, end = (small, total - small) if mode == "SAME_UPPER" else (total - small, small)
            if end < 0:              # a larger output: the extra rows only get the bias
                out_pad[i] -= end
                end = 0
            if begin < 0:
                raise DfxUnsupportedError(f"output_shape {target} needs padding before the first row")
            begins.append(begin)
            ends.append(end)
        pads = [begins[0], begins[1], ends[0], ends[1]]
    elif mode == "VALID":
        pads = [0, 0, 0, 0]
    else:
        pads = _ints(a.get("pads"), 4, 0)
    op = ops.Deconv2D(kernel_h=kh, kernel_w=kw, stride_h=strides[0], stride_w=strides[1], pad_top=pads[0],
                      pad_left=pads[1], pad_bottom=pads[2], pad_right=pads[3], dilation_h=dil[0],
                      dilation_w=dil[1], group=group, output_pad_h=out_pad[0], output_pad_w=out_pad[1])
    b = c.const(ins, 2, "bias", required=False)
    c.emit(op, [x, c.tensor_of(w, "weights"), None if b is None else _bias(c, b, og * group)], node.output[0])


def _fc(c: Converter, node, x: str, w: Const, transpose: bool, scale: float, bias: Const | None,
        bias_scale: float, axis: int) -> None:
    """FullyConnected with weights w (or w^T) * scale and bias * bias_scale (or a broadcast add)."""
    if w.quantized:
        if scale != 1:
            raise DfxUnsupportedError("alpha != 1 on quantized weights is not supported")
        codes, q = w.codes, w.qformat
        if transpose:
            codes = codes.T
            if q.per_channel:
                q = QFormat(q.bw, 0, q.rounding, channel_fl=q.channel_fl, channel_axis=1 - q.channel_axis)
        wt = _weights(c, w, codes=np.ascontiguousarray(codes), qformat=q) if transpose else c.tensor_of(w, "weights")
    else:
        arr = w.value.T if transpose else w.value
        wt = c.tensor_of(w, "weights") if not transpose and scale == 1 else c.new_const("weights", arr * scale)
    n = c.model.tensors[wt].shape[0]
    if axis == 1:
        x = _skip_flatten(c, x)
    bt, extra = None, None
    if bias is not None:
        bshape = bias.value.shape
        if bias.value.size == n and (len(bshape) <= 1 or all(d == 1 for d in bshape[:-1])):
            if bias.quantized and bias_scale == 1:
                bt = _bias(c, bias, n)
            else:
                bt = c.new_const("bias", bias.value.reshape(n) * bias_scale)
        elif bias.value.size == 1:
            bt = c.new_const("bias", np.full(n, float(bias.value.reshape(-1)[0]) * bias_scale))
        else:
            extra = bias.value * bias_scale
    out = node.output[0]
    op = ops.FullyConnected(axis=axis)
    y = c.emit(op, [x, wt, bt], None if extra is not None else out, suffix="fc" if extra is not None else None)
    if extra is not None:
        _eltwise_checked(c, ops.Eltwise(ops.ELTWISE_SUM), [y, c.new_const("C", extra)], out, y)


def _skip_flatten(c: Converter, x: str) -> str:
    """The input of a Reshape/Flatten to (N, rest) that only feeds this FullyConnected (then removed)."""
    layer = c.model.producer(x)
    if layer is None or layer.type not in ("Reshape", "Flatten") or c.uses[x] != 0 or x in c.model.outputs:
        return x
    src = layer.inputs[0]
    if c.shape(x) != (c.shape(src)[0], math.prod(c.shape(src)[1:])):
        return x
    c.model.layers.remove(layer)
    del c.model.tensors[x]
    c.layer_names.discard(layer.name)
    return src


@converter("Gemm")
def _gemm(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0], "input A")
    if a.get("transA", 0):
        raise DfxUnsupportedError("transA=1 would transpose the batch dimension of the input A")
    if len(c.shape(x)) != 2:
        raise DfxImportError(f"Gemm input A must have rank 2, it has shape {c.shape(x)}")
    w = c.const(ins, 1, "matrix B")
    if w.value.ndim != 2:
        raise DfxImportError(f"Gemm input B must have rank 2, it has shape {w.value.shape}")
    bias = c.const(ins, 2, "bias C", required=False)
    _fc(c, node, x, w, not a.get("transB", 0), float(a.get("alpha", 1.0)), bias,
        float(a.get("beta", 1.0)), 1)


@converter("MatMul")
def _matmul(c: Converter, node, a, ins) -> None:
    if isinstance(ins[0], Const):
        raise DfxUnsupportedError("MatMul with a constant left operand and a computed right one is not "
                                  "supported (only x @ W with a constant W)")
    x = c.act(ins[0], "left operand")
    if isinstance(ins[1], Act):
        raise DfxUnsupportedError("MatMul of two computed tensors is not supported (only x @ W with a "
                                  "constant W)")
    w = c.const(ins, 1, "right operand")
    xs = c.shape(x)
    if w.value.ndim != 2 or len(xs) < 2:
        raise DfxUnsupportedError(f"MatMul is supported for x of rank >= 2 and a constant 2-D W; here x "
                                  f"{xs}, W {w.value.shape}")
    _fc(c, node, x, w, True, 1.0, None, 1.0, len(xs) - 1)


#: Element-wise ONNX operators without attributes, and their dfx operator.
ELEMENTWISE = {"Relu": ops.Relu, "Sigmoid": ops.Sigmoid, "Tanh": ops.Tanh, "Exp": ops.Exp}


@converter(*ELEMENTWISE)
def _elementwise(c: Converter, node, a, ins) -> None:
    c.emit(ELEMENTWISE[node.op_type](), [c.act(ins[0])], node.output[0])


@converter("LeakyRelu")
def _leaky(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    alpha = float(a.get("alpha", 0.01))
    if len(c.shape(x)) < 2:
        # no channel axis for PRelu: max(x, alpha * x) is the same for 0 <= alpha <= 1
        if not 0 <= alpha <= 1:
            raise DfxUnsupportedError(f"LeakyRelu with alpha {alpha} on an input without channel axis")
        ax = c.emit(ops.Eltwise(ops.ELTWISE_SUM, coefficients=[alpha]), [x], None, suffix="scaled")
        c.emit(ops.Eltwise(ops.ELTWISE_MAX), [x, ax], node.output[0], suffix="max")
        return
    slope = c.new_const("slope", np.array([alpha], np.float32))
    c.emit(ops.PRelu(), [x, slope], node.output[0])


@converter("PRelu")
def _prelu(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    s = c.const(ins, 1, "slope")
    xs = c.shape(x)
    out = node.output[0]
    if len(xs) >= 2 and s.value.size == 1:
        st = c.new_const("slope", s.value.reshape(1)) if not s.quantized else _reshaped_q(c, s, (1,), "slope")
        c.emit(ops.PRelu(), [x, st], out)
        return
    if len(xs) >= 2 and _axis_vector(s.value.shape, xs, 1):
        st = c.new_const("slope", s.value.reshape(-1)) if not s.quantized else _reshaped_q(c, s, (xs[1],), "slope")
        c.emit(ops.PRelu(), [x, st], out)
        return
    # Any other broadcast slope: y = relu(x) + slope * (x - relu(x)).
    if c.legacy_opset and s.value.ndim == 1 and len(xs) >= 2 and s.value.size == xs[1]:
        # opset < 7 exporters (PyTorch) wrote per-channel slopes as (C,)
        c.emit(ops.PRelu(), [x, c.new_const("slope", s.value)], out)
        return
    try:
        full = ops.broadcast_shapes(xs, tuple(s.value.shape))
    except ValueError:
        raise DfxImportError(f"slope {s.value.shape} does not broadcast to the input {xs}") from None
    _keep_batch(c, x, full if len(full) == len(xs) else (), "broadcasting the PRelu slope")
    r = c.emit(ops.Relu(), [x], None, suffix="pos")
    n = c.emit(ops.Eltwise(ops.ELTWISE_SUM, coefficients=[1.0, -1.0]), [x, r], None, suffix="neg")
    m = c.emit(ops.Eltwise(ops.ELTWISE_PROD), [n, c.tensor_of(s, "slope")], None, suffix="scaled")
    c.emit(ops.Eltwise(ops.ELTWISE_SUM), [r, m], out, suffix="sum")


def _reshaped_q(c: Converter, v: Const, shape: Shape, role: str) -> str:
    q = v.qformat
    if q.per_channel:
        q = QFormat(q.bw, 0, q.rounding, channel_fl=q.channel_fl, channel_axis=0)
    return c.tensor_of(Const(v.value.reshape(shape), codes=v.codes.reshape(shape), qformat=q), role)


@converter("Clip")
def _clip(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    if c._node_opset(node) < 11:
        lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
    else:
        lo_v, hi_v = c.const(ins, 1, "min", required=False), c.const(ins, 2, "max", required=False)
        lo = -np.inf if lo_v is None else float(np.asarray(lo_v.value).reshape(-1)[0])
        hi = np.inf if hi_v is None else float(np.asarray(hi_v.value).reshape(-1)[0])
    if lo == 0 and hi == np.inf:
        c.emit(ops.Relu(), [x], node.output[0])
    elif lo > hi:
        raise DfxUnsupportedError(f"Clip with min {lo} > max {hi} is not supported")
    else:
        c.emit(ops.Clip(min=lo, max=hi), [x], node.output[0])


def _pool_size_onnx(size: int, k: int, s: int, p0: int, p1: int, ceil_mode: bool) -> int:
    span = (size + p0 + p1 - k) / s + 1
    if not ceil_mode:
        return int(math.floor(span))
    out = int(math.ceil(span))
    if (out - 1) * s >= size + p0:
        out -= 1
    return out


@converter("MaxPool", "AveragePool")
def _pool(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    _, _, h, w = _need_2d(c, x, "pooling")
    if c.out_used(1):
        raise DfxUnsupportedError("the Indices output of MaxPool is not supported")
    kernel = _ints(a.get("kernel_shape"), 0, 1)
    if len(kernel) != 2:
        raise DfxUnsupportedError(f"only 2-D pooling is supported (kernel_shape {kernel})")
    strides, dil = _ints(a.get("strides"), 2, 1), _ints(a.get("dilations"), 2, 1)
    if dil != [1, 1]:
        raise DfxUnsupportedError(f"pooling with dilations {dil} is not supported")
    pads = window_pads(a, (h, w), kernel, strides, dil)
    ceil_mode = bool(a.get("ceil_mode", 0))
    if any(p >= k for p, k in zip(pads, kernel * 2)):
        raise DfxUnsupportedError(f"pads {pads} as large as the kernel {kernel} are not supported")
    avg = node.op_type == "AveragePool"
    op = ops.Pool2D(type=ops.POOL_AVERAGE if avg else ops.POOL_MAX, kernel_h=kernel[0], kernel_w=kernel[1],
                    stride_h=strides[0], stride_w=strides[1], pad_top=pads[0], pad_left=pads[1],
                    pad_bottom=pads[2], pad_right=pads[3], ceil_mode=ceil_mode,
                    divisor=ops.DIVISOR_PADDED_WINDOW if a.get("count_include_pad", 0) else ops.DIVISOR_VALID_ONLY)
    want = (_pool_size_onnx(h, kernel[0], strides[0], pads[0], pads[2], ceil_mode),
            _pool_size_onnx(w, kernel[1], strides[1], pads[1], pads[3], ceil_mode))
    got = (ops.pool_out_size(h, kernel[0], strides[0], pads[0], pads[2], ceil_mode),
           ops.pool_out_size(w, kernel[1], strides[1], pads[1], pads[3], ceil_mode))
    if want != got:
        raise DfxUnsupportedError(f"ceil_mode output size {want} differs from dfx's Caffe rule {got} for "
                                  "this unpadded window (ONNX drops a last window that starts past the "
                                  "input even without padding; dfx only when padded)")
    c.emit(op, [x], node.output[0])


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    _need_2d(c, x, "global pooling")
    kind = ops.POOL_AVERAGE if node.op_type == "GlobalAveragePool" else ops.POOL_MAX
    c.emit(ops.Pool2D(type=kind, global_=True, ceil_mode=False), [x], node.output[0])


@converter("BatchNormalization")
def _batchnorm(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    if a.get("training_mode", 0) or any(c.out_used(i) for i in (1, 2, 3, 4)):
        raise DfxUnsupportedError("BatchNormalization in training mode (running statistics outputs) is "
                                  "not supported")
    if a.get("spatial", 1) != 1:
        raise DfxUnsupportedError("BatchNormalization with spatial=0 is not supported")
    gamma, beta, mean, var = (np.asarray(c.const(ins, i, n).value, np.float64)
                              for i, n in ((1, "scale"), (2, "bias B"), (3, "mean"), (4, "variance")))
    eps = float(np.float32(a.get("epsilon", 1e-5)))
    xs = c.shape(x)
    if len(xs) < 2:
        raise DfxImportError(f"BatchNormalization input must have a channel axis, shape {xs}")
    ch = xs[1]
    if not all(v.size == ch for v in (gamma, beta, mean, var)):
        raise DfxImportError(f"BatchNormalization parameters must have {ch} values")
    scale = (gamma.reshape(-1) / np.sqrt(var.reshape(-1) + eps))
    shift = beta.reshape(-1) - mean.reshape(-1) * scale
    if _fold_affine(c, x, scale, shift, node.output[0], channel_axis=1):
        return
    c.emit(ops.Scale(axis=1, num_axes=1), [x, c.new_const("scale", scale), c.new_const("bias", shift)],
           node.output[0])


def _fold_affine(c: Converter, x: str, scale: np.ndarray | None, shift: np.ndarray | None, output: str,
                 channel_axis: int) -> bool:
    """Fold y = x * scale + shift (per output channel) into the Conv/Deconv/FC writing x, if private."""
    layer = c.sole_producer(x, ("Conv2D", "Deconv2D", "FullyConnected"))
    if layer is None:
        return False
    rank = len(c.shape(x))
    fc_axis = rank - 1 if layer.type == "FullyConnected" else 1
    if channel_axis != fc_axis or (layer.type == "FullyConnected" and layer.op.axis != rank - 1):
        return False
    w = c.model.tensors[layer.inputs[1]]
    if scale is not None and c.private_const(layer, 1) is None:
        return False
    b_name = layer.inputs[2] if len(layer.inputs) > 2 else None
    if b_name is not None and c.private_const(layer, 2) is None:
        return False
    n = c.shape(x)[fc_axis]
    old_b = np.zeros(n) if b_name is None else np.asarray(c.model.tensors[b_name].data, np.float64).reshape(n)
    if scale is not None:
        wd = np.asarray(w.data, np.float64)
        if layer.type == "Deconv2D":
            g = layer.op.group
            cin, og = wd.shape[:2]
            out_ch = (np.arange(cin)[:, None] // (cin // g)) * og + np.arange(og)[None, :]
            wd = wd * scale[out_ch][:, :, None, None]
        else:
            wd = wd * scale.reshape((-1,) + (1,) * (wd.ndim - 1))
        c.replace_input(layer, 1, c.new_const("weights", wd))
        old_b = old_b * scale
    new_b = old_b + (0 if shift is None else shift)
    c.replace_input(layer, 2, c.new_const("bias", new_b))
    c.rename(x, output)
    return True


def _axis_vector(cshape: Shape, xshape: Shape, axis: int) -> bool:
    """Whether a constant of ``cshape`` broadcasts against ``xshape`` only along ``axis``."""
    r = len(xshape)
    if len(cshape) > r or r < 2:
        return False
    full = (1,) * (r - len(cshape)) + tuple(cshape)
    return all(d == (xshape[i] if i == axis else 1) for i, d in enumerate(full)) and xshape[axis] > 1


def _eltwise_checked(c: Converter, op: ops.Eltwise, inputs: list[str], output: str | None, x: str,
                     suffix: str | None = None) -> str:
    shapes = [c.shape(n) for n in inputs]
    try:
        out = ops.broadcast_shapes(*shapes)
    except ValueError:
        raise DfxImportError(f"shapes {shapes} do not broadcast") from None
    if len(out) != len(c.shape(x)) or out[0] != c.shape(x)[0]:
        _keep_batch(c, x, out if len(out) == len(c.shape(x)) else (), "broadcasting with the constant")
    return c.emit(op, inputs, output, suffix=suffix)


@converter("Add", "Sub", "Mul", "Div", "Sum", "Max", "Mean")
def _binary(c: Converter, node, a, ins) -> None:
    kind = node.op_type
    if c._node_opset(node) < 7 and a.get("broadcast"):
        raise DfxUnsupportedError("legacy broadcast attribute (opset < 7)")
    acts = [v for v in ins if isinstance(v, Act)]
    consts = [v for v in ins if isinstance(v, Const)]
    out = node.output[0]
    if kind in ("Sum", "Max", "Mean") or not consts:
        if kind == "Div":
            raise DfxUnsupportedError("division by a computed tensor is not supported (only by a constant)")
        names = [c.tensor_of(v, f"in{i}") for i, v in enumerate(ins) if v is not None]
        x = acts[0].tensor
        if kind in ("Add", "Sum"):
            op = ops.Eltwise(ops.ELTWISE_SUM)
        elif kind == "Sub":
            op = ops.Eltwise(ops.ELTWISE_SUM, coefficients=[1.0, -1.0])
        elif kind == "Mean":
            op = ops.Eltwise(ops.ELTWISE_SUM, coefficients=[1.0 / len(names)] * len(names))
        elif kind == "Max":
            op = ops.Eltwise(ops.ELTWISE_MAX)
        else:
            op = ops.Eltwise(ops.ELTWISE_PROD)
        if len(names) == 1:
            c.alias(out, names[0]) if kind != "Mean" else c.emit(op, names, out)
            return
        _eltwise_checked(c, op, names, out, x)
        return
    const_first = isinstance(ins[0], Const)
    x, k = acts[0].tensor, consts[0]
    val = np.asarray(k.value, np.float64)
    if kind == "Div" and const_first:
        raise DfxUnsupportedError("dividing a constant by a computed tensor is not supported")
    xs = c.shape(x)
    # the same operation as y = s * x + b with constants s and b (None: absent)
    s, b = {"Add": (None, val), "Sub": ((-1.0, val) if const_first else (None, -val)),
            "Mul": (val, None), "Div": (1.0 / val, None)}[kind]
    if kind in ("Add", "Sub") and not const_first and not k.quantized:
        for axis in (1, len(xs) - 1):
            if _axis_vector(val.shape, xs, axis) and _fold_affine(c, x, None, b.reshape(-1), out, axis):
                return
    if not k.quantized and _axis_vector(val.shape, xs, 1):
        n = xs[1]
        scale = np.full(n, 1.0) if s is None else np.broadcast_to(np.reshape(s, -1), (n,))
        inputs = [x, c.new_const("scale", scale)]
        if b is not None:
            inputs.append(c.new_const("bias", np.reshape(b, -1)))
        c.emit(ops.Scale(axis=1, num_axes=1), inputs, out)
        return
    if kind == "Div":
        _eltwise_checked(c, ops.Eltwise(ops.ELTWISE_PROD), [x, c.new_const("B", 1.0 / val)], out, x)
        return
    kt = c.tensor_of(k, "B")
    if kind == "Mul":
        op = ops.Eltwise(ops.ELTWISE_PROD)
    elif kind == "Add":
        op = ops.Eltwise(ops.ELTWISE_SUM)
    else:
        op = ops.Eltwise(ops.ELTWISE_SUM, coefficients=[-1.0, 1.0] if const_first else [1.0, -1.0])
    _eltwise_checked(c, op, [x, kt], out, x)


@converter("Neg")
def _neg(c: Converter, node, a, ins) -> None:
    c.emit(ops.Eltwise(ops.ELTWISE_SUM, coefficients=[-1.0]), [c.act(ins[0])], node.output[0])


@converter("Concat")
def _concat(c: Converter, node, a, ins) -> None:
    names = [c.tensor_of(v, f"in{i}") for i, v in enumerate(ins) if v is not None]
    x = next(v.tensor for v in ins if isinstance(v, Act))
    axis = _norm_axis(int(a.get("axis", 1)), len(c.shape(x)))
    if axis == 0:
        raise DfxUnsupportedError("Concat along axis 0 would join batch entries; dfx keeps dimension 0 as "
                                  "the batch")
    c.emit(ops.Concat(axis=axis), names, node.output[0])


def _ints_of(c: Converter, ins, index: int, what: str) -> list[int] | None:
    v = c.const(ins, index, what, required=False)
    return None if v is None else [int(d) for d in np.asarray(v.value).reshape(-1)]


@converter("Slice")
def _slice(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    xs = c.shape(x)
    if c._node_opset(node) < 10:
        starts, ends, axes, steps = list(a.get("starts", [])), list(a.get("ends", [])), a.get("axes"), None
    else:
        starts, ends = _ints_of(c, ins, 1, "starts"), _ints_of(c, ins, 2, "ends")
        axes, steps = _ints_of(c, ins, 3, "axes"), _ints_of(c, ins, 4, "steps")
    if starts is None or ends is None or len(starts) != len(ends):
        raise DfxImportError(f"starts {starts} and ends {ends} must be given, one per axis")
    axes = list(range(len(starts))) if axes is None else [_norm_axis(int(d), len(xs)) for d in axes]
    steps = [1] * len(starts) if steps is None else steps
    if len(axes) != len(starts) or len(steps) != len(starts):
        raise DfxImportError(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in length")
    cuts = []
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step != 1:
            raise DfxUnsupportedError(f"Slice with step {step} (axis {axis}) is not supported; only step 1")
        dim = xs[axis]
        lo = min(max(start + dim if start < 0 else start, 0), dim)
        hi = min(max(end + dim if end < 0 else end, 0), dim)
        if hi <= lo:
            raise DfxUnsupportedError(f"Slice {start}:{end} of axis {axis} (size {dim}) is empty; empty tensors "
                                      "are not supported")
        if (lo, hi) == (0, dim):
            continue
        if axis == 0:
            raise DfxUnsupportedError(f"Slice of axis 0 ({lo}:{hi} of {dim}) would drop batch entries; dfx keeps "
                                      "dimension 0 as the batch")
        cuts.append((axis, lo, hi, dim))
    if not cuts:
        c.alias(node.output[0], x)
        return
    for k, (axis, lo, hi, dim) in enumerate(cuts):
        points = [p for p in (lo, hi) if 0 < p < dim]
        outputs: list[str | None] = [None] * (len(points) + 1)
        last = k == len(cuts) - 1
        outputs[1 if lo > 0 else 0] = node.output[0] if last else None
        names = c.emit_slice(x, axis, points, outputs, suffix=None if len(cuts) == 1 else f"axis{axis}")
        x = names[1 if lo > 0 else 0]


@converter("Gather")
def _gather(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    xs = c.shape(x)
    axis = _norm_axis(int(a.get("axis", 0)), len(xs))
    idx = np.asarray(c.const(ins, 1, "indices").value).astype(np.int64)
    flat = np.where(idx < 0, idx + xs[axis], idx).reshape(-1)
    if idx.ndim > 1 or flat.size == 0 or np.any(np.diff(flat) != 1) or flat[0] < 0 or flat[-1] >= xs[axis]:
        raise DfxUnsupportedError(f"Gather of an activation needs a scalar index or a contiguous ascending range "
                                  f"of indices inside 0..{xs[axis] - 1}; here {idx.tolist()}")
    if axis == 0:
        raise DfxUnsupportedError("Gather along axis 0 would pick batch entries; dfx keeps dimension 0 as the batch")
    lo, hi = int(flat[0]), int(flat[-1]) + 1
    out = node.output[0]
    shape = xs[:axis] + ((hi - lo,) if idx.ndim else ()) + xs[axis + 1:]
    if (lo, hi) == (0, xs[axis]):
        _reshape_to(c, x, shape, out, "Gather")
        return
    points = [p for p in (lo, hi) if 0 < p < xs[axis]]
    piece = 1 if lo > 0 else 0
    outputs: list[str | None] = [None] * (len(points) + 1)
    outputs[piece] = out if idx.ndim else None
    part = c.emit_slice(x, axis, points, outputs, suffix=None if idx.ndim else "slice")[piece]
    if not idx.ndim:  # a scalar index drops the axis
        c.emit(ops.Reshape(), [part], out, shape=shape, suffix="squeeze")


@converter("Split")
def _split(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    xs = c.shape(x)
    axis = _norm_axis(int(a.get("axis", 0)), len(xs))
    n = len(node.output)
    sizes = _ints_of(c, ins, 1, "split") if c._node_opset(node) >= 13 else a.get("split")
    if sizes is None:
        parts = int(a.get("num_outputs", n))
        step = -(-xs[axis] // parts)
        sizes = [min(step, xs[axis] - i * step) for i in range(parts)]
    sizes = [int(v) for v in sizes]
    if len(sizes) != n or sum(sizes) != xs[axis] or min(sizes) < 1:
        raise DfxImportError(f"split sizes {sizes} do not cut axis {axis} (size {xs[axis]}) into {n} non-empty "
                             "parts")
    if n == 1:
        c.alias(node.output[0], x)
        return
    if axis == 0:
        raise DfxUnsupportedError("Split along axis 0 would separate batch entries; dfx keeps dimension 0 as "
                                  "the batch")
    c.emit_slice(x, axis, [int(p) for p in np.cumsum(sizes)[:-1]], [o or None for o in node.output])


def _reshape_to(c: Converter, x: str, shape: Shape, output: str, what: str, suffix: str | None = None) -> str:
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) != math.prod(c.shape(x)):
        raise DfxImportError(f"cannot reshape {c.shape(x)} to {shape}")
    _keep_batch(c, x, shape, what)
    if shape == c.shape(x) and suffix is None:
        c.alias(output, x)
        return x
    return c.emit(ops.Reshape(), [x], output, shape=shape, suffix=suffix)


@converter("Reshape")
def _reshape(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    if c._node_opset(node) < 5:
        target = list(a.get("shape", []))
    else:
        target = [int(d) for d in np.asarray(c.const(ins, 1, "shape").value).reshape(-1)]
    xs = c.shape(x)
    if not a.get("allowzero", 0):
        target = [xs[i] if d == 0 and i < len(xs) else d for i, d in enumerate(target)]
    if target.count(-1) > 1:
        raise DfxImportError(f"shape {target} has more than one -1")
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        target[target.index(-1)] = math.prod(xs) // known if known else 0
    _reshape_to(c, x, tuple(target), node.output[0], "Reshape")


@converter("Flatten")
def _flatten(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    xs = c.shape(x)
    axis = int(a.get("axis", 1))
    axis = axis + len(xs) if axis < 0 else axis
    shape = (math.prod(xs[:axis]), math.prod(xs[axis:]))
    _keep_batch(c, x, shape, "Flatten")
    if shape == xs:
        c.alias(node.output[0], x)
    elif axis == 1 and len(xs) >= 2:
        c.emit(ops.Flatten(axis=1, end_axis=-1), [x], node.output[0])
    else:
        _reshape_to(c, x, shape, node.output[0], "Flatten")


@converter("Transpose")
def _transpose(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    r = len(c.shape(x))
    perm = [int(p) for p in a.get("perm", list(range(r))[::-1])]
    if sorted(perm) != list(range(r)):
        raise DfxImportError(f"perm {perm} is not a permutation of {r} axes")
    if perm[0] != 0:
        raise DfxUnsupportedError(f"Transpose with perm {perm} moves axis 0; dfx keeps dimension 0 of "
                                  "every activation as the batch, so a permutation must keep it first")
    if perm == list(range(r)):
        c.alias(node.output[0], x)
        return
    c.emit(ops.Permute(order=perm), [x], node.output[0])


def _axes(c: Converter, node, a, ins) -> list[int] | None:
    if c._node_opset(node) >= 13:
        v = c.const(ins, 1, "axes", required=False)
        return None if v is None else [int(d) for d in np.asarray(v.value).reshape(-1)]
    return None if a.get("axes") is None else [int(d) for d in a["axes"]]


@converter("Squeeze")
def _squeeze(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    xs = c.shape(x)
    axes = _axes(c, node, a, ins)
    axes = [i for i, d in enumerate(xs) if d == 1] if axes is None else [_norm_axis(d, len(xs)) for d in axes]
    if any(xs[i] != 1 for i in axes):
        raise DfxImportError(f"cannot squeeze axes {axes} of shape {xs}")
    if 0 in axes:
        raise DfxUnsupportedError(f"Squeeze of axis 0 (shape {xs}) would drop the batch dimension")
    _reshape_to(c, x, tuple(d for i, d in enumerate(xs) if i not in axes), node.output[0], "Squeeze")


@converter("Unsqueeze")
def _unsqueeze(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    xs = c.shape(x)
    axes = _axes(c, node, a, ins) or []
    r = len(xs) + len(axes)
    axes = sorted(_norm_axis(d, r) for d in axes)
    if 0 in axes:
        raise DfxUnsupportedError(f"Unsqueeze at axis 0 (shape {xs}) would push the batch out of "
                                  "dimension 0")
    shape = list(xs)
    for ax in axes:
        shape.insert(ax, 1)
    _reshape_to(c, x, tuple(shape), node.output[0], "Unsqueeze")


@converter("Softmax")
def _softmax(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    xs = c.shape(x)
    r = len(xs)
    legacy = c._node_opset(node) < 13
    axis = _norm_axis(int(a.get("axis", 1 if legacy else -1)), r)
    if axis == 0:
        raise DfxUnsupportedError("Softmax over axis 0 would mix batch entries; dfx keeps dimension 0 as "
                                  "the batch")
    out = node.output[0]
    if not legacy or axis == r - 1:
        c.emit(ops.Softmax(axis=axis), [x], out)
        return
    # opset < 13: softmax over the flattened dimensions axis..end
    flat = (math.prod(xs[:axis]), math.prod(xs[axis:]))
    _keep_batch(c, x, flat, "Softmax (opset < 13) over several axes")
    y = c.emit(ops.Reshape(), [x], None, shape=flat, suffix="flatten")
    y = c.emit(ops.Softmax(axis=1), [y], None, suffix="softmax")
    c.emit(ops.Reshape(), [y], out, shape=xs, suffix="restore")


def _nearest_index(out_i: np.ndarray, scale: float, in_size: int, out_size: int, ctm: str, nearest: str
                   ) -> np.ndarray | None:
    """ONNX Resize's nearest source index for each output index (None: unknown mode)."""
    i = out_i.astype(np.float64)
    if ctm == "half_pixel":
        xo = (i + 0.5) / scale - 0.5
    elif ctm == "pytorch_half_pixel":
        xo = (i + 0.5) / scale - 0.5 if out_size > 1 else np.zeros_like(i)
    elif ctm == "asymmetric":
        xo = i / scale
    elif ctm == "tf_half_pixel_for_nn":
        xo = (i + 0.5) / scale
    elif ctm == "align_corners":
        xo = i * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(i)
    elif ctm == "half_pixel_symmetric":
        adj = out_size / (scale * in_size)
        center = in_size / 2
        off = center * (1 - adj)
        xo = off + (i + 0.5) / scale - 0.5
    else:
        return None
    if nearest == "round_prefer_floor":
        idx = np.where(xo - np.floor(xo) == 0.5, np.floor(xo), np.round(xo))
    elif nearest == "round_prefer_ceil":
        idx = np.where(xo - np.floor(xo) == 0.5, np.ceil(xo), np.round(xo))
    elif nearest == "floor":
        idx = np.floor(xo)
    elif nearest == "ceil":
        idx = np.ceil(xo)
    else:
        return None
    return np.clip(idx, 0, in_size - 1).astype(np.int64)


@converter("Resize", "Upsample")
def _resize(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    xs = c.shape(x)
    opset = c._node_opset(node)
    mode = a.get("mode", "nearest")
    if mode != "nearest":
        raise DfxUnsupportedError(f"{node.op_type} mode '{mode}' is not supported (only nearest)")
    if len(xs) != 4:
        raise DfxUnsupportedError(f"only N,C,H,W inputs are supported, shape {xs}")
    if a.get("axes") is not None and sorted(_norm_axis(d, 4) for d in a["axes"]) != list(range(4)):
        axes = [_norm_axis(d, 4) for d in a["axes"]]
    else:
        axes = list(range(4))
    if node.op_type == "Upsample" and opset < 9:
        scales = list(a.get("scales", []))
        sizes = None
    else:
        si = 1 if node.op_type == "Upsample" or opset < 11 else 2
        sv = c.const(ins, si, "scales", required=False)
        zv = c.const(ins, si + 1, "sizes", required=False) if node.op_type == "Resize" and opset >= 11 else None
        scales = None if sv is None or sv.value.size == 0 else [float(s) for s in sv.value.reshape(-1)]
        sizes = None if zv is None or zv.value.size == 0 else [int(s) for s in zv.value.reshape(-1)]
    full_scale = [1.0] * 4
    if sizes is not None:
        if a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise DfxUnsupportedError("keep_aspect_ratio_policy other than 'stretch' is not supported")
        for ax, sz in zip(axes, sizes):
            full_scale[ax] = sz / xs[ax]
    elif scales is not None:
        for ax, s in zip(axes, scales):
            full_scale[ax] = s
    else:
        raise DfxImportError("needs scales or sizes")
    if full_scale[0] != 1 or full_scale[1] != 1:
        raise DfxUnsupportedError(f"scales {full_scale} resize the batch or channel axis")
    factors = []
    for s in full_scale[2:]:
        if s < 1 or abs(s - round(s)) > 1e-6:
            raise DfxUnsupportedError(f"scales {full_scale}: only integer upsampling factors are supported")
        factors.append(int(round(s)))
    ctm = a.get("coordinate_transformation_mode", "half_pixel" if node.op_type == "Resize" and opset >= 11
                else "asymmetric")
    nearest = a.get("nearest_mode", "round_prefer_floor" if node.op_type == "Resize" and opset >= 11 else "floor")
    if node.op_type == "Resize" and opset == 10:
        ctm, nearest = "asymmetric", "floor"
    for axis, f in zip((2, 3), factors):
        n_in, n_out = xs[axis], xs[axis] * f
        scale = full_scale[axis]
        idx = _nearest_index(np.arange(n_out), scale, n_in, n_out, ctm, nearest)
        if idx is None or not np.array_equal(idx, np.arange(n_out) // f):
            raise DfxUnsupportedError(f"nearest resize with coordinate_transformation_mode '{ctm}' and "
                                      f"nearest_mode '{nearest}' does not repeat each pixel {f} times; "
                                      "dfx's Upsample does")
    c.emit(ops.Upsample(scale_h=factors[0], scale_w=factors[1]), [x], node.output[0])


@converter("Pad")
def _pad(c: Converter, node, a, ins) -> None:
    x = c.act(ins[0])
    xs = c.shape(x)
    r = len(xs)
    mode = a.get("mode", "constant")
    if mode != "constant":
        raise DfxUnsupportedError(f"Pad mode '{mode}' is not supported (only constant)")
    if c._node_opset(node) < 11:
        pads = [int(p) for p in a.get("pads", a.get("paddings", []))]
        value = float(a.get("value", 0.0))
    else:
        pads = [int(p) for p in np.asarray(c.const(ins, 1, "pads").value).reshape(-1)]
        vv = c.const(ins, 2, "constant_value", required=False)
        value = 0.0 if vv is None or vv.value.size == 0 else float(np.asarray(vv.value).reshape(-1)[0])
        av = c.const(ins, 3, "axes", required=False)
        if av is not None:
            axes = [_norm_axis(int(d), r) for d in np.asarray(av.value).reshape(-1)]
            full = [0] * (2 * r)
            for k, ax in enumerate(axes):
                full[ax], full[r + ax] = pads[k], pads[len(axes) + k]
            pads = full
    if len(pads) != 2 * r:
        raise DfxImportError(f"pads {pads} must have {2 * r} values")
    if any(p < 0 for p in pads):
        raise DfxUnsupportedError(f"negative pads {pads} (cropping) are not supported")
    if pads[0] or pads[r]:
        raise DfxUnsupportedError("padding the batch axis (0) is not supported")
    if not any(pads):
        c.alias(node.output[0], x)
        return
    c.emit(ops.Pad(pads=pads, value=value), [x], node.output[0])
