"""The tutorial of spec/plugins.md, run exactly as printed.

Its code blocks marked ``# tutorial: PATH`` are written to a temporary
directory; the package is 'installed' as pip would (a dist-info with its
entry point on sys.path) and every ``# tutorial: run`` command is executed:
``dfxsdk ...`` through the CLI in this process, ``python FILE`` as a script.
(tests/plugins/test_plugins_venv.py runs the same commands, pip install included, in
a fresh virtual environment.) The reference part of the document is checked
against the code: every hook and every public member of the provider classes
is described.
"""

from __future__ import annotations

import inspect
import re
import runpy
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

import dfxsdk
from dfxsdk import hookspecs, providers

from tests.support.cli import cli
from tests.support.plugins import PLUGINS_MD, make_dist, tutorial_blocks, write_files


def test_tutorial_blocks_are_complete() -> None:
    files, commands = tutorial_blocks()
    assert set(files) == {"mlp-dfx/pyproject.toml", "mlp-dfx/mlp_dfx/__init__.py",
                          "mlp-dfx/mlp_dfx/importer.py", "mlp-dfx/mlp_dfx/swish.py",
                          "mlp-dfx/mlp_dfx/plugin.py", "make_mlp.py", "mlp-dfx/tests/test_mlp.py"}
    assert commands[0] == "pip install ./mlp-dfx"
    assert "dfxsdk plugins" in commands
    assert any(c.startswith("dfxsdk convert") for c in commands)
    assert any(c.startswith("dfxsdk inspect") for c in commands)
    assert any(c.startswith("dfxsdk run") for c in commands)


@pytest.fixture
def tutorial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> Path:
    """The tutorial's files in tmp_path, its package 'installed', a fresh registry, cwd = tmp_path."""
    files, _ = tutorial_blocks()
    write_files(tmp_path, files)
    for mod in [m for m in sys.modules if m == "mlp_dfx" or m.startswith("mlp_dfx.")]:
        monkeypatch.delitem(sys.modules, mod)
    site = tmp_path / "site"
    make_dist(site, "mlp-dfx", "0.1.0", {"mlp": "mlp_dfx.plugin"})
    monkeypatch.syspath_prepend(str(tmp_path / "mlp-dfx"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_tutorial_runs_as_printed(tutorial: Path) -> None:
    _, commands = tutorial_blocks()
    outputs = {}
    for command in commands:
        argv = shlex.split(command)
        if argv[:2] == ["pip", "install"]:
            continue  # done by the fixture (and for real in test_plugins_venv.py)
        if argv[0] == "python":
            runpy.run_path(argv[1], run_name="__main__")
            continue
        assert argv[0] == "dfxsdk", command
        r = cli(*argv[1:])
        assert r.code == 0, f"{command}: {r.err}"
        outputs[command] = r.out
    listing = outputs["dfxsdk plugins"]
    assert re.search(r"mlp 0\.1\.0 +\(package mlp-dfx 0\.1\.0", listing)
    assert re.search(r"importer +mlp +\.npz", listing)
    assert re.search(r"operator +mlp\.Swish", listing)
    assert "failed" not in listing.split("\n")[0] or " 0 failed" in listing.split("\n")[0]
    inspected = next(v for k, v in outputs.items() if k.startswith("dfxsdk inspect"))
    assert "integrity: OK" in inspected and "Custom" in inspected

    # the results are what the tutorial's network computes
    z = np.load("mlp.npz")
    x = np.load("x.npy")
    h = x @ z["layer0.weight"].T + z["layer0.bias"]
    h = h / (1 + np.exp(-h))
    logits = h @ z["layer1.weight"].T + z["layer1.bias"]
    e = np.exp(logits - logits.max(1, keepdims=True))
    expected = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(np.load("out.npz")["prob"], expected, rtol=1e-5, atol=1e-6)
    # the int8-weight variant: smaller weights, close results
    m8 = dfxsdk.load("mlp8.dfx")
    assert m8.tensors["layer0/weight"].dtype == dfxsdk.DataType.INT8
    np.testing.assert_allclose(np.load("out8.npz")["prob"], expected, atol=0.03)


def test_tutorial_plugin_errors(tutorial: Path) -> None:
    runpy.run_path("make_mlp.py", run_name="__main__")
    r = cli("convert", "mlp.npz", "--mlp-weight-bits", "1", "-o", "bad.dfx")
    assert r.code == 2 and "--mlp-weight-bits must be 2..16, got 1" in r.err
    np.savez("gelu.npz", __mlp__=np.array("gelu"), **{"layer0.weight": np.eye(2, dtype=np.float32)})
    r = cli("convert", "gelu.npz", "-o", "bad.dfx")
    assert r.code == 3 and "gelu.npz: field '__mlp__': hidden activation 'gelu' is not supported" in r.err
    np.savez("plain.npz", a=np.zeros(2))
    r = cli("convert", "plain.npz", "-o", "bad.dfx")
    assert r.code == 2 and "no importer recognises plain.npz" in r.err
    Path("notes.npz").write_text("not a zip")
    r = cli("convert", "notes.npz", "--importer", "mlp", "-o", "bad.dfx")
    assert r.code == 2 and "notes.npz: not an .npz archive" in r.err
    assert not Path("bad.dfx").exists()


def test_tutorial_test_file_passes(tutorial: Path) -> None:
    module = runpy.run_path(str(tutorial / "mlp-dfx" / "tests" / "test_mlp.py"))
    out = tutorial / "t"
    out.mkdir()
    module["test_import_and_run"](out)


# -- the reference is in sync with the code ------------------------------------------

def _public_members(cls: type) -> set[str]:
    names = set()
    for name, _ in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        if any(name in vars(base) for base in cls.__mro__ if base.__module__ == providers.__name__):
            names.add(name)
    return names


def test_reference_documents_every_hook_and_member() -> None:
    text = PLUGINS_MD.read_text()
    hooks = [n for n, f in vars(hookspecs).items() if n.startswith("dfxsdk_") and callable(f)]
    assert len(hooks) == 5
    for hook in hooks:
        assert f"**`{hook}()`**" in text, f"hook {hook} is not described"
    for cls in (providers.Importer, providers.Quantizer, providers.Backend, providers.CustomOperator):
        section = text.split(f"### `{cls.__name__}")[1].split("\n### ")[0]
        for member in _public_members(cls):
            assert f"`{member}" in section, f"{cls.__name__}.{member} is not in its reference table"
    for f in ("name", "version", "api_version", "description", "extra"):
        assert f"| `{f}` |" in text.split("### `PluginInfo`")[1].split("\n### ")[0]
    for f in ("batches", "labels", "num_samples"):
        assert f"`{f}`" in text
    registry = text.split("### The registry")[1].split("\n### ")[0]
    for name in ("get_manager", "PluginManager", "register", "load_entry_points", "plugins", "failures",
                 "importer_for", "owner", "call_importer", "call_quantizer", "guard", "plugin_guard",
                 "api_compatible", "ENTRY_POINT_GROUP", "backend", "quantizer", "importer"):
        assert f"`{name}" in registry or f".{name}" in registry, name
    assert "PLUGIN_API_VERSION" in text and "**1.0**" in text
    assert hookspecs.PLUGIN_API_VERSION == (1, 0)
    for name in dfxsdk.__all__:
        if name != "__version__" and not name.startswith("Dfx"):
            assert f"`{name}`" in text, f"public name {name} is not in the stability statement"
