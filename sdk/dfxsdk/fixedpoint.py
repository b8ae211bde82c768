"""Exact dynamic fixed point primitives, as spec/arithmetic.md defines them.

These are the building blocks every integer operator of the reference backend,
the importers and the quantizers use. All integer work is done in int64 NumPy
arrays; the spec bounds every accumulator to |acc| < 2**62, so nothing here
can overflow for a valid model.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .formats import QFormat, Rounding

#: Right shifts larger than this behave as this (exact for |q| < 2**61).
MAX_RIGHT_SHIFT = 62
# A left shift saturates any bw <= 32 once |q| * 2**s >= 2**31; clamping the
# shift to 31 and |q| to 2**32 - 1 keeps that verdict without int64 overflow.
_LEFT_SHIFT_CAP = 31
_LEFT_VALUE_CAP = (1 << 32) - 1
#: Eltwise SUM coefficients in integer form: m * 2**-e with |m| < 2**COEFF_BITS, 0 <= e <= COEFF_BITS.
COEFF_BITS = 15


def saturate(q: np.ndarray, bw: int) -> np.ndarray:
    """Clamp integers to the signed ``bw``-bit range [-2**(bw-1), 2**(bw-1)-1]."""
    return np.clip(q, -(1 << (bw - 1)), (1 << (bw - 1)) - 1)


def round_shift(q: np.ndarray, shift, rounding: Rounding) -> np.ndarray:
    """Exactly round ``q * 2**-shift`` to an integer; ``shift`` may be negative.

    ``shift`` is an int or an int array broadcastable against ``q``. A
    negative shift is an exact left shift; results of a left shift are only
    meaningful after :func:`saturate` to at most 32 bits (large values are
    capped so that they still saturate, see the module notes).
    """
    q = np.asarray(q, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if s.ndim == 0 and int(s) == 0:
        return q.copy()
    right = np.minimum(np.maximum(s, 0), MAX_RIGHT_SHIFT)
    left = np.minimum(np.maximum(-s, 0), _LEFT_SHIFT_CAP)
    shifted_left = np.clip(q, -_LEFT_VALUE_CAP, _LEFT_VALUE_CAP) << left
    down = _round_right(q, right, Rounding(rounding))
    return np.where(s < 0, shifted_left, down)


def _round_right(q: np.ndarray, s: np.ndarray, rounding: Rounding) -> np.ndarray:
    """Round q / 2**s for s >= 0 (s == 0 returns q)."""
    floor = q >> s
    if rounding is Rounding.FLOOR:
        return floor
    rem = q - (floor << s)                       # 0 <= rem < 2**s
    half = np.where(s > 0, np.int64(1) << np.maximum(s - 1, 0), 0)
    above = (rem > half) & (s > 0)
    tie = (rem == half) & (s > 0)
    if rounding is Rounding.HALF_UP:
        up = above | tie
    elif rounding is Rounding.HALF_AWAY_FROM_ZERO:
        up = above | (tie & (q >= 0))
    elif rounding is Rounding.HALF_TO_EVEN:
        up = above | (tie & ((floor & 1) == 1))
    else:  # pragma: no cover - enum is closed
        raise ValueError(rounding)
    return floor + up.astype(np.int64)


def round_real(v: np.ndarray, rounding: Rounding) -> np.ndarray:
    """Round float64 values to integers (as float64) with the given tie rule."""
    v = np.asarray(v, dtype=np.float64)
    rounding = Rounding(rounding)
    if rounding is Rounding.FLOOR:
        return np.floor(v)
    if rounding is Rounding.HALF_TO_EVEN:
        return np.rint(v)
    if rounding is Rounding.HALF_UP:
        f = np.floor(v)
        return f + ((v - f) >= 0.5)
    a = np.abs(v)                                  # HALF_AWAY_FROM_ZERO
    f = np.floor(a)
    return np.copysign(f + ((a - f) >= 0.5), v)


def quantize(x: np.ndarray, fmt: QFormat) -> np.ndarray:
    """Quantize real values to ``fmt``: saturate(round(x * 2**fl)), as int64.

    NaN becomes 0; infinities saturate.
    """
    x = np.asarray(x, dtype=np.float64)
    scaled = np.ldexp(x, fmt.fl_array(x.ndim).astype(np.int32))
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=2.0**40, neginf=-(2.0**40))
    scaled = np.clip(scaled, -(2.0**40), 2.0**40)
    return saturate(round_real(scaled, fmt.rounding).astype(np.int64), fmt.bw)


def dequantize(q: np.ndarray, fmt: QFormat, dtype=np.float32) -> np.ndarray:
    """Real values q * 2**-fl (exact in float32 while |q| < 2**24)."""
    q = np.asarray(q, dtype=np.float64)
    return np.ldexp(q, -fmt.fl_array(q.ndim).astype(np.int32)).astype(dtype)


def requantize(q: np.ndarray, fl_from, fmt: QFormat) -> np.ndarray:
    """Move integers of fractional length ``fl_from`` to ``fmt``: round, saturate."""
    shift = np.asarray(fl_from, dtype=np.int64) - fmt.fl_array(np.ndim(q))
    return saturate(round_shift(q, shift, fmt.rounding), fmt.bw)


# -- numeric rules shared by the validator, propagation, the reference and the C library ----------
# kernels/src/fixedpoint.h holds the same rules for C (fp_dyadic, fp_clog2, fp_align64, and fp_bitlen and
# fp_floordiv for Python's int.bit_length and //); tests/fixedpoint/test_numeric_rules.py checks both against
# one table. The integer width bounds built on them are in bounds.py (validate.c for C).


def dyadic(c: float, max_exp: int = COEFF_BITS) -> tuple[int, int] | None:
    """``(m, e)`` with ``c == m * 2**-e``, ``|m| < 2**15``, ``0 <= e <= max_exp`` and e minimal; else None.

    With the default ``max_exp`` this is the rule for the coefficients of an integer Eltwise SUM
    (spec/format.md 6.5; fp_dyadic in C). Infinities and NaN are never dyadic.
    """
    c = float(c)
    if not math.isfinite(c):
        return None
    frac = Fraction(c)
    e = frac.denominator.bit_length() - 1
    if frac.denominator != 1 << e or e > max_exp or abs(frac.numerator) >= 1 << COEFF_BITS:
        return None
    return frac.numerator, e


def clog2(k: int) -> int:
    """ceil(log2 k) for k >= 1 (0 for k <= 1): the bits that index k items."""
    return max(k - 1, 0).bit_length()


def align_up(n: int, alignment: int = 64) -> int:
    """Smallest multiple of ``alignment`` that is >= n."""
    return (n + alignment - 1) // alignment * alignment
