"""Ristretto's other trimming modes on LeNet: INTEGER_POWER_OF_2_WEIGHTS against its simulation.

The prototxt is LeNet's Ristretto file with every quantization_param replaced by the
block the ``ristretto`` tool writes for ``--trimming_mode=integer_power_of_2_weights``
(8-bit activations, exponents -8..-1). The simulation here is Ristretto's CPU forward
pass written independently of the importer: Trim2IntegerPowerOf2 on the weights only,
bias, input and output untouched, the layer computed in float32.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from dfxsdk.errors import DfxImportError

from tests.support.native import native_backend
from tests.support.quantize import batches, lenet_float, spread
from tests.support.testdata import LENET, needs_testdata

pytestmark = needs_testdata(LENET)

POW2_BLOCK = """quantization_param {
    precision: INTEGER_POWER_OF_2_WEIGHTS
    bw_layer_in: 8
    bw_layer_out: 8
    fl_layer_in: 0
    fl_layer_out: 0
    exp_min: %d
    exp_max: %d
  }"""


def ristretto_file(tmp_path, block: str) -> str:
    text = (LENET / "lenet_quantized.prototxt").read_text()
    out = tmp_path / "modes.prototxt"
    out.write_text(re.sub(r"quantization_param\s*\{.*?\}", block, text, flags=re.S))
    return str(out)


def import_with(tmp_path, block: str):
    from dfx_caffe.plugin import import_caffe

    model = import_caffe([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"],
                         ristretto_path=ristretto_file(tmp_path, block))
    model.preprocessing["data"] = lenet_float().preprocessing["data"]
    return model


def trim_power_of_two(w: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Trim2IntegerPowerOf2_cpu with NEAREST, element by element as Ristretto's loop does."""
    out = np.empty(w.size, np.float32)
    for i, v in enumerate(np.asarray(w, np.float32).reshape(-1)):
        e = float(np.log2(np.float32(abs(v)))) if v != 0 else -math.inf
        e = math.copysign(math.floor(abs(e) + 0.5), e) if math.isfinite(e) else e
        e = max(min(e, hi), lo)
        out[i] = (1 if v >= 0 else -1) * 2.0 ** e
    return out.reshape(w.shape)


@pytest.fixture(scope="module")
def pow2(tmp_path_factory):
    return import_with(tmp_path_factory.mktemp("pow2"), POW2_BLOCK % (-8, -1))


def simulation():
    """The float LeNet with Ristretto's trimmed weights: its CPU forward pass in this mode."""
    model = lenet_float()
    for layer in model.layers:
        if layer.type in ("Conv2D", "FullyConnected"):
            w = model.tensors[layer.inputs[1]]
            w._data = trim_power_of_two(w.data, -8, -1)
    return model


def test_power_of_two_weights_are_exact_codes(pow2):
    for layer in pow2.layers:
        if layer.type not in ("Conv2D", "FullyConnected"):
            continue
        w, b = pow2.tensors[layer.inputs[1]], pow2.tensors[layer.inputs[2]]
        assert (w.qformat.bw, w.qformat.fl) == (9, 8), layer.name
        codes = np.abs(np.asarray(w.data, np.int64))
        assert set(np.unique(codes)) <= {2 ** k for k in range(8)}, layer.name
        assert b.qformat is None, layer.name                       # the bias is not trimmed
        assert pow2.tensors[layer.inputs[0]].qformat is None        # CPU: inputs stay float
        assert pow2.tensors[layer.outputs[0]].qformat is None


def test_trimming_edge_cases():
    from dfx_caffe.ristretto import power_of_two_codes

    w = np.array([0.0, -0.0, 1e-9, -1e-9, 0.75, -0.75, 0.7, 3.0, -0.3535534, 0.0883883], np.float32)
    expect = trim_power_of_two(w, -8, -1)
    assert np.array_equal(power_of_two_codes(w, -8, -1) * 2.0 ** -8, expect)
    assert expect[0] == expect[1] == 2.0 ** -8                      # 0 has no code: +2^exp_min
    assert expect[4] == 0.5 and expect[7] == 0.5 and expect[5] == -0.5


def test_power_of_two_lenet_equals_its_simulation(pow2, tmp_path_factory):
    x, _ = spread(300)
    sim = simulation()
    native = native_backend(tmp_path_factory)
    for feed in batches(pow2, x):
        got = pow2.run(feed)["prob"]
        want = sim.run(feed, mode="float")["prob"]
        assert np.array_equal(got, want)           # same float32 arithmetic on identical values
        nat = native.run(pow2, feed)["prob"]
        np.testing.assert_allclose(nat, want, rtol=0, atol=1e-5)   # C float32 sums in another order


def test_power_of_two_exponent_range_is_checked(tmp_path):
    with pytest.raises(DfxImportError, match="exp_min"):
        import_with(tmp_path, POW2_BLOCK % (-1, -8))
    with pytest.raises(DfxImportError, match="32 bits"):
        import_with(tmp_path, POW2_BLOCK % (-40, -1))
