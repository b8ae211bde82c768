"""Caffe import of every real model in ../shared/testdata, V1 upgrade, folding, warnings."""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import pytest

from dfxsdk import ops

from tests.support.testdata import LENET, MTCNN, ONLY, RIST, V1, needs_testdata

pytestmark = needs_testdata()


def imp(*paths, **kw):
    from dfx_caffe.plugin import import_caffe

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = import_caffe(list(paths), **kw)
    model.validate()
    return model, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from dfx_caffe.synth import random_caffemodel

    d = tmp_path_factory.mktemp("synth")
    cache = {}

    def get(proto):
        if proto not in cache:
            cache[proto] = random_caffemodel(proto, d / (proto.stem + ".caffemodel"), seed=3)
        return cache[proto]
    return get


def types(model) -> Counter:
    return Counter(l.type for l in model.layers)


def test_v1_and_v2_lenet_import_to_the_same_graph():
    v2_net, v1_net = LENET / "lenet.prototxt", V1 / "lenet_v1era.prototxt"
    for weights in (LENET / "lenet_iter_10000.caffemodel", V1 / "lenet_iter_10000_v1.caffemodel"):
        a, _ = imp(v2_net, weights)
        b, _ = imp(v1_net, weights)
        a.metadata.pop("source.files"), b.metadata.pop("source.files")
        assert a == b                   # tensors (names, shapes, formats, data), layers, inputs, outputs
    a, _ = imp(v2_net, LENET / "lenet_iter_10000.caffemodel")
    b, _ = imp(v1_net, V1 / "lenet_iter_10000_v1.caffemodel")   # different training run
    assert [(l.name, l.type, l.op) for l in a.layers] == [(l.name, l.type, l.op) for l in b.layers]
    assert {n: t.shape for n, t in a.tensors.items()} == {n: t.shape for n, t in b.tensors.items()}
    assert a.tensors["ip1/weights"].shape == (500, 800)    # from the legacy (1,1,500,800) blob
    assert b.tensors["ip1/bias"].shape == (500,)


def test_lenet_train_test_keeps_test_phase_and_preprocessing():
    m, _ = imp(LENET / "lenet_train_test.prototxt", LENET / "lenet_iter_10000.caffemodel",
               input_shape=(1, 1, 28, 28))
    assert types(m) == Counter(Conv2D=2, Pool2D=2, FullyConnected=2, Relu=1)
    assert m.inputs == ["data"] and m.outputs == ["ip2"]
    assert m.preprocessing["data"].scale == [0.00390625]


@pytest.mark.parametrize("proto,weights,expected", [
    ("cifar10_quick.prototxt", "cifar10_quick_iter_5000.caffemodel",
     dict(Conv2D=3, Pool2D=3, Relu=3, FullyConnected=2, Softmax=1)),
    ("cifar10_full.prototxt", "cifar10_full_iter_70000.caffemodel",
     dict(Conv2D=3, Pool2D=3, Relu=3, Lrn=2, FullyConnected=1, Softmax=1)),
])
def test_cifar10_v1(proto, weights, expected):
    m, warns = imp(V1 / proto, V1 / weights)
    assert types(m) == Counter(expected) and not warns
    pools = [l.op for l in m.layers if l.type == "Pool2D"]
    if proto == "cifar10_full.prototxt":
        assert [l.op.region for l in m.layers if l.type == "Lrn"] == [ops.LRN_WITHIN_CHANNEL] * 2
        assert [p.type for p in pools] == [ops.POOL_MAX, ops.POOL_AVERAGE, ops.POOL_AVERAGE]
    # Caffe's ceil rule: 32 -> conv(pad 2, k 5) 32 -> pool(3, s2) ceil((32-3)/2)+1 = 16
    assert m.tensors["pool1"].shape == (1, 32, 16, 16)
    assert m.tensors["pool3"].shape == (1, 64, 4, 4)


@pytest.mark.parametrize("net,outputs", [
    ("det1", ["conv4-2", "prob1"]), ("det2", ["conv5-2", "prob1"]), ("det3", ["conv6-2", "conv6-3", "prob1"])])
def test_mtcnn(net, outputs):
    m, warns = imp(MTCNN / f"{net}.prototxt", MTCNN / f"{net}.caffemodel")
    assert not warns
    assert sorted(m.outputs) == sorted(outputs)
    prelus = [l for l in m.layers if l.type == "PRelu"]
    assert prelus and all(m.tensors[l.inputs[1]].shape == (m.tensors[l.inputs[0]].shape[1],) for l in prelus)
    assert "Dropout" not in types(m)
    # in-place PReLU writes a new tensor named <blob>@<layer>
    first = prelus[0]
    assert first.inputs[0] == "conv1" and first.outputs == [f"conv1@{first.name}"]


def test_mobilenet_ssd_folds_batchnorm_and_priorboxes(synth):
    proto = ONLY / "MobileNetSSD_deploy.prototxt"
    m, warns = imp(proto, synth(proto))
    t = types(m)
    assert t["Conv2D"] == 47 and t["Scale"] == 0 and t["PriorBox"] == 0 and t["DetectionOutput"] == 1
    assert t["Permute"] == 12 and t["Flatten"] == 13 and t["Relu"] == 35
    det = m.layer("detection_out")
    priors = m.tensors[det.inputs[2]]
    assert priors.is_constant and priors.dtype.name == "FLOAT32"
    assert det.op.num_classes == 21 and det.op.keep_top_k == 100 and det.op.nms_threshold == pytest.approx(0.45)
    assert m.tensors["detection_out"].shape == (1, 1, 100, 7)
    num_priors = priors.shape[2] // 4
    assert m.tensors[det.inputs[1]].shape == (1, num_priors * 21)
    assert m.outputs == ["detection_out"]


