"""dfxsdk.propagate: exact output formats of layers with quantized inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dfxsdk import ops, propagate
from dfxsdk.formats import QFormat


def Q(bw, fl):
    return QFormat(bw, fl)


def all_values(f: QFormat) -> np.ndarray:
    return np.arange(f.qmin, f.qmax + 1, dtype=np.int64)


def holds(out: QFormat, real_values) -> bool:
    """Every real value is exactly representable in ``out``."""
    for v in real_values:
        q = v * 2.0 ** out.fl
        if q != int(q) or not out.qmin <= q <= out.qmax:
            return False
    return True


@pytest.mark.parametrize("op", [ops.Relu(), ops.Flatten(), ops.Reshape(), ops.Permute(order=[0, 2, 1, 3]),
                                ops.Slice(points=[1]), ops.Pool2D(type=ops.POOL_MAX)])
def test_layout_and_max_keep_the_format(op):
    assert propagate.output_format(op, [Q(4, -1)]) == Q(4, -1)


@pytest.mark.parametrize("op", [ops.Softmax(), ops.Sigmoid(), ops.Lrn(), ops.Pool2D(type=ops.POOL_AVERAGE),
                                ops.Conv2D(), ops.Normalize(), ops.Power()])
def test_inexact_or_decided_elsewhere_is_float(op):
    assert propagate.output_format(op, [Q(8, 3)] * max(1, op.MIN_INPUTS)) is None


def test_any_float_input_gives_float():
    assert propagate.output_format(ops.Concat(), [Q(8, 0), None]) is None


@pytest.mark.parametrize("fa,fb", [((8, -4), (8, -3)), ((4, 2), (8, -1)), ((2, 5), (3, 0))])
def test_concat_and_max_are_exact(fa, fb):
    a, b = Q(*fa), Q(*fb)
    for op in (ops.Concat(), ops.Eltwise(operation=ops.ELTWISE_MAX)):
        out = propagate.output_format(op, [a, b])
        reals = [q * 2.0 ** -a.fl for q in all_values(a)] + [q * 2.0 ** -b.fl for q in all_values(b)]
        assert holds(out, reals)
        assert out.fl == max(a.fl, b.fl) and out.bw == max(a.bw + out.fl - a.fl, b.bw + out.fl - b.fl)


@pytest.mark.parametrize("coeffs", [[], [1, -1], [0.5, 2], [0.25, 1, -3]])
def test_eltwise_sum_is_exact_and_tight(coeffs):
    fmts = [Q(4, 1), Q(3, -1), Q(4, 0)][: max(2, len(coeffs))]
    c = coeffs or [1.0] * len(fmts)
    out = propagate.output_format(ops.Eltwise(coefficients=list(coeffs)), fmts)
    sums = [sum(ci * q * 2.0 ** -f.fl for ci, q, f in zip(c, qs, fmts))
            for qs in itertools.product(*(all_values(f) for f in fmts))]
    assert holds(out, sums)
    assert not holds(QFormat(out.bw - 1, out.fl), sums)          # one bit less would not do


def test_eltwise_sum_non_dyadic_coefficient_is_float():
    assert propagate.output_format(ops.Eltwise(coefficients=[0.1, 1]), [Q(8, 0), Q(8, 0)]) is None


def test_prelu_with_integer_slope():
    x, s = Q(4, 1), Q(3, 2)
    out = propagate.output_format(ops.PRelu(), [x, s])
    reals = [xq * 2.0 ** -x.fl * (1 if xq > 0 else sq * 2.0 ** -s.fl)
             for xq in all_values(x) for sq in all_values(s)]
    assert holds(out, reals) and out.fl == 3


def test_dyadic():
    assert propagate.dyadic(0.75) == (3, 2)
    assert propagate.dyadic(4.0) == (4, 0)
    assert propagate.dyadic(0.1) is None
    assert propagate.width_for_range(-256, 255) == 9
