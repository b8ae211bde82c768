"""Native vs NumPy reference on the real networks of ../shared/testdata."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from tests.support.testdata import LENET, MNIST, MTCNN, ONLY, needs_testdata

pytestmark = needs_testdata()


@pytest.mark.slow
def test_lenet_ristretto_all_5000_digits_bit_exact(native, caffe):
    from dfxsdk.plugins import get_manager

    model = caffe.import_caffe([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"],
                               ristretto_path=LENET / "lenet_quantized.prototxt")
    with gzip.open(MNIST, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x_raw = table[:, :-1].reshape(-1, 1, 28, 28)
    assert len(x_raw) == 5000
    names = [n for layer in model.layers for n in layer.outputs]
    ref = get_manager().backend("numpy")
    for s in range(0, 5000, 1000):
        x = model.preprocessing["data"].apply(x_raw[s:s + 1000])
        a = native.run(model, {"data": x}, outputs=names)
        b = ref.run(model, {"data": x}, outputs=names)
        for n in names:
            if model.tensors[n].qformat is None:
                np.testing.assert_allclose(a[n], b[n], rtol=1e-5, atol=1e-6, err_msg=n)
            else:
                assert np.array_equal(a[n], b[n]), f"{n}, digits {s}..{s + 999}"


@pytest.mark.parametrize("net", ["det1", "det2", "det3"])
def test_mtcnn_float_model_matches(native, caffe, net):
    from dfxsdk.plugins import get_manager

    model = caffe.import_caffe([MTCNN / f"{net}.prototxt", MTCNN / f"{net}.caffemodel"])
    rng = np.random.default_rng(1)
    inputs = {n: rng.uniform(-1, 1, (2,) + model.tensors[n].shape[1:]).astype(np.float32) for n in model.inputs}
    names = [n for layer in model.layers for n in layer.outputs]
    a = native.run(model, inputs, outputs=names)
    b = get_manager().backend("numpy").run(model, inputs, outputs=names)
    for n in names:   # float32 kernels: 1e-5 relative, absolute slack scaled to the tensor's magnitude
        scale = float(np.abs(b[n]).max()) or 1.0
        np.testing.assert_allclose(a[n], b[n], rtol=1e-5, atol=1e-6 * scale, err_msg=n)


def _quantize8(model, batch=2, seed=0):
    """``model`` quantized to 8 bits by the dfp quantizer (max-abs fl, one pass: no fl search or learned
    rounding, which change codes, not arithmetic), calibrated on random inputs."""
    from dfxsdk.providers import CalibrationData

    quantizer = pytest.importorskip("dfx_quantizer.plugin", reason="the dfp quantizer plugin is not installed")
    rng = np.random.default_rng(seed)
    data = {n: rng.uniform(-1, 1, (batch,) + tuple(model.tensors[n].shape[1:])).astype(np.float32)
            for n in model.inputs}
    options = {"bw": 8, "fl_rule": "maxabs", "rounding": "nearest", "fl_search": "none"}
    return quantizer.quantize_model(model, CalibrationData([data]), options).model


def _assert_bit_exact(native, model, batch, seed=1):
    from dfxsdk.plugins import get_manager

    rng = np.random.default_rng(seed)
    inputs = {n: rng.uniform(-1, 1, (batch,) + tuple(model.tensors[n].shape[1:])).astype(np.float32)
              for n in model.inputs}
    names = [n for layer in model.layers for n in layer.outputs]
    a = native.run(model, inputs, outputs=names)
    b = get_manager().backend("numpy").run(model, inputs, outputs=names)
    for n in names:
        if model.tensors[n].qformat is None:
            scale = float(np.abs(b[n]).max()) or 1.0
            np.testing.assert_allclose(a[n], b[n], rtol=1e-5, atol=1e-6 * scale, err_msg=n)
        else:
            assert np.array_equal(a[n], b[n]), f"{n}: {int(np.sum(a[n] != b[n]))} codes differ"


@pytest.mark.parametrize("net", ["det1", "det2", "det3"])
def test_mtcnn_quantized_8bit_bit_exact(native, caffe, net):
    model = _quantize8(caffe.import_caffe([MTCNN / f"{net}.prototxt", MTCNN / f"{net}.caffemodel"]))
    _assert_bit_exact(native, model, batch=2)


def test_leaky_relu_quantized_is_integer_and_bit_exact(native):
    """Caffe's leaky ReLU is a PRelu with one slope: the quantizer gives it an integer slope."""
    from dfxsdk import ops

    from tests.support.builder import Builder

    rng = np.random.default_rng(4)
    b = Builder("leaky")
    x = b.input((1, 3, 8, 8), name="data")
    c = b.add(ops.Conv2D(kernel_h=3, kernel_w=3), [x, b.const(rng.normal(0, 0.5, (4, 3, 3, 3))),
                                                   b.const(rng.normal(0, 0.1, (4,)))])
    leaky = b.add(ops.PRelu(), [c, b.const(np.array([0.1], np.float32))])
    model = _quantize8(b.output(leaky))
    prelu = next(layer for layer in model.layers if layer.type == "PRelu")
    assert model.tensors[prelu.inputs[1]].qformat is not None
    assert model.tensors[prelu.outputs[0]].qformat.bw == 8
    _assert_bit_exact(native, model, batch=2)


SSD = {"mobilenet_ssd": "MobileNetSSD_deploy.prototxt",
       "res10_face": "opencv_face_detector_res10_300x300_deploy.prototxt"}


@pytest.mark.slow
@pytest.mark.parametrize("net", sorted(SSD))
def test_ssd_detector_quantized_8bit_bit_exact(native, caffe, net, tmp_path):
    """The SSD detectors at their real 300x300 size (the prior boxes depend on it), batch 1,
    generated weights, 8-bit: every tensor, DetectionOutput included."""
    import warnings

    from dfx_caffe.synth import random_caffemodel

    proto = ONLY / SSD[net]
    random_caffemodel(proto, tmp_path / "w.caffemodel", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = caffe.import_caffe([proto, tmp_path / "w.caffemodel"])
    _assert_bit_exact(native, _quantize8(model, batch=1), batch=1)
