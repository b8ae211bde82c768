"""Ristretto import: exact bw/fl, Ristretto's weight quantization, packed sizes, refusals."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import dfxsdk
from dfxsdk import fixedpoint
from dfxsdk.errors import DfxImportError, DfxUnsupportedError
from dfxsdk.formats import DataType, QFormat, Rounding

from tests.support.cli import cli
from tests.support.testdata import LENET, LENET_CAFFEMODEL_SIZE, RIST, needs_testdata

pytestmark = needs_testdata()

DEPLOY = LENET / "lenet.prototxt"
WEIGHTS = LENET / "lenet_iter_10000.caffemodel"
QUANT = LENET / "lenet_quantized.prototxt"


def ristretto_params(text: str) -> dict[str, dict[str, int]]:
    """quantization_param of every layer, read from the text with plain regexes (independent of the importer)."""
    out = {}
    for block in re.findall(r"layer\s*\{(.*?)\n\}", text, re.S):
        name = re.search(r'name:\s*"([^"]+)"', block).group(1)
        qp = re.search(r"quantization_param\s*\{(.*?)\}", block, re.S)
        if qp:
            out[name] = {k: int(v) for k, v in re.findall(r"(\w+):\s*(-?\d+)", qp.group(1))}
    return out


def float_blobs(layer: str) -> list[np.ndarray]:
    from dfx_caffe import parse

    nf = parse.read_binary(WEIGHTS)
    lp = next(l for l in nf.net.layer if l.name == layer)
    return [parse.blob_array(b).reshape(parse.blob_shape(b)[0]) for b in lp.blobs]


@pytest.fixture(scope="module")
def lenet_q():
    from dfx_caffe.plugin import import_caffe

    return import_caffe([DEPLOY, WEIGHTS], ristretto_path=QUANT)


def test_every_layer_has_the_exact_bw_fl_of_the_prototxt(lenet_q):
    expected = ristretto_params(QUANT.read_text())
    assert set(expected) == {"conv1", "conv2", "ip1", "ip2"}
    assert expected["ip2"]["fl_layer_out"] == -1          # the negative fl is really there
    for name, qp in expected.items():
        view = lenet_q.ristretto_view(lenet_q.layer(name))
        assert view is not None, name
        assert (view.bw_layer_in, view.fl_layer_in) == (qp["bw_layer_in"], qp["fl_layer_in"]), name
        assert (view.bw_layer_out, view.fl_layer_out) == (qp["bw_layer_out"], qp["fl_layer_out"]), name
        assert (view.bw_params, view.fl_params) == (qp["bw_params"], qp["fl_params"]), name
        layer = lenet_q.layer(name)
        bias = lenet_q.tensors[layer.inputs[2]]
        assert (bias.qformat.bw, bias.qformat.fl) == (qp["bw_params"], qp["fl_params"]), name


def test_integer_weights_equal_ristretto_quantization(lenet_q):
    for name, qp in ristretto_params(QUANT.read_text()).items():
        fmt = QFormat(qp["bw_params"], qp["fl_params"], Rounding.HALF_AWAY_FROM_ZERO)
        layer = lenet_q.layer(name)
        for tensor_name, w in zip(layer.inputs[1:], float_blobs(name)):
            t = lenet_q.tensors[tensor_name]
            assert t.qformat.rounding is Rounding.HALF_AWAY_FROM_ZERO
            assert t.dtype is DataType.for_bw(qp["bw_params"], packed=True)
            assert np.array_equal(np.asarray(t.data, np.int64), fixedpoint.quantize(w, fmt)), tensor_name
            # Ristretto's own float formula: clamp, scale, C round() (half away from zero), rescale
            lo, hi = -(2.0 ** (fmt.bw - 1)) * 2.0 ** -fmt.fl, (2.0 ** (fmt.bw - 1) - 1) * 2.0 ** -fmt.fl
            x = np.clip(w.astype(np.float64), lo, hi) / 2.0 ** -fmt.fl
            ref = np.sign(x) * np.floor(np.abs(x) + 0.5) * 2.0 ** -fmt.fl
            assert np.array_equal(t.real(), ref), tensor_name


def test_input_requantize_and_activation_formats(lenet_q):
    first = lenet_q.layers[0]
    assert first.type == "Requantize" and first.origin == "conv1" and first.inputs == ["data"]
    assert lenet_q.tensors["data"].dtype is DataType.FLOAT32
    # pool1 and relu1 keep their input's format exactly; conv2 needs no requantize
    assert lenet_q.tensors["pool1"].qformat == lenet_q.tensors["conv1"].qformat
    assert lenet_q.tensors["ip1@relu1"].qformat == lenet_q.tensors["ip1"].qformat
    assert [l.type for l in lenet_q.layers].count("Requantize") == 1
    assert lenet_q.tensors["prob"].qformat is None
    assert lenet_q.preprocessing["data"].scale == [0.00390625]


def test_packed_file_size_ratio(tmp_path):
    out = tmp_path / "lenet_q.dfx"
    code, stdout, err = cli("convert", DEPLOY, WEIGHTS, "--ristretto", QUANT, "-o", out)
    assert code == 0, err
    ratio = out.stat().st_size / LENET_CAFFEMODEL_SIZE
    assert ratio <= 0.13, ratio
    loaded = dfxsdk.load(out, verify_checksums=True)
    assert loaded.tensors["conv2/weights"].dtype is DataType.INT2
    assert loaded.tensors["ip1/weights"].dtype is DataType.INT4
    view = loaded.ristretto_view(loaded.layer("ip2"))
    assert (view.bw_layer_out, view.fl_layer_out) == (4, -1)


def test_eight_bit_variant_size_ratio(tmp_path):
    text = re.sub(r"(bw_\w+):\s*\d+", r"\1: 8", QUANT.read_text())
    q8 = tmp_path / "lenet_q8.prototxt"
    q8.write_text(text)
    out = tmp_path / "lenet_q8.dfx"
    code, _, err = cli("convert", DEPLOY, WEIGHTS, "--ristretto", q8, "-o", out)
    assert code == 0, err
    ratio = out.stat().st_size / LENET_CAFFEMODEL_SIZE
    assert ratio <= 0.26, ratio
    assert dfxsdk.load(out).tensors["ip1/weights"].dtype is DataType.INT8


def test_ristretto_prototxt_alone_is_a_network():
    from dfx_caffe.plugin import import_caffe

    alone = import_caffe([QUANT, WEIGHTS], input_shape=(1, 1, 28, 28))
    combined = import_caffe([DEPLOY, WEIGHTS], ristretto_path=QUANT)
    for name in ("conv1", "conv2", "ip1", "ip2"):
        assert alone.ristretto_view(alone.layer(name)) == combined.ristretto_view(combined.layer(name))
        for t in alone.layer(name).inputs[1:]:
            assert np.array_equal(alone.tensors[t].data, combined.tensors[t].data)
    assert alone.outputs == ["ip2"]          # the train/test net ends at the loss's bottom
    with pytest.raises(DfxImportError, match="input-shape"):
        import_caffe([QUANT, WEIGHTS])       # LMDB Data layer without crop_size: shape unknown


def _variant(tmp_path, old: str, new: str, count: int = 1):
    text = QUANT.read_text()
    assert old in text
    path = tmp_path / "variant.prototxt"
    path.write_text(text.replace(old, new, count))
    return path


@pytest.mark.parametrize("old,new,match", [
    ("    bw_layer_in: 4\n", "    precision: MINIFLOAT\n    exp_bits: 9\n", "exp_bits"),
    ("    bw_layer_in: 4\n", "    rounding_scheme: STOCHASTIC\n    bw_layer_in: 4\n", "STOCHASTIC"),
])
def test_refused_modes_exit_3(tmp_path, old, new, match):
    q = _variant(tmp_path, old, new)
    out = tmp_path / "x.dfx"
    code, _, err = cli("convert", DEPLOY, WEIGHTS, "--ristretto", q, "-o", out)
    assert code == 3 and match in err and "conv1" in err
    assert not out.exists()


def test_lrn_ristretto_refused(tmp_path):
    from dfx_caffe.plugin import import_caffe

    text = DEPLOY.read_text().replace('  name: "prob"\n  type: "Softmax"',
                                      '  name: "prob"\n  type: "LRNRistretto"')
    bad = tmp_path / "lrn.prototxt"
    bad.write_text(text.replace('bottom: "ip2"\n  top: "prob"', 'bottom: "conv1"\n  top: "prob"'))
    with pytest.raises(DfxUnsupportedError, match="minifloat"):
        import_caffe([bad, WEIGHTS])


def test_mismatch_between_ristretto_and_deploy(tmp_path):
    from dfx_caffe.plugin import import_caffe

    renamed = _variant(tmp_path, 'name: "ip1"\n  type: "FcRistretto"', 'name: "ip1x"\n  type: "FcRistretto"')
    with pytest.raises(DfxImportError, match="ip1x") as info:
        import_caffe([DEPLOY, WEIGHTS], ristretto_path=renamed)
    assert "weights" in str(info.value)
    wrong = _variant(tmp_path, "num_output: 500", "num_output: 400")
    with pytest.raises(DfxImportError, match="num_output"):
        import_caffe([DEPLOY, WEIGHTS], ristretto_path=wrong)


def test_squeezenet_dfp8(tmp_path):
    from dfx_caffe.plugin import import_caffe
    from dfx_caffe.synth import random_caffemodel

    proto = RIST / "squeezenet_v1.0_dfp8_quantized.prototxt"
    weights = random_caffemodel(proto, tmp_path / "sq.caffemodel", seed=1)
    m = import_caffe([proto, weights])
    expected = ristretto_params(proto.read_text())
    assert len(expected) == 26
    for name, qp in expected.items():
        v = m.ristretto_view(m.layer(name))
        assert (v.bw_layer_in, v.fl_layer_in, v.bw_layer_out, v.fl_layer_out, v.bw_params, v.fl_params) == \
            (qp["bw_layer_in"], qp["fl_layer_in"], qp["bw_layer_out"], qp["fl_layer_out"],
             qp["bw_params"], qp["fl_params"]), name
    # Concat of fl -4 and -3 inputs: exact 9-bit fl -3, then a Requantize for the next fire module
    assert m.tensors["fire2/concat"].qformat.describe() == "9/-3"
    rq = m.layer("fire3/squeeze1x1/quantize_in")
    assert rq.type == "Requantize" and rq.inputs == ["fire2/concat"]
    assert m.preprocessing["data"].mean == [104.0, 117.0, 123.0]
    assert m.tensors["data"].shape == (1, 3, 227, 227)
    assert m.outputs == ["pool10"] and m.tensors["pool10"].qformat is None   # global AVE pool: float


def test_ave_pool_takes_the_format_of_its_ristretto_consumer(tmp_path):
    from dfx_caffe.plugin import import_caffe

    text = QUANT.read_text().replace('name: "pool2"\n  type: "Pooling"\n  bottom: "conv2"\n  top: "pool2"\n'
                                     '  pooling_param {\n    pool: MAX', 'name: "pool2"\n  type: "Pooling"\n'
                                     '  bottom: "conv2"\n  top: "pool2"\n  pooling_param {\n    pool: AVE')
    assert "pool: AVE" in text
    q = tmp_path / "ave.prototxt"
    q.write_text(text)
    m = import_caffe([DEPLOY, WEIGHTS], ristretto_path=q)
    assert m.tensors["pool2"].qformat.describe() == "4/0"
    assert m.layer("ip1").inputs[0] == "pool2"
    assert not any(l.name == "ip1/quantize_in" for l in m.layers)


def test_legacy_binary_field_numbers(tmp_path):
    """quantization_param under 145 (V1 numbering) or 147/148 in a caffemodel is decoded, not warned about."""
    from google.protobuf.internal import encoder

    from dfx_caffe import parse
    from dfx_caffe._proto import caffe_pb2 as pb

    def field(number: int, payload: bytes) -> bytes:
        return encoder.TagBytes(number, 2) + encoder._VarintBytes(len(payload)) + payload

    net = pb.NetParameter(name="t")
    layer = pb.LayerParameter(name="conv1", type="ConvolutionRistretto")
    v1 = pb.QuantizationParameterV1(bw_layer_out=8, fl_layer_out=-2, bw_params=4, fl_params=5).SerializeToString()
    raw_layer = layer.SerializeToString() + field(145, v1)
    layer2 = pb.LayerParameter(name="conv2", type="ConvolutionRistretto")
    v2 = pb.QuantizationParameter(bw_layer_in=8, fl_layer_in=3).SerializeToString()
    raw_layer2 = layer2.SerializeToString() + field(147, v2)
    raw = net.SerializeToString() + field(100, raw_layer) + field(100, raw_layer2)
    path = tmp_path / "legacy.caffemodel"
    path.write_bytes(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nf = parse.read_binary(path)
    q1, q2 = nf.legacy_quantization["conv1"], nf.legacy_quantization["conv2"]
    assert (q1.bw_layer_out, q1.fl_layer_out, q1.bw_params, q1.fl_params) == (8, -2, 4, 5)
    assert (q2.bw_layer_in, q2.fl_layer_in) == (8, 3)
