"""Every layer integer and within --bw: MTCNN (PReLU), Concat, one Requantize per tensor and format."""

from __future__ import annotations

import numpy as np
import pytest

from dfxsdk import ops
from dfxsdk.providers import CalibrationData

from dfx_quantizer.plugin import quantize_model

from tests.support.builder import Builder
from tests.support.testdata import MTCNN, needs_testdata

FLOAT_ONLY = ("Softmax", "DetectionOutput")


def _check_integer_within(q, bw: int) -> None:
    for layer in q.layers:
        for o in layer.outputs:
            if layer.type not in FLOAT_ONLY:
                assert q.tensors[o].qformat is not None, (layer.name, layer.type)
    for t in q.tensors.values():
        if t.qformat is None:
            continue
        # int32 biases sit on the accumulator's grid by design (--bias int32), not an activation
        is_bias = t.is_constant and t.qformat.bw == 32
        assert is_bias or t.qformat.bw <= bw, (t.name, t.qformat)


@needs_testdata(MTCNN)
@pytest.mark.parametrize("net", ["det1", "det2", "det3"])
def test_mtcnn_has_no_float_layer_but_softmax_and_fits_bw(net):
    from dfx_caffe.plugin import import_caffe

    m = import_caffe([MTCNN / f"{net}.prototxt", MTCNN / f"{net}.caffemodel"])
    assert any(layer.type == "PRelu" for layer in m.layers)
    x = np.random.default_rng(0).uniform(-1, 1, (8,) + m.tensors[m.inputs[0]].shape[1:]).astype(np.float32)
    q = quantize_model(m, CalibrationData([{m.inputs[0]: x}], None, 8),
                       {"bw": 8, "rounding": "nearest", "fl_search": "none"}).model
    q.validate()
    _check_integer_within(q, 8)
    out = q.run({q.inputs[0]: x[:2]}, mode="integer")
    assert all(np.all(np.isfinite(v)) for v in out.values())


def test_concat_of_two_heads_stays_within_bw_and_shares_one_requantize():
    rng = np.random.default_rng(1)
    b = Builder()
    x = b.input((1, 2, 6, 6))
    c1 = b.add(ops.Conv2D(kernel_h=1, kernel_w=1), [x, b.const(rng.normal(0, 1, (3, 2, 1, 1))),
                                                    b.const(rng.normal(0, 1, (3,)))])
    c2 = b.add(ops.Conv2D(kernel_h=1, kernel_w=1), [x, b.const(rng.normal(0, 9, (3, 2, 1, 1))),
                                                    b.const(rng.normal(0, 1, (3,)))])
    cat = b.add(ops.Concat(axis=1), [c1, c2])
    m = b.output(cat)
    data = rng.normal(0, 1, (16, 2, 6, 6)).astype(np.float32)
    q = quantize_model(m, CalibrationData([{x: data}], None, 16),
                       {"bw": 8, "rounding": "nearest", "fl_search": "none"}).model
    q.validate()
    _check_integer_within(q, 8)
    assert [layer.type for layer in q.layers].count("Requantize") == 1
