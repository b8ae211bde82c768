"""The native benchmarks' model builders make valid models, and their ONNX export computes the same network."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.support.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
nets = pytest.importorskip("native_nets")
SMALL = (1, 3, 48, 64)


@pytest.fixture(scope="module")
def detector(tmp_path_factory, caffe):
    proto = tmp_path_factory.mktemp("detector") / "dw_detector.prototxt"
    proto.write_text(nets.detector_prototxt(SMALL))
    from dfx_caffe.build import RandomWeights

    return caffe.import_caffe([proto], weights=RandomWeights(1))


def test_detector_is_a_valid_depthwise_separable_ssd_style_network(detector):
    from dfxsdk.validate import validate_model

    validate_model(detector)
    convs = [layer for layer in detector.layers if layer.type == "Conv2D"]
    depthwise = [c for c in convs if c.op.group > 1 and c.op.group == detector.tensors[c.inputs[0]].shape[1]]
    assert len(depthwise) == len(nets.DETECTOR_BLOCKS)
    assert len(detector.outputs) == 2 * len(nets.DETECTOR_HEADS)            # box offsets and scores per scale
    assert nets.conv_body(detector).layers == detector.layers               # ORT runs the whole detector
    assert tuple(detector.tensors[detector.inputs[0]].shape) == SMALL
    assert nets.detector_prototxt().count("input_dim") == 4


@pytest.fixture(scope="module")
def quantized(detector):
    return nets.quantize8(detector)


def test_quantized_detector_is_valid_and_8_bit(quantized):
    from dfxsdk.validate import validate_model

    validate_model(quantized)
    formats = [t.qformat for t in quantized.tensors.values() if t.qformat is not None and not t.is_constant]
    assert formats and all(f.bw == 8 for f in formats)


def test_quantize8_is_the_one_pass_quantizer(quantized):
    # what the quantizer records of its run: no learned rounding, no fl search
    assert quantized.metadata["quantization.rounding"] == "nearest"
    assert quantized.metadata["quantization.fl_search"] == "none"


def test_onnx_float_export_matches_the_reference(detector, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import native_onnx

    from dfxsdk.plugins import get_manager

    path = tmp_path / "detector.onnx"
    assert native_onnx.to_onnx(detector, path) == sum(layer.type == "Conv2D" for layer in detector.layers)
    feed = nets.random_input(detector, 2)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)
    want = get_manager().backend("numpy").run(detector, feed, mode="float")
    for name, value in zip(detector.outputs, got):
        np.testing.assert_allclose(value, want[name], rtol=1e-3, atol=1e-3, err_msg=name)


def test_onnx_qdq_export_from_the_dfx_formats_is_a_valid_model(quantized, tmp_path):
    onnx = pytest.importorskip("onnx")
    import native_onnx

    q = quantized
    path = tmp_path / "detector_qdq.onnx"
    native_onnx.to_onnx(nets.conv_body(q), path, qdq=True)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("Conv") == sum(layer.type == "Conv2D" for layer in q.layers)
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
