"""Low-bit quality (learned rounding, fl search on the score) on the real LeNet; scores without labels."""

from __future__ import annotations

import numpy as np
import pytest

from dfxsdk.plugins import get_manager
from dfxsdk.providers import CalibrationData

from dfx_quantizer import scores
from dfx_quantizer.plugin import quantize_model

from tests.support.quantize import batches, lenet_float, mnist, spread
from tests.support.testdata import LENET, MNIST, needs_testdata


@pytest.mark.slow
@needs_testdata(LENET, MNIST)
def test_lenet_2_4_4_defaults_reach_99_percent_native_and_bit_exact():
    model = lenet_float()
    xs, ys = spread(1000)
    res = quantize_model(model, CalibrationData(batches(model, xs), ys, 1000),
                         {"bw_conv": 2, "bw_fc": 4, "bw_act": 4})
    q = res.model
    x, y = mnist()
    native, ref = get_manager().backend("native"), get_manager().backend("numpy")
    preds = np.concatenate([native.run(q, b, mode="integer")[q.outputs[0]].argmax(axis=1)
                            for b in batches(q, x, 1000)])
    acc = float(np.mean(preds == y))
    b = batches(q, x[::50], 100)[0]
    assert np.array_equal(native.run(q, b, mode="integer", outputs=["ip2"])["ip2"],
                          ref.run(q, b, mode="integer", outputs=["ip2"])["ip2"])
    assert acc >= 0.99, (acc, res.log)


def test_fidelity_and_sqnr():
    ref = np.array([3.0, -4.0])
    assert scores.fidelity(ref, ref) == 100.0
    assert scores.fidelity(ref, np.array([3.0, -3.0])) == pytest.approx(96.0)
    assert scores.sqnr(ref, np.array([3.0, -3.0])) == pytest.approx(10 * np.log10(25.0))
    assert scores.fidelity(ref, -ref) == 0.0


def test_box_agreement_matches_same_label_and_overlap():
    a = np.array([[0, 1, 0.9, 0.1, 0.1, 0.5, 0.5], [0, 2, 0.8, 0.5, 0.5, 0.9, 0.9]]).reshape(1, 1, 2, 7)
    moved = a.copy()
    moved[0, 0, 0, 3:] += 0.01                      # still IoU > 0.5
    assert scores.box_agreement(a, moved) == 100.0
    other = a.copy()
    other[0, 0, 1, 1] = 3                           # second box: another label
    assert scores.box_agreement(a, other) == 50.0
    assert scores.box_agreement(a[:, :, :0], a[:, :, :0]) == 100.0
    assert scores.box_agreement(a, a[:, :, :1]) == pytest.approx(100 * 2 / 3)


def test_box_agreement_adds_up_runs_whose_image_ids_restart():
    a = np.array([0, 1, 0.9, 0.1, 0.1, 0.5, 0.5]).reshape(1, 1, 1, 7)
    none = np.full((1, 1, 1, 7), -1.0)
    assert scores.box_agreement([a, a], [a, none]) == pytest.approx(100 * 2 / 3)
