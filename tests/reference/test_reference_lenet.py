"""Acceptance: the real Ristretto LeNet, integer run == simulation on 5000 MNIST digits."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from dfxsdk.fixedpoint import dequantize

from tests.support.testdata import LENET, MNIST, needs_testdata

pytestmark = needs_testdata(LENET, MNIST)


@pytest.fixture(scope="module")
def models():
    caffe = pytest.importorskip("dfx_caffe.plugin", reason="the Caffe importer plugin is not installed")
    weights = LENET / "lenet_iter_10000.caffemodel"
    quant = caffe.import_caffe([LENET / "lenet.prototxt", weights],
                               ristretto_path=LENET / "lenet_quantized.prototxt")
    flt = caffe.import_caffe([LENET / "lenet.prototxt", weights])
    return quant, flt


@pytest.fixture(scope="module")
def mnist():
    with gzip.open(MNIST, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64)


def test_integer_equals_simulation_on_all_digits(models, mnist):
    quant, flt = models
    x_raw, labels = mnist
    assert len(labels) == 5000
    ints = [n for layer in quant.layers for n in layer.outputs if quant.tensors[n].qformat is not None]
    assert "ip2" in ints
    scores_int, scores_float = [], []
    for s in range(0, len(labels), 500):
        x = quant.preprocessing["data"].apply(x_raw[s:s + 500])
        got = quant.run({"data": x}, outputs=ints + ["prob"])
        sim = quant.run({"data": x}, mode="simulate", outputs=ints + ["prob"])
        for n in ints:
            real = dequantize(got[n], quant.tensors[n].qformat, dtype=np.float64)
            assert np.array_equal(real, sim[n]), f"tensor {n}, digits {s}..{s + 499}"
        np.testing.assert_allclose(got["prob"], sim["prob"], rtol=1e-5, atol=1e-6)
        scores_int.append(got["ip2"])
        scores_float.append(flt.run({"data": x}, mode="float")["prob"])
    acc_int = (np.concatenate(scores_int).argmax(1) == labels).mean()
    acc_float = (np.concatenate(scores_float).argmax(1) == labels).mean()
    assert acc_float > 0.99            # the float network is about 0.999 on these digits
    assert acc_int > 0.9               # Ristretto's 2/4-bit LeNet, error margin 3 %


def test_cli_eval_reports_float_and_ristretto_accuracy(models, tmp_path, capsys):
    from dfxsdk import save
    from dfxsdk.cli.main import main

    quant, _ = models
    path = tmp_path / "lenet.dfx"
    save(quant, path)
    rc = main(["eval", str(path), "--data", str(MNIST), "--float", "--limit", "1000", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "lenet.dfx (integer)" in out and "lenet.dfx (float)" in out and "difference" in out
    assert "SQNR" in out and "ip2" in out
