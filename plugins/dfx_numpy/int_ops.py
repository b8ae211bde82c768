"""Integer kernels: spec/arithmetic.md, "Integer operators", taken literally.

Every kernel receives int64 code arrays, the inputs' and outputs' formats,
and returns int64 codes already rounded and saturated to the output formats.
All intermediate values are exact: alignment shifts are exact left shifts,
rounding happens once, in the final shift or division.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dfxsdk import bounds, ops
from dfxsdk.errors import DfxFormatError, DfxUnsupportedError
from dfxsdk.fixedpoint import dyadic, round_shift, saturate
from dfxsdk.formats import QFormat, Rounding

from . import common
from .float_ops import pad_array, scale_shape

#: The reference keeps every intermediate value below 2**61 (spec/arithmetic.md, section 3.4).
MAX_ACC_BITS = bounds.ACC_LIMIT_BITS

Kernel = Callable[..., list]
KERNELS: dict[str, Kernel] = {}


def kernel(name: str):
    def deco(fn: Kernel) -> Kernel:
        KERNELS[name] = fn
        return fn
    return deco


# -- helpers -------------------------------------------------------------------

def fl_full(fmt: QFormat, shape: tuple[int, ...]) -> np.ndarray:
    """Fractional length of every element of a tensor of ``shape`` (int64)."""
    return np.broadcast_to(fmt.fl_array(len(shape)), shape).astype(np.int64)


def requant(q: np.ndarray, fl_from, fmt: QFormat) -> np.ndarray:
    """Round codes at ``fl_from`` into ``fmt`` (its fl, rounding, bw)."""
    shift = np.asarray(fl_from, np.int64) - fmt.fl_array(np.ndim(q))
    return saturate(round_shift(q, shift, fmt.rounding), fmt.bw)


def align(q: np.ndarray, fl: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Exact left shift of codes at ``fl`` to ``target`` >= fl."""
    return np.left_shift(q, np.asarray(target - fl, np.int64))


def operand(fmt: QFormat) -> bounds.Operand:
    """The bounds' view of an operand with format ``fmt``."""
    fls = fmt.channel_fl if fmt.per_channel else (fmt.fl,)
    return bounds.Operand(fmt.bw, min(fls, default=0), max(fls, default=0))


def check_acc(bits: int, layer: str) -> None:
    if bits > MAX_ACC_BITS:
        raise DfxFormatError(f"accumulator needs {bits} bits (> {MAX_ACC_BITS}); "
                             "the formats or the reduction length are too large", layer=layer)


def round_div(num: np.ndarray, den: np.ndarray, rounding: Rounding) -> np.ndarray:
    """Exactly round num / den (den > 0) to an integer with the tie rule ``rounding``."""
    q = num // den
    r = num - q * den
    if rounding == Rounding.FLOOR:
        return q
    twice = 2 * r
    above = np.asarray(twice > den, bool)
    tie = np.asarray(twice == den, bool)
    if rounding == Rounding.HALF_UP:
        up = above | tie
    elif rounding == Rounding.HALF_AWAY_FROM_ZERO:
        up = above | (tie & np.asarray(num >= 0, bool))
    else:
        up = above | (tie & np.asarray(q % 2 == 1, bool))
    return q + up.astype(np.int64)


# -- linear operators ----------------------------------------------------------

def _linear(layer: str, x, w, b, fx: QFormat, fw: QFormat, fb: QFormat | None, fy: QFormat,
            out_fl_w: np.ndarray, k: int, product, out_axis: int) -> np.ndarray:
    """Shared integer form of Conv2D/Deconv2D/FullyConnected.

    ``out_fl_w`` is the weights' fl per output channel after alignment
    (Fw[o]); ``product(x, w)`` sums the products (exact int64).
    """
    if fx.per_channel:
        flx = fl_full(fx, x.shape)
        big_x = flx.max() if flx.size else 0
        xa = align(x, flx, big_x)
    else:
        big_x, xa = np.int64(fx.fl), x
    p = product(xa, w)                                      # at fl big_x + Fw[o]
    shape = common.channel_shape(p.ndim, out_axis)
    fp = (big_x + out_fl_w).reshape(shape)
    if b is None:
        big_f, acc = fp, p
    else:
        flb = fl_full(fb, b.shape).reshape(shape)
        big_f = np.maximum(fp, flb)
        acc = align(p, fp, big_f) + align(b.reshape(shape), flb, big_f)
    return requant(acc, big_f, fy)


