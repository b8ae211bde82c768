"""Integer width bounds of integer-form layers (spec/arithmetic.md, section 3.4).

Each function returns the number of bits ``B`` such that every intermediate
value of the layer's integer form satisfies ``|v| < 2**(B - 1)``; a model is
valid only if ``B <= ACC_LIMIT_BITS`` for every integer-form layer, so that an
int64 never overflows and no shift reaches 64 bits. The validator passes each
operand's storage bits (constants) or bw (activations) and its fl range; the
NumPy backend re-checks with the formats it runs (bw <= storage bits, so it
never refuses what the validator accepts). kernels/src/validate.c mirrors
these functions; tests compare both validators on every conformance vector
and on a corpus of mutants.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fixedpoint import clog2

#: Every intermediate value of an integer form stays below 2**(ACC_LIMIT_BITS - 1).
ACC_LIMIT_BITS = 62


@dataclass(frozen=True)
class Operand:
    """What the bounds need of an integer operand: its bits and its fl range."""

    bits: int
    fl_lo: int
    fl_hi: int


def linear_bits(x: Operand, w: Operand, b: Operand | None, k: int, w_shift: int) -> int:
    """Conv2D, Deconv2D, FullyConnected (section 3.3) and Scale (``k`` = 1).

    ``w_shift`` is the largest alignment of a weight within one output
    channel's reduction (0 when the weights' fl is constant along it).
    """
    prod_bits = x.bits + w.bits + w_shift - 1 + max(1, k).bit_length()
    if b is None:
        return prod_bits
    align_p = max(0, b.fl_hi - (x.fl_lo + w.fl_lo))
    align_b = max(0, x.fl_hi + w.fl_hi - b.fl_lo)
    return max(prod_bits + align_p, b.bits + align_b) + 1


def prelu_bits(x: Operand, s: Operand) -> int:
    """PRelu: ``x << e`` and ``(x * s) << (e - fl_s)`` with ``e = max(fl_s, 0)``."""
    pos = x.bits + max(s.fl_hi, 0)
    neg = x.bits + s.bits - 1 + max(0, -s.fl_lo)
    return max(pos, neg) + 1


def eltwise_sum_bits(ins: list[Operand], coeffs: list[tuple[int, int]]) -> int:
    """Eltwise SUM with dyadic coefficients ``(m, e)``: aligned terms, then their sum."""
    big_f = max(x.fl_hi + e for x, (_, e) in zip(ins, coeffs))
    term = max(x.bits + abs(m).bit_length() + big_f - (x.fl_lo + e) for x, (m, e) in zip(ins, coeffs))
    return term + clog2(len(ins)) + 1


def eltwise_prod_bits(ins: list[Operand]) -> int:
    """Eltwise PROD: the exact product of all inputs."""
    return sum(x.bits - 1 for x in ins) + 2


def eltwise_max_bits(ins: list[Operand]) -> int:
    """Eltwise MAX: every input aligned to the largest fl."""
    big_f = max(x.fl_hi for x in ins)
    return max(x.bits + big_f - x.fl_lo for x in ins) + 1


def pool_average_bits(x: Operand, window: int) -> int:
    """Pool2D AVERAGE: the sum of a window of ``window`` codes."""
    return x.bits + max(1, window).bit_length()
