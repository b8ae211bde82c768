"""The rounding primitives against exact rational arithmetic (fractions.Fraction)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings, strategies as st

from dfxsdk import QFormat, Rounding
from dfxsdk.fixedpoint import dyadic, quantize, requantize, round_shift, saturate

from dfx_numpy.int_ops import round_div

ROUNDINGS = list(Rounding)


def exact_round(v: Fraction, mode: Rounding) -> int:
    """The spec's tie rules on an exact rational."""
    f = math.floor(v)
    rem = v - f
    if mode is Rounding.FLOOR:
        return f
    if rem > Fraction(1, 2):
        return f + 1
    if rem < Fraction(1, 2):
        return f
    if mode is Rounding.HALF_UP:
        return f + 1
    if mode is Rounding.HALF_AWAY_FROM_ZERO:
        return f + 1 if v > 0 else f
    return f if f % 2 == 0 else f + 1


ints = st.integers(min_value=-(2**61) + 1, max_value=2**61 - 1)


@settings(max_examples=400, deadline=None)
@given(st.lists(ints, min_size=1, max_size=20), st.integers(0, 70), st.sampled_from(ROUNDINGS))
def test_round_shift_right_is_exact(values, shift, mode):
    got = round_shift(np.array(values, np.int64), shift, mode)
    want = [exact_round(Fraction(v, 2 ** shift), mode) for v in values]
    assert got.tolist() == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=20), st.integers(1, 40),
       st.integers(1, 32), st.sampled_from(ROUNDINGS))
def test_left_shift_then_saturate(values, shift, bw, mode):
    got = saturate(round_shift(np.array(values, np.int64), -shift, mode), bw)
    lo, hi = -(2 ** (bw - 1)), 2 ** (bw - 1) - 1
    assert got.tolist() == [min(max(v * 2 ** shift, lo), hi) for v in values]


def test_ties_of_every_mode():
    v = np.array([5, 3, -3, -5, 7, -7, 4, -4], np.int64)      # /2: 2.5 1.5 -1.5 -2.5 3.5 -3.5 2 -2
    assert round_shift(v, 1, Rounding.HALF_AWAY_FROM_ZERO).tolist() == [3, 2, -2, -3, 4, -4, 2, -2]
    assert round_shift(v, 1, Rounding.HALF_TO_EVEN).tolist() == [2, 2, -2, -2, 4, -4, 2, -2]
    assert round_shift(v, 1, Rounding.HALF_UP).tolist() == [3, 2, -1, -2, 4, -3, 2, -2]
    assert round_shift(v, 1, Rounding.FLOOR).tolist() == [2, 1, -2, -3, 3, -4, 2, -2]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=10), st.integers(1, 2**20),
       st.sampled_from(ROUNDINGS))
def test_round_div_is_exact(nums, den, mode):
    got = round_div(np.array(nums, np.int64), np.int64(den), mode)
    assert got.tolist() == [exact_round(Fraction(n, den), mode) for n in nums]
    obj = round_div(np.array(nums, object), den, mode)           # the big-integer path
    assert [int(v) for v in obj] == got.tolist()


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


@settings(max_examples=300, deadline=None)
@given(st.lists(finite, min_size=1, max_size=10), st.integers(1, 24), st.integers(-10, 20),
       st.sampled_from(ROUNDINGS))
def test_quantize_is_exact(values, bw, fl, mode):
    fmt = QFormat(bw, fl, mode)
    got = quantize(np.array(values, np.float32), fmt)
    lo, hi = fmt.qmin, fmt.qmax
    want = [min(max(exact_round(Fraction(float(np.float32(v))) * Fraction(2) ** fl, mode), lo), hi)
            for v in values]
    assert got.tolist() == want


def test_quantize_ties_nan_inf():
    fmt = QFormat(8, 1, Rounding.HALF_AWAY_FROM_ZERO)
    x = np.array([1.25, -1.25, np.nan, np.inf, -np.inf, 1e30])
    assert quantize(x, fmt).tolist() == [3, -3, 0, 127, -128, 127]
    assert quantize(x[:2], QFormat(8, 1, Rounding.HALF_TO_EVEN)).tolist() == [2, -2]
    assert quantize(x[:2], QFormat(8, 1, Rounding.HALF_UP)).tolist() == [3, -2]
    assert quantize(x[:2], QFormat(8, 1, Rounding.FLOOR)).tolist() == [2, -3]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=10), st.integers(-20, 20),
       st.integers(-20, 20), st.integers(1, 32), st.sampled_from(ROUNDINGS))
def test_requantize_matches_exact(values, fl_from, fl_to, bw, mode):
    fmt = QFormat(bw, fl_to, mode)
    got = requantize(np.array(values, np.int64), fl_from, fmt)
    want = [min(max(exact_round(Fraction(v) * Fraction(2) ** (fl_to - fl_from), mode), fmt.qmin), fmt.qmax)
            for v in values]
    assert got.tolist() == want


def test_dyadic():
    assert dyadic(1.0) == (1, 0)
    assert dyadic(-0.75) == (-3, 2)
    assert dyadic(0.1) is None
    assert dyadic(2.0 ** -15) == (1, 15)
    assert dyadic(2.0 ** -16) is None
    assert dyadic(40000.0) is None
