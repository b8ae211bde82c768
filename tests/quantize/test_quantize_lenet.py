"""Acceptance on the real LeNet with MNIST: 8-bit loss, Ristretto's search, fl reproduction, emission."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dfxsdk.formats import DataType
from dfxsdk.providers import CalibrationData

from dfx_quantizer.plugin import quantize_model

from tests.support.quantize import batches, lenet_float, mnist, spread, top1
from tests.support.testdata import LENET, MNIST, needs_testdata

pytestmark = needs_testdata(LENET, MNIST)
QUANTIZED = LENET / "lenet_quantized.prototxt"


@pytest.fixture(scope="module")
def model():
    return lenet_float()


@pytest.fixture(scope="module")
def float_acc(model):
    x, y = mnist()
    return top1(model, x, y, "float")


def calibration(model, n: int, labels: bool = False, size: int = 100, first: bool = False) -> CalibrationData:
    """n digits: spread over all classes (the file is sorted by label), or the first n."""
    if first:
        x, y = mnist()
        x, y = x[:n], y[:n]
    else:
        x, y = spread(n)
    return CalibrationData(batches(model, x, size), y if labels else None, n)


def test_8bit_loses_at_most_a_tenth_of_a_point_on_all_digits(model, float_acc):
    x, y = mnist()
    assert len(y) == 5000
    res = quantize_model(model, calibration(model, 500), {"bw": 8})
    q = res.model
    q.validate()
    for layer in ("conv1", "conv2", "ip1", "ip2"):
        view = q.ristretto_view(q.layer(layer))
        assert (view.bw_layer_in, view.bw_layer_out, view.bw_params) == (8, 8, 8)
    acc = top1(q, x, y, "integer")
    assert float_acc > 99.5
    assert float_acc - acc <= 0.1, (float_acc, acc)


def test_ristretto_search_ends_inside_the_margin(model):
    """With Ristretto's own fl rule the search picks Ristretto's published LeNet widths (2-bit conv,
    4-bit fc, 8-bit activations); that combination breaks the 1 % margin here, which Ristretto never
    checks, and the back-off brings it back inside."""
    n = 1000
    res = quantize_model(model, calibration(model, n, labels=True),
                         {"search": "ristretto", "margin": 1.0, "fl_rule": "ristretto"})
    log = "\n".join(res.log)
    for part in ("conv", "fc", "act"):
        assert re.search(rf"{part}\s+16-bit", log), log      # every part was searched from 16 bits
    assert "chosen: conv 2-bit, fc 4-bit, act 8-bit" in log
    assert re.search(r"combined: [\d.]+ %  \(breaks the margin\)", log), log
    assert "back-off:" in log
    assert res.score >= res.baseline - 1.0, log
    # the reported score is the chosen model's
    x, y = spread(n)
    assert top1(res.model, x, y, "integer") == pytest.approx(res.score)


def test_per_layer_search_stays_inside_the_margin_and_lowers_something(model):
    n = 300
    res = quantize_model(model, calibration(model, n, labels=True), {"search": "per-layer", "margin": 1.0})
    assert res.score >= res.baseline - 1.0
    start, end = res.stages["ristretto"], res.stages["per-layer"]
    assert end == res.plan
    for name, p in end.items():       # never wider than the Ristretto search's result
        assert (p.bw_params or 32) <= (start[name].bw_params or 32)
        assert (p.bw_out or 32) <= (start[name].bw_out or 32)
    assert any("per-layer search" in line for line in res.log)
    x, y = spread(n)
    assert top1(res.model, x, y, "integer") == pytest.approx(res.score)


# -- reproducing lenet_quantized.prototxt --------------------------------------------------

def ristretto_file() -> dict[str, dict[str, int]]:
    out = {}
    for block in re.findall(r"layer\s*\{(.*?)\n\}", QUANTIZED.read_text(), re.S):
        name = re.search(r'name:\s*"([^"]+)"', block).group(1)
        qp = re.search(r"quantization_param\s*\{(.*?)\}", block, re.S)
        if qp:
            out[name] = {k: int(v) for k, v in re.findall(r"(\w+):\s*(-?\d+)", qp.group(1))}
    return out


RISTRETTO_WAY = {"fl_rule": "ristretto", "ristretto_stats": True, "bias": "params", "stats_samples": 640}


def reproduce(model, n: int, first: bool):
    want = ristretto_file()
    bw = {"bw_conv": want["conv1"]["bw_params"], "bw_fc": want["ip1"]["bw_params"],
          "bw_act": want["conv1"]["bw_layer_in"]}
    res = quantize_model(model, calibration(model, n, size=64, first=first), {**RISTRETTO_WAY, **bw,
                                                                               "stats_samples": None})
    got = {}
    for name in want:
        v = res.model.ristretto_view(res.model.layer(name))
        got[name] = {k: getattr(v, k) for k in want[name]}
    return want, got


@pytest.mark.parametrize("first", [True, False], ids=["first-640", "640-of-all-classes"])
def test_ristretto_rule_reproduces_the_real_files_fl_values(model, first):
    # Ristretto: 10 batches of 64, maxima after in-place layers, bias ignored. The digits file is
    # sorted by label: the first 640 are zeros and ones; both that and a class-balanced 640 work.
    want, got = reproduce(model, 640, first)
    assert got == want


def test_the_one_value_that_depends_on_the_calibration_digits(model):
    """All 5000 digits put ip2's max above 32 (one digit, #1908): one octave more, fl_layer_out -2."""
    want, got = reproduce(model, 5000, True)
    diff = {(n, k) for n in want for k in want[n] if want[n][k] != got[n][k]}
    assert diff == {("ip2", "fl_layer_out")}
    assert (want["ip2"]["fl_layer_out"], got["ip2"]["fl_layer_out"]) == (-1, -2)
    _, before = reproduce(model, 1907, True)
    assert before == want