def _check_linear(fin: list[QFormat], fb: QFormat | None, k: int, w_shift: int, layer: str) -> None:
    x = operand(fin[0])  # per-channel x (not in valid files) is aligned within the reduction too
    check_acc(bounds.linear_bits(x, operand(fin[1]), fb and operand(fb), k, w_shift + x.fl_hi - x.fl_lo), layer)


def _weights_aligned(w: np.ndarray, fw: QFormat, groups_axes, n_out: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Align per-channel weights within each output channel's reduction.

    ``groups_axes(flw)`` returns Fw per output channel broadcast back to w's
    shape and the per-output-channel vector. Returns (aligned w, Fw[o], shift).
    """
    if not fw.per_channel:
        return w, np.full(n_out, fw.fl, np.int64), 0
    flw = fl_full(fw, w.shape)
    full, vec = groups_axes(flw)
    shift = int((full - flw).max()) if flw.size else 0
    return (align(w, flw, full) if shift else w), vec, shift


@kernel("Conv2D")
def conv2d(op, ins, fin, fout, layer):
    x, w, b = (ins + [None])[:3]
    fb = fin[2] if len(fin) > 2 else None

    def by_out(flw):
        vec = flw.reshape(flw.shape[0], -1).max(axis=1)
        return np.broadcast_to(vec.reshape(-1, 1, 1, 1), flw.shape), vec

    wa, vec, sh_w = _weights_aligned(w, fin[1], by_out, w.shape[0])
    k = w.shape[1] * w.shape[2] * w.shape[3]
    _check_linear(fin, fb, k, sh_w, layer)
    fw = QFormat(fin[1].bw + sh_w, 0)
    return [_linear(layer, x, wa, b, fin[0], fw, fb, fout[0], vec, k,
                    lambda xa, wv: common.conv2d_sum(xa, wv, op), 1)]


@kernel("Deconv2D")
def deconv2d(op, ins, fin, fout, layer):
    x, w, b = (ins + [None])[:3]
    fb = fin[2] if len(fin) > 2 else None
    g = op.group
    c, og, kh, kw = w.shape

    def by_out(flw):
        grid = flw.reshape(g, c // g, og, kh, kw)
        vec = grid.max(axis=(1, 3, 4))                                  # G, OG
        full = np.broadcast_to(vec[:, None, :, None, None], grid.shape).reshape(flw.shape)
        return full, vec.reshape(-1)

    wa, vec, sh_w = _weights_aligned(w, fin[1], by_out, og * g)
    _check_linear(fin, fb, (c // g) * kh * kw, sh_w, layer)
    fw = QFormat(fin[1].bw + sh_w, 0)
    return [_linear(layer, x, wa, b, fin[0], fw, fb, fout[0], vec, (c // g) * kh * kw,
                    lambda xa, wv: common.deconv2d_sum(xa, wv, op), 1)]


@kernel("FullyConnected")
def fully_connected(op, ins, fin, fout, layer):
    x, w, b = (ins + [None])[:3]
    fb = fin[2] if len(fin) > 2 else None

    def by_out(flw):
        vec = flw.max(axis=1)
        return np.broadcast_to(vec[:, None], flw.shape), vec

    wa, vec, sh_w = _weights_aligned(w, fin[1], by_out, w.shape[0])
    _check_linear(fin, fb, w.shape[1], sh_w, layer)
    fw = QFormat(fin[1].bw + sh_w, 0)
    out_rank = op.axis + 1
    return [_linear(layer, x, wa, b, fin[0], fw, fb, fout[0], vec, w.shape[1],
                    lambda xa, wv: common.fc_sum(xa, wv, op), out_rank - 1)]


@kernel("Scale")
def scale(op, ins, fin, fout, layer):
    x, s, b = (ins + [None])[:3]
    _check_linear(fin, fin[2] if b is not None else None, 1, 0, layer)
    shape = scale_shape(x.ndim, op, s.shape, x.shape)
    flx = fl_full(fin[0], x.shape)
    sv = s.reshape(shape)
    fls = fl_full(fin[1], s.shape).reshape(shape)
    fp = flx + fls
    p = x * sv
    if b is None:
        big_f, acc = fp, p
    else:
        bv = b.reshape(shape)
        flb = fl_full(fin[2], b.shape).reshape(shape)
        big_f = np.maximum(fp, flb)
        acc = align(p, fp, big_f) + align(bv, flb, big_f)
    return [requant(acc, big_f, fout[0])]


# -- pooling -------------------------------------------------------------------

@kernel("Pool2D")
def pool2d(op, ins, fin, fout, layer):
    x = ins[0]
    fx, fy = fin[0], fout[0]
    flx = fx.fl_array(4)
    if op.type == ops.POOL_MAX:
        m = common.pool_windows(x, op, np.iinfo(np.int64).min).max(axis=(4, 5))
        return [requant(m, flx, fy)]
    s = common.pool_windows(x, op, 0).sum(axis=(4, 5))
    d = common.pool_divisor(op, x.shape[2], x.shape[3])
    fly = fy.fl_array(4)
    up = np.maximum(fly - flx, 0)
    down = np.maximum(flx - fly, 0)
    kh, kw = op.window(x.shape[2], x.shape[3])[:2]
    num_bits = fx.bw + (kh * kw).bit_length() + int(np.max(up))
    den_bits = int(d.max()).bit_length() + int(np.max(down))
    if num_bits <= 62 and den_bits <= 61:
        num, den = np.left_shift(s, up), np.left_shift(d, down)
    else:  # exact in Python integers: rare formats with very different fl
        num = s.astype(object) * (2 ** up.astype(object))
        den = d.astype(object) * (2 ** down.astype(object))
    y = round_div(num, np.broadcast_to(den, num.shape), fy.rounding)
    y = np.clip(y, fy.qmin, fy.qmax)
    return [np.asarray(y, dtype=np.int64)]


# -- activations -----------------------------------------------------------------

@kernel("Relu")
def relu(op, ins, fin, fout, layer):
    x = ins[0]
    return [requant(np.maximum(x, 0), fin[0].fl_array(x.ndim), fout[0])]


def clip_bounds(op: ops.Clip, fl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[ceil(min * 2^fl), floor(max * 2^fl)] on the input grid, as int64."""
    lim = 2.0 ** 62
    fl32 = np.asarray(fl).astype(np.int32)
    lo = np.clip(np.ceil(np.ldexp(np.float64(op.min), fl32)), -lim, lim)
    hi = np.clip(np.floor(np.ldexp(np.float64(op.max), fl32)), -lim, lim)
    return lo.astype(np.int64), hi.astype(np.int64)


@kernel("Clip")
def clip(op, ins, fin, fout, layer):
    x = ins[0]
    fl = fin[0].fl_array(x.ndim)
    lo, hi = clip_bounds(op, fl)
    return [requant(np.minimum(np.maximum(x, lo), hi), fl, fout[0])]


@kernel("PRelu")
def prelu(op, ins, fin, fout, layer):
    x, s = ins
    shape = common.channel_shape(x.ndim, 1) if s.size > 1 else [1] * x.ndim
    sv = s.reshape(shape)
    fls = fl_full(fin[1], s.shape).reshape(shape)
    flx = fin[0].fl_array(x.ndim)
    e = np.maximum(fls, 0)
    big_f = flx + e
    check_acc(bounds.prelu_bits(operand(fin[0]), operand(fin[1])), layer)
    pos = np.left_shift(x, e)
    neg = np.left_shift(x * sv, e - fls)
    return [requant(np.where(x > 0, pos, neg), big_f, fout[0])]


# -- multi-input ------------------------------------------------------------------

@kernel("Eltwise")
def eltwise(op, ins, fin, fout, layer):
    fls = [f.fl_array(x.ndim) for x, f in zip(ins, fin)]
    if op.operation == ops.ELTWISE_SUM:
        coeffs = op.coefficients or [1.0] * len(ins)
        md = [dyadic(c) for c in coeffs]
        if any(v is None for v in md):
            raise DfxFormatError(f"coefficients {list(coeffs)} are not all dyadic (m * 2^-e, |m| < 2^15, "
                                 "e <= 15); the integer form needs them, give the layer a float output",
                                 layer=layer)
        targets = [fl + e for fl, (_, e) in zip(fls, md)]
        big_f = targets[0]
        for t in targets[1:]:
            big_f = np.maximum(big_f, t)
        check_acc(bounds.eltwise_sum_bits([operand(f) for f in fin], md), layer)
        acc = 0
        for x, t, (m, e) in zip(ins, targets, md):
            acc = acc + align(m * x, t, big_f)
        return [requant(np.asarray(acc, np.int64), big_f, fout[0])]
    if op.operation == ops.ELTWISE_PROD:
        check_acc(bounds.eltwise_prod_bits([operand(f) for f in fin]), layer)
        acc, big_f = ins[0], fls[0]
        for x, fl in zip(ins[1:], fls[1:]):
            acc, big_f = acc * x, big_f + fl
        return [requant(acc, big_f, fout[0])]
    big_f = fls[0]
    for fl in fls[1:]:
        big_f = np.maximum(big_f, fl)
    check_acc(bounds.eltwise_max_bits([operand(f) for f in fin]), layer)
    y = None
    for x, fl in zip(ins, fls):
        xa = align(x, fl, big_f)
        y = xa if y is None else np.maximum(y, xa)
    return [requant(y, big_f, fout[0])]


@kernel("Concat")
def concat(op, ins, fin, fout, layer):
    fy = fout[0]
    nd = ins[0].ndim
    a = op.axis + nd if op.axis < 0 else op.axis
    fly = fy.fl_array(nd)
    parts, start = [], 0
    for x, f in zip(ins, fin):
        target = fly
        if fly.ndim and fly.shape[a] > 1:
            target = np.take(fly, np.arange(start, start + x.shape[a]), axis=a)
        start += x.shape[a]
        shift = f.fl_array(nd) - target
        parts.append(saturate(round_shift(x, shift, fy.rounding), fy.bw))
    return [np.concatenate(parts, axis=a)]


# -- format changes and layout -------------------------------------------------------

@kernel("Requantize")
def requantize(op, ins, fin, fout, layer):
    x = ins[0]
    return [requant(x, fin[0].fl_array(x.ndim), fout[0])]


@kernel("Pad")
def pad(op, ins, fin, fout, layer):
    from dfxsdk.fixedpoint import quantize

    x = ins[0]
    value = quantize(np.full(fin[0].fl_array(x.ndim).shape, op.value), fin[0])
    return [pad_array(x, op.pads, value if value.size > 1 else value.reshape(()))]


def run(op: ops.Op, ins: list, fin: list, fout: list, layer: str, out_shapes) -> list[np.ndarray]:
    """Run the integer form of ``op``; layout-only operators just move the codes."""
    if op.LAYOUT_ONLY:
        from . import float_ops

        ctx = float_ops.Ctx(layer, np.dtype(np.int64), out_shapes)
        return list(float_ops.KERNELS[op.TYPE](op, ins, ctx))
    fn = KERNELS.get(op.TYPE)
    if fn is None:
        raise DfxUnsupportedError(f"operator {op.TYPE} has no integer form", layer=layer)
    return fn(op, ins, fin, fout, layer)
