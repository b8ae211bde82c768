"""``dfxsdk quantize``: the command, its output, and clear errors for bad calibration data."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from dfxsdk import load, save

from tests.support.quantize import LENET_SCALE, lenet_float, mnist
from tests.support.testdata import LENET, MNIST, needs_testdata

pytestmark = needs_testdata(LENET, MNIST)


def cli(*argv) -> tuple[int, str, str]:
    from dfxsdk.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def float_dfx(tmp_path_factory):
    path = tmp_path_factory.mktemp("lenet") / "lenet_float.dfx"
    save(lenet_float(), path)
    return path


def write_pgm(path, img: np.ndarray) -> None:
    h, w = img.shape
    path.write_bytes(f"P5\n{w} {h}\n255\n".encode() + img.astype(np.uint8).tobytes())


def test_quantize_caffe_files_prints_formats_and_scores(tmp_path):
    out, proto = tmp_path / "q.dfx", tmp_path / "q.prototxt"
    code, stdout, stderr = cli("quantize", LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel",
                               "--input-scale", LENET_SCALE, "--calib", MNIST, "--calib-samples", 200,
                               "--eval", MNIST, "--eval-samples", 500, "--bw", 8, "--bias", "params",
                               "--emit-ristretto", proto, "--no-progress", "-o", out)
    assert code == 0, stderr
    q = load(out)
    q.validate()
    for layer in ("conv1", "conv2", "ip1", "ip2"):
        assert layer in stdout and q.ristretto_view(q.layer(layer)).bw_params == 8
    assert "top-1 accuracy on 500 samples" in stdout and "float" in stdout and "quantized" in stdout
    assert q.metadata["quantization.calibration_samples"] == "200"
    assert proto.read_text().count("ConvolutionRistretto") == 2


def test_quantize_a_dfx_with_a_search_and_an_image_folder_without_labels(float_dfx, tmp_path):
    x, _ = mnist()
    folder = tmp_path / "digits"
    folder.mkdir()
    for i in range(60):
        write_pgm(folder / f"{i:03d}.pgm", x[i, 0])
    out = tmp_path / "q.dfx"
    code, stdout, stderr = cli("quantize", float_dfx, "--calib", folder, "--search", "ristretto",
                               "--margin", 2, "--fl-rule", "maxabs", "--no-progress", "-o", out)
    assert code == 0, stderr
    assert "agreement with the float model" in stdout and "combined:" in stdout
    assert load(out).metadata["quantization.search"].startswith("ristretto")


def no_work(monkeypatch):
    """Make calibration (the first work the quantizer does) fail the test if it starts."""
    import dfx_quantizer.plugin as plugin

    def boom(*a, **k):
        raise AssertionError("calibration started")

    monkeypatch.setattr(plugin, "collect", boom)


@pytest.mark.parametrize("case", ["wrong-shape", "empty-folder", "unreadable-image", "labels-length",
                                  "image-size", "missing", "csv-with-labels", "emit-without-prototxt"])
def test_bad_calibration_data_is_refused_before_any_work(case, float_dfx, tmp_path, monkeypatch):
    no_work(monkeypatch)
    x, _ = mnist()
    extra: list = []
    if case == "wrong-shape":
        data = tmp_path / "x.npy"
        np.save(data, np.zeros((10, 3, 28, 28), np.float32))
        expect = "does not fit the input shape"
    elif case == "empty-folder":
        data = tmp_path / "empty"
        data.mkdir()
        expect = "no images"
    elif case == "unreadable-image":
        data = tmp_path / "imgs"
        data.mkdir()
        write_pgm(data / "a.pgm", x[0, 0])
        (data / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        expect = "b.png"
    elif case == "labels-length":
        data = tmp_path / "x.npy"
        np.save(data, x[:10])
        labels = tmp_path / "labels.txt"
        labels.write_text("\n".join(["1"] * 9))
        extra = ["--labels", labels]
        expect = "9 labels for 10 samples"
    elif case == "image-size":
        data = tmp_path / "big"
        data.mkdir()
        write_pgm(data / "a.pgm", np.zeros((32, 32)))
        expect = "the model wants 28x28"
    elif case == "missing":
        data = tmp_path / "nothing.npz"
        expect = "no such file"
    elif case == "csv-with-labels":
        data = MNIST
        extra = ["--labels", tmp_path / "l.txt"]
        expect = "last column"
    else:
        data = tmp_path / "x.npy"
        np.save(data, x[:10])
        extra = ["--emit-ristretto", tmp_path / "q.prototxt"]
        expect = "--prototxt"
    out = tmp_path / "q.dfx"
    code, stdout, stderr = cli("quantize", float_dfx, "--calib", data, *extra, "--no-progress", "-o", out)
    assert code == 2, (stdout, stderr)
    assert expect in stderr, stderr
    assert not out.exists()


def test_cli_reproduces_the_real_ristretto_file(tmp_path):
    """Ristretto's rule, statistics and bit widths: the emitted blocks equal lenet_quantized.prototxt's."""
    import re

    proto = tmp_path / "repro.prototxt"
    code, stdout, stderr = cli("quantize", LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel",
                               "--input-scale", LENET_SCALE, "--calib", MNIST, "--calib-samples", 640,
                               "--ristretto-stats", "--fl-rule", "ristretto", "--bw-conv", 2, "--bw-fc", 4,
                               "--bw-act", 4, "--bias", "params", "--emit-ristretto", proto, "--no-progress",
                               "-o", tmp_path / "r.dfx")
    assert code == 0, stderr

    def blocks(text: str) -> list[str]:
        return re.findall(r"quantization_param\s*\{[^}]*\}", text)

    want = blocks((LENET / "lenet_quantized.prototxt").read_text())
    assert len(want) == 4 and blocks(proto.read_text()) == want
