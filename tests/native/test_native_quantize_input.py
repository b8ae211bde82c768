"""Float -> code quantization in the C library equals the reference for every tie rule.

The library quantizes float values in two places: a quantized graph input given as
float32 (dfx_session_set_input_f32) and a Requantize layer from a float tensor. Both use
one loop per tie rule that rounds with truncating conversions (kernels/src/fixedpoint.h);
these tests feed it the values where that could go wrong: exact ties, one float ulp on
either side of a tie, values far below one code (where x * 2^fl + 0.5 is inexact),
negative zero, subnormals, NaN, infinities and values far outside the code range.
"""

from __future__ import annotations

import numpy as np
import pytest

from dfxsdk import Rounding
from dfxsdk.ops import Relu, Requantize

from tests.support.builder import Builder, fmt


def _values(fl: int) -> np.ndarray:
    """float32 values around every kind of rounding boundary of the format's fl."""
    step = np.float32(2.0 ** -fl)
    ties = (np.arange(-300, 300, dtype=np.float64) + 0.5) * float(step)
    ties = ties.astype(np.float32)
    up = np.nextafter(ties, np.float32(np.inf))
    down = np.nextafter(ties, np.float32(-np.inf))
    special = np.array([0.0, -0.0, 2.0 ** -40, -(2.0 ** -40), 1e-45, -1e-45, 2.0 ** -126, 3e38, -3e38,
                        np.inf, -np.inf, np.nan, 0.49999997, -0.49999997, 2.0 ** 31, -(2.0 ** 31),
                        2.0 ** 31 + 2.0 ** 8, -(2.0 ** 31) - 2.0 ** 8], dtype=np.float32)
    rng = np.random.default_rng(fl + 100)
    rand = (rng.standard_normal(4000) * float(step) * rng.choice([1, 30, 3e4, 3e9], 4000)).astype(np.float32)
    with np.errstate(over="ignore"):   # 3e38 * 2^3 is meant to become inf
        scaled = (special.astype(np.float64) * float(step)).astype(np.float32)
    return np.concatenate([ties, up, down, special, scaled, rand])[None, :]


CASES = [(bw, fl, r) for r in Rounding for bw, fl in ((2, 0), (8, 5), (8, -3), (16, 10), (32, 20), (32, 0))]
IDS = [f"bw{bw}-fl{fl}-{r.name.lower()}" for bw, fl, r in CASES]


def _assert_same(native, model, x):
    from dfxsdk.plugins import get_manager

    out = model.outputs[0]
    want = get_manager().backend("numpy").run(model, {model.inputs[0]: x})[out]
    have = native.run(model, {model.inputs[0]: x})[out]
    assert want.shape == have.shape
    bad = np.flatnonzero(want.ravel() != have.ravel())
    assert bad.size == 0, (f"{bad.size} codes differ; first at x={x.ravel()[bad[0]]!r}: "
                           f"numpy {want.ravel()[bad[0]]}, native {have.ravel()[bad[0]]}")


@pytest.mark.parametrize("bw,fl,rounding", CASES, ids=IDS)
def test_quantized_graph_input(native, bw, fl, rounding):
    x = _values(fl)
    b = Builder("qin")
    q = fmt(bw, fl, rounding)
    inp = b.input(x.shape, q)
    model = b.output(b.add(Relu(), [inp], q))
    _assert_same(native, model, x)


@pytest.mark.parametrize("bw,fl,rounding", CASES, ids=IDS)
def test_requantize_from_float(native, bw, fl, rounding):
    x = _values(fl)
    b = Builder("rq")
    inp = b.input(x.shape)
    model = b.output(b.add(Requantize(), [inp], fmt(bw, fl, rounding)))
    _assert_same(native, model, x)
