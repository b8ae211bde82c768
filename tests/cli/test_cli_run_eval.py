"""dfxsdk run / dfxsdk eval on a small hand-built model."""

from __future__ import annotations

import numpy as np
import pytest

from dfxsdk import load
from dfxsdk.cli._images import read_png
from dfxsdk.cli.main import main

from tests.support.builder import fmt, small_cnn
from tests.support.cli import cli
from tests.support.images import png_bytes, run_output


@pytest.fixture()
def model_path(tmp_path):
    path = tmp_path / "tiny.dfx"
    small_cnn(path, channels=1, size=6, filters=3, classes=10, q_in=fmt(8, 4), q_w=fmt(4, 3), q_conv=fmt(8, 2),
              q_fc=fmt(8, 1), scale=1 / 256, channel_order="GRAY")
    return path


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_decoder(tmp_path, channels):
    img = np.random.default_rng(channels).integers(0, 256, (7, 9, channels), dtype=np.uint8)
    p = tmp_path / "a.png"
    p.write_bytes(png_bytes(img))
    assert np.array_equal(read_png(p.read_bytes(), p), img[:, :, :3] if channels == 4 else img)


def test_run_npy_npz_png_agree(tmp_path, model_path):
    raw = np.random.default_rng(1).integers(0, 256, (3, 1, 6, 6)).astype(np.uint8)
    np.save(tmp_path / "x.npy", raw)
    np.savez(tmp_path / "x.npz", data=raw)
    pngs = []
    for i in range(3):
        pngs += ["--input", str(tmp_path / f"{i}.png")]
        (tmp_path / f"{i}.png").write_bytes(png_bytes(raw[i].transpose(1, 2, 0)))
    outs = [run_output(model_path, tmp_path / f"out{k}.npz", *args)
            for k, args in enumerate((["--input", tmp_path / "x.npy"], ["--input", tmp_path / "x.npz"], pngs))]
    code, out, _ = cli("run", model_path, "--input", tmp_path / "x.npy", "-o", tmp_path / "again.npz")
    assert code == 0 and "top class per sample" in out
    assert outs[0].shape == (3, 10) and outs[0].dtype == np.int32
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    model = load(model_path)
    direct = model.run({"data": raw.astype(np.float32) / 256})["score"]
    assert np.array_equal(direct, outs[0])
    # one sample without the batch dimension, and float mode
    np.save(tmp_path / "one.npy", raw[0, 0])
    score = run_output(model_path, tmp_path / "f.npz", "-i", tmp_path / "one.npy", "--mode", "float")
    assert score.shape == (1, 10) and score.dtype == np.float32


def test_run_bad_input_exit_code(tmp_path, model_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((2, 5)))
    out = tmp_path / "o.npz"
    out.write_bytes(b"keep me")
    assert main(["run", str(model_path), "-i", str(tmp_path / "bad.npy"), "-o", str(out)]) == 2
    assert "bad.npy" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"


def test_eval_csv_npz_and_caffe_ties(tmp_path, model_path, capsys):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (40, 1, 6, 6))
    y = rng.integers(0, 10, 40)
    np.savetxt(tmp_path / "d.csv", np.concatenate([x.reshape(40, -1), y[:, None]], 1), delimiter=",", fmt="%d")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    assert main(["eval", str(model_path), "--data", str(tmp_path / "d.csv"), "--float", "--no-progress"]) == 0
    a = capsys.readouterr().out
    assert main(["eval", str(model_path), "--data", str(tmp_path / "d.npz"), "--float", "--batch-size", "7",
                 "--no-progress"]) == 0
    b = capsys.readouterr().out
    assert a.splitlines()[1:] == b.splitlines()[1:]
    assert "SQNR" in a and "difference" in a
    # accuracy definitions against a direct computation
    model = load(model_path)
    s = model.run({"data": x.astype(np.float32) / 256})["score"]
    mine = s[np.arange(40), y]
    caffe1 = ((s > mine[:, None]).sum(1) < 1).mean()
    argmax1 = (s.argmax(1) == y).mean()
    line = next(ln for ln in a.splitlines() if "(integer)" in ln).split()
    assert float(line[-4]) == pytest.approx(argmax1) and float(line[-3]) == pytest.approx(caffe1)


def test_eval_bad_data(tmp_path, model_path, capsys):
    (tmp_path / "d.csv").write_text("1,2,3\n")
    assert main(["eval", str(model_path), "--data", str(tmp_path / "d.csv")]) == 2
    assert "d.csv" in capsys.readouterr().err


def test_eval_without_labels_compares_and_prints_sqnr(tmp_path, model_path, capsys):
    x = np.random.default_rng(3).integers(0, 256, (12, 1, 6, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x)
    for data in ("x.npy", "x.npz"):
        for flag in (["--sqnr"], ["--float"], ["--compare", str(model_path)]):
            assert main(["eval", str(model_path), "--data", str(tmp_path / data), *flag, "--no-progress"]) == 0
            out = capsys.readouterr().out
            assert "(no labels)" in out and "SQNR against" in out and "top-1" not in out
    same = next(ln for ln in out.splitlines() if ln.startswith("argmax"))
    assert "on 12 of 12 samples" in same          # compared with itself
    # without a comparison, labels stay required
    assert main(["eval", str(model_path), "--data", str(tmp_path / "x.npz"), "--no-progress"]) == 2
    assert "x.npz" in capsys.readouterr().err
