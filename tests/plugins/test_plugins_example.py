"""The out-of-tree example plugin (examples/npz_importer), in this process.

It is 'installed' as pip would (its dist-info on sys.path, next to the real
plugins) and used through `dfxsdk convert`, `inspect` and `run`; its error
messages name the file, layer and field. tests/plugins/test_plugins_venv.py installs
it for real with pip into a fresh virtual environment.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import dfxsdk
from dfxsdk import DataType

from tests.support.cli import cli
from tests.support.plugins import EXAMPLE, make_dist

SAMPLES = EXAMPLE / "samples"


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> Path:
    site = tmp_path / "site"
    make_dist(site, "dfx-npzgraph", "1.0.0", {"npzgraph": "dfx_npzgraph.plugin"})
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.chdir(tmp_path)
    shutil.copy(SAMPLES / "tiny_cnn.json", tmp_path)
    import runpy

    runpy.run_path(str(SAMPLES / "make_weights.py"))["main"](["make_weights.py", str(tmp_path)])
    return tmp_path


def test_sample_files_are_small_and_deterministic(work: Path, tmp_path: Path) -> None:
    import runpy

    again = tmp_path / "again"
    runpy.run_path(str(SAMPLES / "make_weights.py"))["main"](["make_weights.py", str(again)])
    for name in ("tiny_cnn.npz", "bars.npy"):
        a, b = np.load(work / name), np.load(again / name)
        if name.endswith(".npz"):
            assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
        else:
            assert np.array_equal(a, b)
        assert (work / name).stat().st_size < 4096


def test_convert_inspect_run(work: Path) -> None:
    r = cli("convert", "tiny_cnn.json", "-o", "tiny.dfx")
    assert r.code == 0, r.err
    model = dfxsdk.load("tiny.dfx", verify_checksums=True)
    assert [l.type for l in model.layers] == ["Requantize", "Conv2D", "Relu", "Pool2D", "Flatten",
                                              "FullyConnected", "Softmax"]
    w = model.tensors["conv1/weights"]
    assert w.dtype == DataType.INT8 and (w.qformat.bw, w.qformat.fl) == (8, 6)
    assert model.ristretto_view(model.layer("conv1")).fl_layer_out == 4
    assert model.preprocessing["image"].channel_order == "GRAY"
    r = cli("inspect", "tiny.dfx")
    assert r.code == 0 and "integrity: OK" in r.out and "conv1/quantize_input" in r.out
    r = cli("run", "tiny.dfx", "--input", "bars.npy", "-o", "out.npz")
    assert r.code == 0, r.err
    prob = np.load("out.npz")["prob"]
    assert prob.argmax(1).tolist() == [0, 1, 2]

    # float import, explicit weights file, and the same answer
    r = cli("convert", "tiny_cnn.json", "tiny_cnn.npz", "--npzgraph-float", "-o", "float.dfx")
    assert r.code == 0, r.err
    assert not dfxsdk.load("float.dfx").is_quantized
    cli("run", "float.dfx", "--input", "bars.npy", "-o", "outf.npz")
    np.testing.assert_allclose(np.load("outf.npz")["prob"], prob, atol=0.01)


def test_sub_byte_weights_are_packed(work: Path) -> None:
    doc = json.loads(Path("tiny_cnn.json").read_text())
    doc["layers"][0]["quant"]["params"] = [4, 2]
    Path("four.json").write_text(json.dumps(doc))
    r = cli("convert", "four.json", "-o", "four.dfx")
    assert r.code == 0, r.err
    model = dfxsdk.load("four.dfx")
    assert model.tensors["conv1/weights"].dtype == DataType.INT4
    r = cli("run", "four.dfx", "--input", "bars.npy", "-o", "o.npz")
    assert r.code == 0 and np.load("o.npz")["prob"].argmax(1).tolist() == [0, 1, 2]


def test_claims_sniff_the_content(work: Path) -> None:
    Path("other.json").write_text('{"something": "else"}')
    r = cli("convert", "other.json", "-o", "x.dfx")
    assert r.code == 2 and "no importer recognises other.json" in r.err
    with open("not_a_zip.npz", "wb") as f:  # .npy content under a .npz name
        np.save(f, np.zeros(3))
    r = cli("convert", "tiny_cnn.json", "not_a_zip.npz", "-o", "x.dfx")
    assert r.code == 2 and "no importer recognises" in r.err
    r = cli("convert", "tiny_cnn.json", "not_a_zip.npz", "--importer", "npzgraph", "-o", "x.dfx")
    assert r.code == 2 and "not_a_zip.npz: not a readable .npz archive" in r.err
    assert not Path("x.dfx").exists()


def _edit(change) -> None:
    doc = json.loads(Path("tiny_cnn.json").read_text())
    change(doc)
    Path("bad.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("change, code, message", [
    (lambda d: d["layers"][0]["quant"].update(params=[8]), 2,
     "bad.json: layer 'conv1': field 'quant.params': must be [bw, fl] with 2 <= bw <= 32, got [8]"),
    (lambda d: d["layers"][1].update(type="gelu"), 3,
     "bad.json: layer 'relu1': field 'type': layer type 'gelu' is not supported"),
    (lambda d: d["layers"][4].update(input="nowhere"), 2,
     "bad.json: layer 'fc': field 'input': input 'nowhere' is not a graph input or an earlier layer's output"),
    (lambda d: d["layers"][2].update(kernel=16), 2,
     "bad.json: layer 'pool1': field 'shape': input 8x8 is smaller than the window 16x16"),
    (lambda d: d.update(npzgraph=2), 3, "bad.json: field 'npzgraph': npzgraph version 2 is not supported"),
    (lambda d: d["layers"][3].update(type="reshape", shape=[5, -1]), 2,
     "bad.json: layer 'flat': field 'shape': cannot reshape [1, 4, 4, 4] to [N, 5, -1]"),
    (lambda d: d["layers"][0].update(name="conv9"), 2,
     "tiny_cnn.npz: field 'conv9.weight': no array 'conv9.weight' for layer 'conv9'"),
])
def test_errors_name_file_layer_field(work: Path, change, code: int, message: str) -> None:
    _edit(change)
    r = cli("convert", "bad.json", "tiny_cnn.npz", "-o", "bad.dfx")
    assert r.code == code, r.err
    assert message in r.err, r.err
    assert not Path("bad.dfx").exists()


def test_weight_shape_and_unused_arrays(work: Path) -> None:
    z = dict(np.load("tiny_cnn.npz"))
    np.savez("w1.npz", **{**z, "fc.weight": np.zeros((3, 65), np.float32)})
    r = cli("convert", "tiny_cnn.json", "w1.npz", "-o", "bad.dfx")
    assert r.code == 2 and "tiny_cnn.json: layer 'fc': field 'shape': input (1, 64) flattens to 64 values, " \
        "weights expect 65" in r.err, r.err
    np.savez("w2.npz", **{**z, "fc2.weight": np.zeros((3, 3), np.float32)})
    r = cli("convert", "tiny_cnn.json", "w2.npz", "-o", "bad.dfx")
    assert r.code == 2 and "w2.npz: arrays not used by any layer: fc2.weight" in r.err
    Path("broken.json").write_text('{"npzgraph": 1,\n "layers": [}')
    r = cli("convert", "broken.json", "tiny_cnn.npz", "-o", "bad.dfx")
    assert r.code == 2 and "broken.json: not valid JSON: Expecting value at line 2 column 13" in r.err
