"""Float kernels: every operator on real values, in the dtype of the call.

The integer mode uses them (in float32) for float operators and for operators
that run in float form; the float mode runs every layer through them in
float32; the simulation mode in float64. Each kernel takes the operator, the
input arrays (None for an omitted optional input) and a :class:`Ctx`, and
returns the list of outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dfxsdk import ops
from dfxsdk.errors import DfxUnsupportedError
from dfxsdk.minifloat import trim as trim_minifloat

from . import common, detection


@dataclass
class Ctx:
    """What a kernel needs beyond its inputs."""

    layer: str
    dtype: np.dtype
    #: Declared output shapes with dimension 0 replaced by the batch size.
    out_shapes: list[tuple[int, ...]]


Kernel = Callable[[ops.Op, list, Ctx], list]
KERNELS: dict[str, Kernel] = {}


def kernel(name: str):
    def deco(fn: Kernel) -> Kernel:
        KERNELS[name] = fn
        return fn
    return deco


def _bias(y: np.ndarray, b: np.ndarray | None, axis: int = 1) -> np.ndarray:
    if b is None:
        return y
    return y + b.reshape(common.channel_shape(y.ndim, axis))


@kernel("Conv2D")
def conv2d(op, ins, ctx):
    x, w, b = (ins + [None])[:3]
    return [_bias(common.conv2d_sum(x, w, op), b)]


@kernel("Deconv2D")
def deconv2d(op, ins, ctx):
    x, w, b = (ins + [None])[:3]
    return [_bias(common.deconv2d_sum(x, w, op), b)]


@kernel("FullyConnected")
def fully_connected(op, ins, ctx):
    x, w, b = (ins + [None])[:3]
    y = common.fc_sum(x, w, op)
    return [y if b is None else y + b.reshape(-1)]


@kernel("Pool2D")
def pool2d(op, ins, ctx):
    x = ins[0]
    if op.type == ops.POOL_MAX:
        win = common.pool_windows(x, op, -np.inf)
        return [win.max(axis=(4, 5))]
    s = common.pool_windows(x, op, 0).sum(axis=(4, 5))
    return [s / common.pool_divisor(op, x.shape[2], x.shape[3]).astype(x.dtype)]


@kernel("Relu")
def relu(op, ins, ctx):
    return [np.maximum(ins[0], 0)]


@kernel("Clip")
def clip(op, ins, ctx):
    return [np.clip(ins[0], ctx.dtype.type(op.min), ctx.dtype.type(op.max))]


@kernel("PRelu")
def prelu(op, ins, ctx):
    x, s = ins
    s = s.reshape(common.channel_shape(x.ndim, 1)) if s.size > 1 else s.reshape(())
    return [np.where(x > 0, x, x * s)]


@kernel("Sigmoid")
def sigmoid(op, ins, ctx):
    x = ins[0]
    e = np.exp(-np.abs(x))
    return [np.where(x >= 0, 1 / (1 + e), e / (1 + e))]


@kernel("Tanh")
def tanh(op, ins, ctx):
    return [np.tanh(ins[0])]


@kernel("Exp")
def exp(op, ins, ctx):
    return [np.exp(ins[0])]


@kernel("Minifloat")
def minifloat(op, ins, ctx):
    return [trim_minifloat(ins[0], op.mant_bits, op.exp_bits).astype(ctx.dtype)]


@kernel("Lrn")
def lrn(op, ins, ctx):
    x = ins[0]
    size, half = op.local_size, (op.local_size - 1) // 2
    sq = x * x
    if op.region == ops.LRN_ACROSS_CHANNELS:
        p = np.pad(sq, ((0, 0), (half, half), (0, 0), (0, 0)))
        c = x.shape[1]
        acc = sum(p[:, i:i + c] for i in range(size))
        scale = op.k + (op.alpha / size) * acc
    else:
        p = common.pad_spatial(sq, half, half, half, half)
        acc = common.windows(p, size, size, 1, 1, 1, 1, x.shape[2], x.shape[3]).sum(axis=(4, 5))
        scale = op.k + (op.alpha / (size * size)) * acc
    return [(x * scale ** (-op.beta)).astype(ctx.dtype)]


@kernel("Concat")
def concat(op, ins, ctx):
    return [np.concatenate(ins, axis=op.axis)]


@kernel("Eltwise")
def eltwise(op, ins, ctx):
    if op.operation == ops.ELTWISE_SUM:
        coeffs = op.coefficients or [1.0] * len(ins)
        y = ins[0] * ctx.dtype.type(coeffs[0])
        for c, x in zip(coeffs[1:], ins[1:]):
            y = y + x * ctx.dtype.type(c)
        return [y]
    if op.operation == ops.ELTWISE_PROD:
        y = ins[0]
        for x in ins[1:]:
            y = y * x
        return [y]
    y = ins[0]
    for x in ins[1:]:
        y = np.maximum(y, x)
    return [y]


@kernel("Softmax")
def softmax(op, ins, ctx):
    x = ins[0]
    e = np.exp(x - x.max(axis=op.axis, keepdims=True))
    return [e / e.sum(axis=op.axis, keepdims=True)]


def scale_shape(x_ndim: int, op: ops.Scale, s_shape: tuple[int, ...], x_shape) -> list[int]:
    """Shape that broadcasts a Scale parameter against x."""
    a = op.axis + x_ndim if op.axis < 0 else op.axis
    return [1] * a + list(x_shape[a:a + op.num_axes]) + [1] * (x_ndim - a - op.num_axes)


@kernel("Scale")
def scale(op, ins, ctx):
    x, s, b = (ins + [None])[:3]
    shape = scale_shape(x.ndim, op, s.shape, x.shape)
    y = x * s.reshape(shape)
    return [y if b is None else y + b.reshape(shape)]


@kernel("Power")
def power(op, ins, ctx):
    t = ctx.dtype.type
    base = t(op.shift) + t(op.scale) * ins[0]
    return [base if op.power == 1 else base ** t(op.power)]


@kernel("Flatten")
def flatten(op, ins, ctx):
    return [ins[0].reshape(common.flatten_shape(ins[0].shape, op))]


@kernel("Reshape")
def reshape(op, ins, ctx):
    return [ins[0].reshape(ctx.out_shapes[0])]


@kernel("Permute")
def permute(op, ins, ctx):
    return [np.ascontiguousarray(ins[0].transpose(op.order))]


@kernel("Slice")
def slice_(op, ins, ctx):
    x = ins[0]
    a = op.axis + x.ndim if op.axis < 0 else op.axis
    return [np.take(x, np.arange(b0, b1), axis=a) for b0, b1 in common.slice_bounds(x.shape[a], op)]


def pad_array(x: np.ndarray, pads: list[int], value) -> np.ndarray:
    """Constant padding; ``value`` is a scalar or broadcasts against the output."""
    r = x.ndim
    out_shape = tuple(d + pads[i] + pads[r + i] for i, d in enumerate(x.shape))
    out = np.empty(out_shape, x.dtype)
    out[...] = value
    out[tuple(slice(pads[i], pads[i] + d) for i, d in enumerate(x.shape))] = x
    return out


@kernel("Pad")
def pad(op, ins, ctx):
    return [pad_array(ins[0], op.pads, ctx.dtype.type(op.value))]


@kernel("Upsample")
def upsample(op, ins, ctx):
    return [ins[0].repeat(op.scale_h, axis=2).repeat(op.scale_w, axis=3)]


@kernel("Normalize")
def normalize(op, ins, ctx):
    x = ins[0]
    s = ins[1] if len(ins) > 1 else None
    sq = x * x
    if op.across_spatial:
        norm = np.sqrt(sq.sum(axis=(1, 2, 3), keepdims=True) + ctx.dtype.type(op.eps))
    else:
        norm = np.sqrt(sq.sum(axis=1, keepdims=True) + ctx.dtype.type(op.eps))
    y = x / norm
    if s is not None:
        y = y * (s.reshape(()) if s.size == 1 else s.reshape(1, -1, 1, 1))
    return [y]


@kernel("PriorBox")
def prior_box(op, ins, ctx):
    return [detection.prior_box(op, ins[0].shape, ins[1].shape).astype(ctx.dtype)]


@kernel("DetectionOutput")
def detection_output(op, ins, ctx):
    return [detection.detection_output(op, *ins).astype(ctx.dtype)]


@kernel("Requantize")
def requantize(op, ins, ctx):
    return [ins[0]]


def run_custom(op: ops.Custom, ins: list, ctx: Ctx) -> list:
    """Call the plugin's reference kernel (float32 in, float32 out)."""
    from dfxsdk.plugins import get_manager

    impl = get_manager().custom_operators().get(op.name)
    if impl is None:
        raise DfxUnsupportedError(f"custom operator '{op.name}' is not provided by any installed plugin",
                                  layer=ctx.layer)
    if op.version not in impl.versions:
        raise DfxUnsupportedError(f"custom operator '{op.name}' version {op.version} is not implemented "
                                  f"(plugin has {list(impl.versions)})", layer=ctx.layer)
    outs = impl.reference([None if a is None else np.asarray(a, np.float32) for a in ins], bytes(op.options))
    return [np.asarray(o, np.float32).astype(ctx.dtype) for o in outs]


KERNELS["Custom"] = run_custom


def run(op: ops.Op, ins: list, ctx: Ctx) -> list[np.ndarray]:
    """Run ``op`` on real values; results are cast to ``ctx.dtype``."""
    fn = KERNELS.get(op.TYPE)
    if fn is None:
        raise DfxUnsupportedError(f"operator {op.TYPE} has no float kernel", layer=ctx.layer)
    return [np.asarray(y, dtype=ctx.dtype) for y in fn(op, ins, ctx)]
