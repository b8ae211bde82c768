"""What dfxsdk.propagate says a layer produces, Model.validate accepts and the reference computes.

An importer trusts propagate's integer formats; a format it hands out for an Eltwise SUM whose
coefficients the integer form cannot use (not m * 2^-e with |m| < 2^15, 0 <= e <= 15) would give
a model the writer refuses.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from dfxsdk import QFormat, ops, propagate
from dfxsdk.fixedpoint import dequantize

from tests.support.builder import Builder

COEFFICIENTS = [
    [2.0**-20, 1.0],        # e > 15
    [2.0**-16, 1.0],
    [2.0**-15, 1.0],        # e == 15: the smallest usable step
    [32768.0, 1.0],         # |m| == 2^15
    [-32768.0, 1.0],
    [32767.0, -1.0],        # |m| == 2^15 - 1
    [0.5, -1.25],
    [3 * 2.0**-16, 1.0],    # odd m, e = 16
    [16383.5, 1.0],         # m = 32767, e = 1
    [0.1, 1.0],             # not dyadic at all
    [0.0, 1.0],
]


def _eltwise(coeffs: list[float], out: QFormat | None):
    b = Builder("eltwise")
    x1 = b.input((1, 4), QFormat(8, 3), name="x1")
    x2 = b.input((1, 4), QFormat(8, 3), name="x2")
    y = b.add(ops.Eltwise(operation=ops.ELTWISE_SUM, coefficients=coeffs), [x1, x2], out)
    return b.output(y)


@pytest.mark.parametrize("coeffs", COEFFICIENTS, ids=[f"{a!r}" for a, _ in COEFFICIENTS])
def test_propagated_eltwise_sum_format_is_valid_and_exact(coeffs):
    out = propagate.output_format(ops.Eltwise(operation=ops.ELTWISE_SUM, coefficients=coeffs),
                                  [QFormat(8, 3), QFormat(8, 3)])
    model = _eltwise(coeffs, out)
    model.validate()                   # raised DfxFormatError for e > 15 and |m| == 2^15
    if out is None:
        return
    # The format is exact: the integer run gives the exact real sum at the corners of the inputs.
    q = np.array([[-128, -1, 0, 127]], np.int64)
    x1, x2 = (dequantize(q, QFormat(8, 3), np.float64), dequantize(q[:, ::-1], QFormat(8, 3), np.float64))
    got = model.run({"x1": x1.astype(np.float32), "x2": x2.astype(np.float32)}, mode="integer")
    y = dequantize(got[model.outputs[0]], out, np.float64)
    want = [Fraction(coeffs[0]) * Fraction(a) + Fraction(coeffs[1]) * Fraction(b) for a, b in zip(x1[0], x2[0])]
    assert [Fraction(v) for v in y[0]] == want