def test_batchnorm_fold_matches_caffe_arithmetic(synth):
    from dfx_caffe import parse

    proto = ONLY / "MobileNetSSD_deploy.prototxt"
    weights = synth(proto)
    m, _ = imp(proto, weights)
    stored = {l.name: [parse.blob_array(b).reshape(parse.blob_shape(b)[0]) for b in l.blobs]
              for l in parse.read_binary(weights).net.layer}
    w = stored["conv0"][0].astype(np.float64)
    mean, var, factor = (a.astype(np.float64) for a in stored["conv0/bn"])
    gamma, beta = (a.astype(np.float64) for a in stored["conv0/scale"])
    inv = gamma / np.sqrt(var / factor[0] + 1e-5)
    want_w = w * inv[:, None, None, None]
    want_b = beta - mean / factor[0] * inv
    conv = m.layer("conv0")
    assert np.allclose(m.tensors[conv.inputs[1]].data, want_w, rtol=1e-6, atol=1e-7)
    assert np.allclose(m.tensors[conv.inputs[2]].data, want_b, rtol=1e-6, atol=1e-6)
    assert conv.outputs == ["conv0"] and m.layer("conv0/relu").inputs == ["conv0"]


def test_priorbox_values(synth):
    proto = ONLY / "MobileNetSSD_deploy.prototxt"
    m, _ = imp(proto, synth(proto))
    # conv11 (19x19 map, 300x300 image): min 60, ratio 2 -> priors [1, 2, 1/2]
    assert "conv11_mbox_priorbox" not in m.tensors          # folded into the concatenated constant
    det = m.layer("detection_out")
    priors = m.tensors[det.inputs[2]].data
    first = priors[0, 0, :12]
    step, cx = 300 / 19, 0.5 * 300 / 19
    w2, h2 = 60 * math.sqrt(2), 60 / math.sqrt(2)
    want = [(cx - 30) / 300, (cx - 30) / 300, (cx + 30) / 300, (cx + 30) / 300,
            (cx - w2 / 2) / 300, (cx - h2 / 2) / 300, (cx + w2 / 2) / 300, (cx + h2 / 2) / 300,
            (cx - h2 / 2) / 300, (cx - w2 / 2) / 300, (cx + h2 / 2) / 300, (cx + w2 / 2) / 300]
    assert np.allclose(first, want, atol=1e-6) and step > 0
    assert np.array_equal(priors[0, 1, :8], np.float32([0.1, 0.1, 0.2, 0.2] * 2))


def test_opencv_face_detector_clip_extension_warns(synth):
    proto = ONLY / "opencv_face_detector_res10_300x300_deploy.prototxt"
    m, warns = imp(proto, synth(proto))
    assert any("clip" in w and "1788" in w and "OpenCV" in w for w in warns)
    det = m.layer("detection_out")
    assert det.op.clip is True and det.op.keep_top_k == 200
    t = types(m)
    assert t["Normalize"] == 1 and t["Eltwise"] == 4 and t["DetectionOutput"] == 1
    # data_bn + data_scale on the input cannot fold into a convolution: one standalone Scale
    assert m.layer("data_bn").type == "Scale"


def test_squeezenet_train_val_float(synth):
    proto = RIST / "squeezenet_v1.0_train_val.prototxt"
    m, _ = imp(proto, synth(proto))
    assert types(m) == Counter(Conv2D=26, Relu=26, Pool2D=4, Concat=8)
    assert not m.is_quantized and m.outputs == ["pool10"]
    assert m.tensors["pool10"].shape == (1, 1000, 1, 1)


def test_dfp8_variant_quantization_param_on_plain_layers_is_ignored():
    m, warns = imp(RIST / "lenet_dfp8_variant_is_quantized.prototxt", LENET / "lenet_iter_10000.caffemodel",
                   input_shape=(1, 1, 28, 28))
    assert sum("is_quantized" in w for w in warns) == 7
    assert all(":" in w.split(" ")[0] for w in warns if "is_quantized" in w)   # file:line prefix
    assert not m.is_quantized
    assert all(t.qformat is None for t in m.tensors.values())


def test_in_place_layers_get_distinct_tensors():
    m, _ = imp(LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel")
    relu = m.layer("relu1")
    assert relu.inputs == ["ip1"] and relu.outputs == ["ip1@relu1"]
    assert m.layer("ip2").inputs[0] == "ip1@relu1"


def test_leaky_relu_slope_on_integer_input(tmp_path):
    text = (LENET / "lenet.prototxt").read_text().replace(
        'name: "relu1"\n  type: "ReLU"\n  bottom: "ip1"\n  top: "ip1"\n',
        'name: "relu1"\n  type: "ReLU"\n  bottom: "ip1"\n  top: "ip1"\n  relu_param { negative_slope: 0.25 }\n')
    assert "negative_slope" in text
    deploy = tmp_path / "leaky.prototxt"
    deploy.write_text(text)
    m, _ = imp(deploy, LENET / "lenet_iter_10000.caffemodel", ristretto_path=LENET / "lenet_quantized.prototxt")
    relu = m.layer("relu1")
    assert relu.type == "PRelu"
    slope = m.tensors[relu.inputs[1]]
    assert slope.real().tolist() == [0.25] and slope.qformat.fl == 2
    out = m.tensors[relu.outputs[0]].qformat
    assert out is not None and out.fl == 0 + 2       # exact: fl_in + fl_slope
