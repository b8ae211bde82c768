"""``dfxsdk convert`` with the Caffe importer: every test model, inspect, and bad inputs."""

from __future__ import annotations

import pytest

import dfxsdk

from tests.support.cli import cli
from tests.support.testdata import LENET, MTCNN, ONLY, RIST, V1, needs_testdata

pytestmark = needs_testdata()

DEPLOY = LENET / "lenet.prototxt"
WEIGHTS = LENET / "lenet_iter_10000.caffemodel"
QUANT = LENET / "lenet_quantized.prototxt"

# (files, extra args, layers that inspect must show)
REAL = {
    "lenet": ([DEPLOY, WEIGHTS], [], ["conv1", "pool2", "ip1", "relu1", "prob"]),
    "lenet-ristretto": ([DEPLOY, WEIGHTS], ["--ristretto", QUANT], ["conv1/quantize_in", "conv2", "ip2"]),
    "lenet-ristretto-alone": ([QUANT, WEIGHTS], ["--input-shape", "1,1,28,28"], ["conv1", "ip2"]),
    "lenet-train-test": ([LENET / "lenet_train_test.prototxt", WEIGHTS], ["--input-shape", "1,1,28,28"],
                         ["conv1", "ip2"]),
    "lenet-v1": ([V1 / "lenet_v1era.prototxt", V1 / "lenet_iter_10000_v1.caffemodel"], [], ["conv1", "prob"]),
    "cifar10-quick": ([V1 / "cifar10_quick.prototxt", V1 / "cifar10_quick_iter_5000.caffemodel"], [],
                      ["conv3", "ip2", "prob"]),
    "cifar10-full": ([V1 / "cifar10_full.prototxt", V1 / "cifar10_full_iter_70000.caffemodel"], [],
                     ["norm1", "norm2", "pool3", "prob"]),
    "mtcnn-det1": ([MTCNN / "det1.prototxt", MTCNN / "det1.caffemodel"],
                   ["--metadata", "layout=MATLAB-trained: transpose H and W, RGB"], ["PReLU1", "prob1"]),
    "mtcnn-det2": ([MTCNN / "det2.prototxt", MTCNN / "det2.caffemodel"], [], ["prob1"]),
    "mtcnn-det3": ([MTCNN / "det3.prototxt", MTCNN / "det3.caffemodel"], [], ["prob1"]),
    "dfp8-variant": ([RIST / "lenet_dfp8_variant_is_quantized.prototxt", WEIGHTS],
                     ["--input-shape", "1,1,28,28"], ["conv1", "ip2"]),
}
SYNTH = {
    "mobilenet-ssd": (ONLY / "MobileNetSSD_deploy.prototxt", ["conv0", "conv17_2_mbox_conf", "detection_out"]),
    "opencv-face": (ONLY / "opencv_face_detector_res10_300x300_deploy.prototxt",
                    ["data_bn", "conv4_3_norm", "detection_out"]),
    "squeezenet": (RIST / "squeezenet_v1.0_train_val.prototxt", ["fire9/concat", "conv10", "pool10"]),
    "squeezenet-dfp8": (RIST / "squeezenet_v1.0_dfp8_quantized.prototxt", ["fire3/squeeze1x1/quantize_in", "conv10"]),
}


def convert_and_inspect(tmp_path, files, extra, layers):
    out = tmp_path / "model.dfx"
    code, stdout, err = cli("convert", *files, *extra, "-o", out)
    assert code == 0, err
    assert out.exists() and "wrote" in stdout
    code, text, err = cli("inspect", out)
    assert code == 0, err
    for name in layers:
        assert f" {name} " in text, name
    assert "integrity: OK" in text or "OK" in text
    return out


@pytest.mark.parametrize("key", sorted(REAL))
def test_real_models_convert(tmp_path, key):
    files, extra, layers = REAL[key]
    out = convert_and_inspect(tmp_path, files, extra, layers)
    if key == "mtcnn-det1":
        assert dfxsdk.load(out).metadata["layout"].startswith("MATLAB")


