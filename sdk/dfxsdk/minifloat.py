"""Ristretto's minifloat trimming (``Trim2MiniFloat``), the rule of the Minifloat operator.

Each value is taken as float32 and rounded to a float with ``mant_bits``
mantissa bits and an ``exp_bits`` exponent of bias ``2^(exp_bits-1) - 1``:

- a zero or denormal float32, or a value whose rebiased exponent is below 0,
  becomes +0;
- a rebiased exponent above ``2^exp_bits - 1`` saturates: that exponent with
  the largest mantissa (the all-ones exponent holds ordinary numbers);
- otherwise the 23-bit mantissa is rounded to ``mant_bits`` bits, halves
  away from zero (C ``round()``); a carry out of the mantissa doubles the value;
- the result ``(-1)^s * (1 + m / 2^mant_bits) * 2^(e - bias)`` is computed
  exactly and rounded to float32 (values beyond float32 become +-inf).

This is Ristretto's CPU arithmetic element by element (its CPU loop stops at
the first element that becomes 0, a bug its GPU kernel does not have;
spec/arithmetic.md).
"""

from __future__ import annotations

import numpy as np


def trim(x: np.ndarray, mant_bits: int, exp_bits: int) -> np.ndarray:
    """``x`` trimmed to the minifloat format, as float32."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.int64)
    sign, e8, m = bits >> 31, (bits >> 23) & 0xFF, bits & 0x7FFFFF
    bias = (1 << (exp_bits - 1)) - 1
    exponent = e8 - 127 + bias
    shift = 23 - mant_bits
    mant = (m + ((1 << shift) >> 1)) >> shift
    saturate = exponent > (1 << exp_bits) - 1
    exponent = np.where(saturate, (1 << exp_bits) - 1, exponent)
    mant = np.where(saturate, (1 << mant_bits) - 1, mant)
    value = np.ldexp(((1 << mant_bits) + mant).astype(np.float64), exponent - bias - mant_bits)
    value = np.where(sign == 1, -value, value)
    with np.errstate(over="ignore"):
        out = np.where((e8 == 0) | (exponent < 0), 0.0, value).astype(np.float32)
    return out.reshape(np.shape(x))
