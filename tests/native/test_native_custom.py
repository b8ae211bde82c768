"""Custom operators in C: the example plugin's npzgraph.Clamp (examples/npz_importer) in libdfx
and in a model compiled with ``dfxsdk compile``, bit-exact with the plugin's NumPy reference
(integer codes exactly; the float Softmax after it within 1e-5, as spec/conformance/README.md
allows).

The model is the example's tiny CNN with a Clamp layer after the convolution (imported by the
plugin's importer). The C implementation (examples/npz_importer/c/npzgraph_clamp.c) is built
into a small shared object, registered with ``dfx_register_custom_op`` through the native
backend, and linked into the compiled model.
"""

from __future__ import annotations

import ctypes
import json
import runpy
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dfxsdk import plugins
from dfxsdk.ccompile import compile_model
from dfxsdk.errors import DfxUnsupportedError
from dfxsdk.io import load, save

from tests.compile.test_compile import assert_same, build, run_compiled
from tests.support.paths import KERNELS
from tests.support.plugins import EXAMPLE

CLAMP_C = EXAMPLE / "c" / "npzgraph_clamp.c"
INCLUDE = KERNELS / "include"


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch, fresh_plugins):
    """A fresh registry with the real plugins and the example plugin."""
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    import dfx_npzgraph.plugin

    mgr = plugins.get_manager()
    mgr.register(dfx_npzgraph.plugin)
    return mgr


@pytest.fixture
def clamp_model(manager, tmp_path: Path):
    """(model, path, raw images): tiny_cnn.json with npzgraph.Clamp after conv1."""
    runpy.run_path(str(EXAMPLE / "samples" / "make_weights.py"))["main"](["make_weights.py", str(tmp_path)])
    doc = json.loads((EXAMPLE / "samples" / "tiny_cnn.json").read_text())
    doc["layers"].insert(1, {"name": "clip1", "type": "clamp", "min": -0.75, "max": 1.5})
    (tmp_path / "tiny_cnn.json").write_text(json.dumps(doc))
    importer = manager.importer("npzgraph")
    model = importer.import_model([tmp_path / "tiny_cnn.json"], {})
    assert [layer.op.name for layer in model.layers if layer.type == "Custom"] == ["npzgraph.Clamp"]
    model.outputs.append("clip1")           # the Clamp's codes, compared exactly
    path = tmp_path / "clamp.dfx"
    save(model, path)
    rng = np.random.default_rng(3)
    bars = np.load(tmp_path / "bars.npy")
    noise = rng.uniform(0, 255, (13, 1, 8, 8)).astype(np.float32)
    raw = np.concatenate([bars, noise])
    return load(path), path, model.preprocessing["image"].apply(raw).astype(np.float32)


def _shared_object(tmp_path: Path) -> ctypes.CDLL:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    so = tmp_path / "libclamp.so"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-I", str(INCLUDE),
                    str(CLAMP_C), "-o", str(so)], check=True)
    return ctypes.CDLL(str(so))


def _all_outputs(model) -> list[str]:
    return [n for layer in model.layers for n in layer.outputs]


def test_native_runs_the_registered_c_operator_bit_exact(manager, clamp_model, tmp_path):
    model, _, x = clamp_model
    native = manager.backend("native")
    assert native.unsupported(model) == ["clip1 (Custom npzgraph.Clamp)"]
    with pytest.raises(DfxUnsupportedError, match="npzgraph.Clamp' version 1 has no C implementation"):
        native.run(model, {"image": x})
    so = _shared_object(tmp_path)
    native.register_custom_op("npzgraph.Clamp", 1, ctypes.cast(so.dfx_custom_npzgraph_Clamp_v1, ctypes.c_void_p).value)
    assert native.unsupported(model) == []
    names = _all_outputs(model)
    want = manager.backend("numpy").run(model, {"image": x}, outputs=names)
    got = native.run(model, {"image": x}, outputs=names)
    clip = model.layer("clip1").outputs[0]
    codes = want[clip]
    q = model.tensors[clip].qformat
    lo, hi = np.round(np.float32(-0.75) * 2.0 ** q.fl), np.round(np.float32(1.5) * 2.0 ** q.fl)
    assert codes.min() == lo and codes.max() == hi, "the inputs do not reach both bounds"
    assert_same(model, got, want, "native with npzgraph.Clamp")     # codes exactly, floats within 1e-5


def test_compiled_model_calls_the_c_operator_bit_exact(manager, clamp_model, tmp_path):
    model, path, x = clamp_model
    r = compile_model(path, tmp_path / "src", prefix="bars")
    assert "CUSTOM" in r.kernels
    assert "dfx_custom_npzgraph_Clamp_v1()" in (r.outdir / "bars.h").read_text()
    exe = build(r, tmp_path / "prog", extra=("-I", str(r.outdir / "dfx"), str(CLAMP_C)))   # dfx.h comes along
    got, _ = run_compiled(r, exe, {"image": x}, len(x))
    want = manager.backend("numpy").run(model, {"image": x}, outputs=list(model.outputs))
    assert_same(model, got, want, "compiled with npzgraph.Clamp")
