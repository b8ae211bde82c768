"""Output formats of layers whose inputs are quantized.

When an importer or a quantizer fixes the formats of some tensors (for example
a Ristretto convolution's output), the layers that follow still need output
formats. :func:`output_formats` chooses them so that the integer result is
*exact* wherever that is possible, so that an integer network computes the
same values as the float simulation it came from:

=========================================  ======================================
operator                                   output format
=========================================  ======================================
layout only (Flatten, Reshape, Permute,    the input format, unchanged
Slice, Upsample), Relu, MAX Pool2D
Clip                                       the input format if both bounds lie on
                                           its grid, else float
Concat, Eltwise MAX                        fl = max fl_i; bw holds every input
                                           exactly (max of bw_i + fl - fl_i)
Eltwise SUM                                fl = max(fl_i + e_i) for coefficients
                                           m_i * 2**-e_i (fixedpoint.dyadic,
                                           else float); bw from the exact
                                           range of the sum
Eltwise PROD                               fl = sum fl_i, bw = sum bw_i
PRelu (integer slope)                      fl = fl_x + fl_slope, bw from the
                                           exact range
Pad                                        the input format if the pad value
                                           lies on its grid, else float
AVERAGE Pool2D                             float (a division is not exact; an
                                           importer may give it the format its
                                           consumers quantize to)
Conv2D, Deconv2D, FullyConnected,          float: their output format is a
Requantize, Custom                         quantization decision, not derived
Softmax, Sigmoid, Tanh, Lrn, Power,        float (float operators accept integer
Normalize, PriorBox, DetectionOutput,      inputs; the runtime dequantizes)
Scale, Exp, Minifloat
=========================================  ======================================

Any float input makes the output float. Bit widths are capped at 32 (an
exact result wider than that saturates). The rounding mode of the result is
that of the first input (it only matters for inexact steps, and there are none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from . import ops
from .fixedpoint import dyadic
from .formats import QFormat

#: Widest integer format propagation produces.
MAX_BW = 32


def output_format(op: ops.Op, inputs: Sequence[QFormat | None]) -> QFormat | None:
    """The format of the first output of ``op`` (None: float); see the module table."""
    return output_formats(op, inputs, 1)[0]


def output_formats(op: ops.Op, inputs: Sequence[QFormat | None], num_outputs: int = 1) -> list[QFormat | None]:
    """The format of each output of ``op`` given its input formats (None: float).

    ``inputs`` lists the formats of all of the layer's inputs in order,
    including constant ones (PRelu's slope); omitted optional inputs may be
    given as None only where the table above ignores them.
    """
    fmt = _single(op, list(inputs))
    return [fmt] * max(1, num_outputs)


def _single(op: ops.Op, inputs: list[QFormat | None]) -> QFormat | None:
    data = inputs[:1] if isinstance(op, (ops.PRelu,)) else inputs
    if not inputs or any(f is None for f in data) or any(f.per_channel for f in inputs if f is not None):
        return None
    x = inputs[0]
    if op.LAYOUT_ONLY or isinstance(op, ops.Relu):
        return x
    if isinstance(op, ops.Pool2D):
        return x if op.type == ops.POOL_MAX else None
    if isinstance(op, ops.Clip):
        return x if _on_grid(op.min, x.fl) and _on_grid(op.max, x.fl) else None
    if isinstance(op, ops.Pad):
        return x if _on_grid(op.value, x.fl) else None
    if isinstance(op, ops.Concat):
        return aligned(inputs)
    if isinstance(op, ops.Eltwise):
        if op.operation == ops.ELTWISE_MAX:
            return aligned(inputs)
        if op.operation == ops.ELTWISE_PROD:
            bw = sum(f.bw for f in inputs)
            return QFormat(min(bw, MAX_BW), sum(f.fl for f in inputs), x.rounding)
        return eltwise_sum(inputs, op.coefficients)
    if isinstance(op, ops.PRelu):
        slope = inputs[1] if len(inputs) > 1 else None
        if slope is None:
            return None
        return product_format(x, slope, include_identity=True)
    return None


def _on_grid(value: float, fl: int) -> bool:
    if math.isinf(value):
        return True
    return math.isfinite(value) and (Fraction(value) * Fraction(2) ** fl).denominator == 1


def width_for_range(lo: int, hi: int) -> int:
    """The smallest signed bit width holding every integer in [lo, hi]."""
    bw = 1
    while lo < -(1 << (bw - 1)) or hi > (1 << (bw - 1)) - 1:
        bw += 1
    return bw


def aligned(formats: Sequence[QFormat]) -> QFormat:
    """The narrowest format holding every value of each of ``formats`` exactly."""
    fl = max(f.fl for f in formats)
    bw = max(f.bw + fl - f.fl for f in formats)
    return QFormat(min(bw, MAX_BW), fl, formats[0].rounding)


def eltwise_sum(formats: Sequence[QFormat], coefficients: Sequence[float] = ()) -> QFormat | None:
    """Exact format of sum_i c_i * x_i (None if a coefficient is not dyadic)."""
    coeffs = list(coefficients) or [1.0] * len(formats)
    terms = []
    for f, c in zip(formats, coeffs):
        d = dyadic(float(c))
        if d is None:
            return None
        terms.append((f, *d))
    fl = max(f.fl + e for f, _, e in terms)
    lo = hi = 0
    for f, m, e in terms:
        k = 1 << (fl - f.fl - e)   # output units per (q * m) unit
        ends = (f.qmin * m * k, f.qmax * m * k)
        lo += min(ends)
        hi += max(ends)
    return QFormat(min(width_for_range(lo, hi), MAX_BW), fl, formats[0].rounding)


def product_format(x: QFormat, w: QFormat, *, include_identity: bool = False) -> QFormat:
    """Exact format of x * w for integer x and w (fl adds up).

    With ``include_identity`` the result must also hold x itself (rescaled to
    the product's fl), as in PRelu where positive inputs pass unchanged.
    """
    fl = x.fl + w.fl
    corners = [a * b for a in (x.qmin, x.qmax) for b in (w.qmin, w.qmax)]
    if include_identity:
        shift = fl - x.fl
        corners += [x.qmin << shift if shift >= 0 else x.qmin, x.qmax << shift if shift >= 0 else x.qmax]
    return QFormat(min(width_for_range(min(corners), max(corners)), MAX_BW), fl, x.rounding)
