"""MobileNet-SSD (real prototxt, generated weights) end to end; per-channel fl on depthwise layers."""

from __future__ import annotations

import numpy as np
import pytest

from dfxsdk import load, save
from dfxsdk.providers import CalibrationData

from dfx_quantizer.plugin import quantize_model

from tests.support.quantize import depthwise_sqnr, mobilenet_ssd
from tests.support.testdata import MOBILENET_SSD, needs_testdata

pytestmark = needs_testdata(MOBILENET_SSD)
#: The one-pass quantizer (rule fl, nearest rounding): these tests compare per-layer and per-channel fl.
ONE_PASS = {"rounding": "nearest", "fl_search": "none"}
#: A small input keeps the test fast; benchmarks/bench_quantize.py uses 300x300.
SIZE = 96


@pytest.fixture(scope="module")
def model():
    return mobilenet_ssd(SIZE)


def images(n: int, seed: int) -> np.ndarray:
    """Inputs in MobileNet-SSD's preprocessed range ((pixel - 127.5) * 0.007843, about [-1, 1])."""
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def quantized(model):
    x = images(8, 1)

    def data() -> CalibrationData:
        return CalibrationData([{"data": x[i:i + 4]} for i in range(0, 8, 4)])

    return (quantize_model(model, data(), {"bw": 8, **ONE_PASS}),
            quantize_model(model, data(), {"bw": 8, "per_channel": True, **ONE_PASS}))


def test_end_to_end_valid_saved_and_run_in_integer_mode(model, quantized, tmp_path):
    per_layer, per_channel = quantized
    for res in quantized:
        q = res.model
        q.validate()
        convs = [l for l in q.layers if l.type == "Conv2D"]
        assert len(convs) == 47 and all(q.tensors[l.inputs[1]].qformat is not None for l in convs)
        assert all(q.tensors[l.outputs[0]].qformat.bw == 8 for l in convs)
        assert q.layer("detection_out").type == "DetectionOutput"
        assert q.tensors["detection_out"].qformat is None          # float operators stay float
        path = tmp_path / "ssd.dfx"
        save(q, path)
        back = load(path)
        x = images(2, 5)
        out = back.run({"data": x}, mode="integer")["detection_out"]
        assert out.shape[0] == 2 and out.shape[-1] == 7
    dw = [l for l in model.layers if l.type == "Conv2D" and l.op.group > 1]
    assert len(dw) == 13
    w = per_channel.model.tensors[dw[0].inputs[1]].qformat
    assert w.per_channel and len(w.channel_fl) == dw[0].op.group


def test_per_channel_fl_gives_higher_sqnr_on_depthwise_layers(model, quantized):
    per_layer, per_channel = quantized
    x = images(4, 7)
    w_pl, o_pl = depthwise_sqnr(model, per_layer.model, x)
    w_pc, o_pc = depthwise_sqnr(model, per_channel.model, x)
    assert all(a > b for a, b in zip(w_pc, w_pl)), (w_pc, w_pl)       # every depthwise layer's weights
    assert np.mean(o_pc) > np.mean(o_pl), (o_pc, o_pl)                # and their outputs, on average