def test_reproduced_model_packs_low_bit_weights(model):
    res = quantize_model(model, calibration(model, 640, size=64),
                         {**RISTRETTO_WAY, "bw_conv": 2, "bw_fc": 4, "bw_act": 4})
    q = res.model
    assert q.tensors["conv1/weights"].dtype is DataType.INT2
    assert q.tensors["ip1/weights"].dtype is DataType.INT4
    assert q.tensors["ip1/bias"].dtype is DataType.INT4         # Ristretto: the bias in the params format
    x, _ = mnist()
    out = q.run(batches(q, x[:10])[0], mode="integer", outputs=["ip2"])["ip2"]
    assert out.dtype.kind == "i"


def test_emitted_prototxt_reimports_with_the_same_formats(model, tmp_path):
    from dfx_caffe.plugin import import_caffe

    out = tmp_path / "lenet_q.prototxt"
    res = quantize_model(model, calibration(model, 200), {
        "bw_conv": 4, "bw_fc": 8, "bw_act": 8, "bias": "params", "emit_ristretto": str(out),
        "source_files": [str(LENET / "lenet.prototxt"), str(LENET / "lenet_iter_10000.caffemodel")]})
    assert res.notes == []
    back = import_caffe([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"], ristretto_path=out)
    for name in ("conv1", "conv2", "ip1", "ip2"):
        assert back.ristretto_view(back.layer(name)) == res.model.ristretto_view(res.model.layer(name)), name
    # same formats and same weights: the re-imported network computes the same scores
    x, _ = mnist()
    b = batches(model, x[:200])[0]
    assert np.array_equal(back.run(b, outputs=["ip2"])["ip2"], res.model.run(b, outputs=["ip2"])["ip2"])
    # and into the train/test prototxt, for fine-tuning in Ristretto
    tt = tmp_path / "train_q.prototxt"
    quantize_model(model, calibration(model, 200), {"bw": 8, "emit_ristretto": str(tt),
                                                    "prototxt": str(LENET / "lenet_train_test.prototxt")})
    text = tt.read_text()
    assert text.count("quantization_param") == 4 and 'source: "examples/mnist/mnist_train_lmdb"' in text