@pytest.mark.parametrize("key", sorted(SYNTH))
def test_prototxt_only_models_convert_with_generated_weights(tmp_path, key):
    from dfx_caffe.synth import random_caffemodel

    proto, layers = SYNTH[key]
    weights = random_caffemodel(proto, tmp_path / "w.caffemodel", seed=7)
    convert_and_inspect(tmp_path, [proto, weights], [], layers)


def test_warnings_are_printed(tmp_path):
    from dfx_caffe.synth import random_caffemodel

    proto = ONLY / "opencv_face_detector_res10_300x300_deploy.prototxt"
    weights = random_caffemodel(proto, tmp_path / "w.caffemodel")
    code, _, err = cli("convert", proto, weights, "-o", tmp_path / "f.dfx")
    assert code == 0 and "warning" in err and ":1788" in err


# -- bad inputs: exit code 2, a clear message, no output file --------------------------------

def _bad(tmp_path, *args, match):
    out = tmp_path / "out.dfx"
    code, _, err = cli("convert", *args, "-o", out)
    assert code == 2, err
    for m in match:
        assert m in err, err
    assert not out.exists()
    assert not list(tmp_path.glob("*.dfx*")) or all(p.suffix != ".dfx" for p in tmp_path.iterdir())
    return err


def test_missing_file(tmp_path):
    _bad(tmp_path, DEPLOY, tmp_path / "nope.caffemodel", match=["nope.caffemodel", "no such file"])


def test_truncated_caffemodel(tmp_path):
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(WEIGHTS.read_bytes()[: 900_000])
    _bad(tmp_path, DEPLOY, cut, match=["cut.caffemodel", "truncated"])


def test_prototxt_syntax_error_has_line_number(tmp_path):
    bad = tmp_path / "bad.prototxt"
    lines = DEPLOY.read_text().splitlines()
    lines[14] = "    lr_mult: @1"   # line 15
    bad.write_text("\n".join(lines))
    _bad(tmp_path, bad, WEIGHTS, match=["bad.prototxt", "line 15", "syntax error"])


def test_blob_shape_mismatch(tmp_path):
    bad = tmp_path / "wide.prototxt"
    bad.write_text(DEPLOY.read_text().replace("num_output: 50", "num_output: 40"))
    _bad(tmp_path, bad, WEIGHTS, match=["conv2", "blob 0", "(50, 20, 5, 5)", "(40, 20, 5, 5)"])


def test_unknown_layer_type(tmp_path):
    bad = tmp_path / "odd.prototxt"
    bad.write_text(DEPLOY.read_text().replace('type: "ReLU"', 'type: "Swish"'))
    _bad(tmp_path, bad, WEIGHTS, match=["relu1", "'Swish'", "supported", "Convolution", "PriorBox"])


def test_ristretto_layer_not_in_weights(tmp_path):
    q = tmp_path / "q.prototxt"
    q.write_text(QUANT.read_text().replace('name: "conv2"\n  type: "ConvolutionRistretto"',
                                           'name: "conv2b"\n  type: "ConvolutionRistretto"'))
    _bad(tmp_path, DEPLOY, WEIGHTS, "--ristretto", q, match=["conv2b", "weights"])
    # alone (the Ristretto net is the network): the weights lack the layer too
    _bad(tmp_path, q, WEIGHTS, "--input-shape", "1,1,28,28", match=["conv2b", "lenet_iter_10000.caffemodel"])


def test_existing_output_untouched_on_failure(tmp_path):
    out = tmp_path / "keep.dfx"
    out.write_bytes(b"previous")
    code, _, _ = cli("convert", DEPLOY, tmp_path / "missing.caffemodel", "-o", out)
    assert code == 2 and out.read_bytes() == b"previous"


def test_no_importer_for_unknown_files(tmp_path):
    odd = tmp_path / "model.xyz"
    odd.write_text("x")
    code, _, err = cli("convert", odd, "-o", tmp_path / "o.dfx")
    assert code == 2 and "no importer" in err
