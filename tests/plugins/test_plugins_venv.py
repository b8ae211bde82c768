"""Acceptance: third-party plugins installed with pip into a fresh virtual environment.

A new venv (no system site packages) gets dfxsdk's dependencies at the
versions of the running environment, then dfxsdk itself (built from a copy of
this checkout, C library included), then the example plugin of
examples/npz_importer, each with pip. That environment's own `dfxsdk` must
list the plugin, convert the sample with it, inspect the result and run it on
the numpy backend and, when the native backend is installed, on the native
one with identical integer results. The tutorial of spec/plugins.md runs there
too, its `pip install` included, exactly as printed.

Skipped (with the reason) only when pip cannot reach any package index.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.support.paths import ROOT as REPO
from tests.support.plugins import (
    EXAMPLE,
    ZEROS_NAMED_NUMPY,
    copy_tree,
    plugin_source,
    run,
    tutorial_blocks,
    venv_python,
    write_files,
)


@dataclass
class Venv:
    root: Path
    python: Path
    bin: Path
    timings: dict[str, float] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        return env

    def dfxsdk(self, *args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
        r = run([str(self.bin / "dfxsdk"), *args], cwd=cwd, env=self.env())
        if ok:
            assert r.returncode == 0, f"dfxsdk {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def pip(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return run([str(self.python), "-m", "pip", "--disable-pip-version-check", *args], cwd=cwd,
                   env=self.env())


def _pinned_requirements() -> list[str]:
    """dfxsdk's runtime dependencies at the versions installed here, plus the build tools."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = []
    for dep in deps:
        name = re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0]
        try:
            pins.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            pins.append(dep)
    for tool in ("setuptools", "wheel"):
        try:
            pins.append(f"{tool}=={md.version(tool)}")
        except md.PackageNotFoundError:
            pins.append(tool)
    return pins


def _index_unreachable(venv: Venv) -> str | None:
    """Why pip cannot reach a package index (None if it can)."""
    r = venv.pip("download", "--no-deps", "--dest", str(venv.root / "probe"), "pluggy")
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["(no output)"])[-1]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    base = tmp_path_factory.mktemp("fresh")
    root = base / "venv"
    t0 = time.perf_counter()
    v = Venv(root, venv_python(root), venv_python(root).parent)
    # Fast path: an empty venv, then pip (the version running here) installed into it by
    # this environment's pip (`pip --python`, pip >= 22.3); else the standard ensurepip.
    r = run([sys.executable, "-m", "venv", "--without-pip", str(root)])
    assert r.returncode == 0, r.stderr
    r = run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(v.python),
             "install", "--quiet", "--no-compile", f"pip=={md.version('pip')}"])
    if r.returncode != 0:
        shutil.rmtree(root)
        r = run([sys.executable, "-m", "venv", str(root)])
        assert r.returncode == 0, r.stderr
    v.timings["create venv (with pip)"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    r = v.pip("install", "--quiet", "--no-compile", *_pinned_requirements())
    if r.returncode != 0:
        reason = _index_unreachable(v)
        if reason is not None:
            pytest.skip(f"pip cannot reach any package index: {reason}")
        pytest.fail(f"installing dfxsdk's dependencies failed:\n{r.stdout}\n{r.stderr}")
    v.timings["install dependencies"] = time.perf_counter() - t0

    # dfxsdk from a clean copy of this checkout (no build products written into the repo)
    t0 = time.perf_counter()
    src = copy_tree(REPO, base / "dfxsdk-src", skip=("tests", "benchmarks", "examples", ".ci", ".venv"))
    r = v.pip("install", "--quiet", "--no-compile", "--no-deps", "--no-build-isolation", str(src))
    assert r.returncode == 0, f"pip install dfxsdk failed:\n{r.stdout}\n{r.stderr}"
    v.timings["install dfxsdk (builds the C library)"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    example = copy_tree(EXAMPLE, base / "npz_importer")
    r = v.pip("install", "--quiet", "--no-compile", "--no-build-isolation", str(example))
    assert r.returncode == 0, f"pip install of the example plugin failed:\n{r.stdout}\n{r.stderr}"
    v.timings["install the example plugin"] = time.perf_counter() - t0
    (base / "timings.json").write_text(json.dumps(v.timings, indent=2))
    print("fresh venv timings (s):", json.dumps({k: round(t, 2) for k, t in v.timings.items()}))
    return v


@pytest.fixture(scope="module")
def sample(venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("sample")
    shutil.copy(EXAMPLE / "samples" / "tiny_cnn.json", work)
    r = run([str(venv.python), str(EXAMPLE / "samples" / "make_weights.py"), str(work)], env=venv.env())
    assert r.returncode == 0, r.stderr
    return work


def test_the_environment_is_fresh(venv: Venv) -> None:
    cfg = (venv.root / "pyvenv.cfg").read_text()
    assert re.search(r"include-system-site-packages\s*=\s*false", cfg)
    names = {d["name"].lower() for d in json.loads(venv.pip("list", "--format", "json").stdout)}
    assert {"dfxsdk", "dfx-npzgraph", "numpy", "pluggy"} <= names
    assert "pytest" not in names
    r = run([str(venv.python), "-c", "import dfxsdk, dfx_npzgraph; print(dfxsdk.__file__)"], env=venv.env())
    assert r.returncode == 0 and str(venv.root) in r.stdout, r.stderr


def test_example_plugin_is_listed(venv: Venv, sample: Path) -> None:
    text = venv.dfxsdk("plugins", cwd=sample).stdout
    assert re.search(r"npzgraph 1\.0\.0 +\(package dfx-npzgraph 1\.0\.0, entry point 'npzgraph = "
                     r"dfx_npzgraph\.plugin', plugin API 1\.0\)", text), text
    assert re.search(r"importer +npzgraph +\.json \.npz", text)
    data = json.loads(venv.dfxsdk("plugins", "--json", cwd=sample).stdout)
    # (a first-party plugin whose optional dependency is not installed here may be listed as
    # failed; the ones this test relies on must not be)
    assert not [f for f in data["failed"] if f["name"] in ("npzgraph", "numpy", "native")], data["failed"]
    assert {p["name"] for p in data["plugins"]} >= {"npzgraph", "numpy", "dfx-caffe"}


def test_example_converts_inspects_and_runs_on_numpy(venv: Venv, sample: Path) -> None:
    r = venv.dfxsdk("convert", "tiny_cnn.json", "-o", "tiny.dfx", cwd=sample)
    assert "wrote tiny.dfx: 7 layers" in r.stdout
    r = venv.dfxsdk("inspect", "tiny.dfx", cwd=sample)
    assert "integrity: OK" in r.stdout and "FullyConnected" in r.stdout
    r = venv.dfxsdk("run", "tiny.dfx", "--input", "bars.npy", "--backend", "numpy",
                    "--outputs", "prob,fc", "-o", "numpy.npz", cwd=sample)
    out = np.load(sample / "numpy.npz")
    assert out["prob"].argmax(1).tolist() == [0, 1, 2]
    assert out["fc"].dtype == np.int32


def test_example_runs_on_native(venv: Venv, sample: Path) -> None:
    data = json.loads(venv.dfxsdk("plugins", "--json", cwd=sample).stdout)
    backends = {b["name"] for p in data["plugins"] for b in p["backends"]}
    if "native" not in backends:
        pytest.skip("native backend not installed")
    if not (sample / "tiny.dfx").exists():
        venv.dfxsdk("convert", "tiny_cnn.json", "-o", "tiny.dfx", cwd=sample)
    for backend in ("numpy", "native"):
        venv.dfxsdk("run", "tiny.dfx", "--input", "bars.npy", "--backend", backend,
                    "--outputs", "prob,fc,conv1", "-o", f"cmp_{backend}.npz", cwd=sample)
    a, b = np.load(sample / "cmp_numpy.npz"), np.load(sample / "cmp_native.npz")
    np.testing.assert_array_equal(a["fc"], b["fc"])        # integer codes: bit exact
    np.testing.assert_array_equal(a["conv1"], b["conv1"])
    np.testing.assert_allclose(a["prob"], b["prob"], rtol=1e-5, atol=1e-6)
    assert b["prob"].argmax(1).tolist() == [0, 1, 2]


def test_tutorial_in_the_fresh_environment(venv: Venv, tmp_path: Path) -> None:
    files, commands = tutorial_blocks()
    write_files(tmp_path, files)
    t0 = time.perf_counter()
    for command in commands:
        r = run(command, cwd=tmp_path, env=venv.env(), shell=True)
        assert r.returncode == 0, f"{command} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        if command == "dfxsdk plugins":
            assert re.search(r"mlp 0\.1\.0 +\(package mlp-dfx 0\.1\.0", r.stdout), r.stdout
            assert re.search(r"operator +mlp\.Swish", r.stdout)
    print(f"tutorial commands in the fresh venv: {time.perf_counter() - t0:.1f} s")
    assert np.load(tmp_path / "out.npz")["prob"].shape == (4, 3)
    r = run([str(venv.python), "-m", "pip", "show", "mlp-dfx"], env=venv.env())
    assert "Location: " + str(venv.root) in r.stdout.replace("\\", "/") or str(venv.root) in r.stdout


SHADOW_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "fast-numpy-backend"
version = "6.6.6"
dependencies = ["dfxsdk"]

[project.entry-points.dfxsdk]
aaa = "aaa_shadow"

[tool.setuptools]
py-modules = ["aaa_shadow"]
"""

def test_a_pip_installed_plugin_cannot_shadow_the_numpy_backend(venv: Venv, sample: Path,
                                                                  tmp_path: Path) -> None:
    """Issue 18: a package whose entry point sorts first and provides a backend named numpy."""
    pkg = tmp_path / "shadow"
    module = plugin_source("fastnp", "6.6.6", ZEROS_NAMED_NUMPY, {"backends": "[Zeros()]"})
    write_files(pkg, {"pyproject.toml": SHADOW_PYPROJECT, "aaa_shadow.py": module})
    r = venv.pip("install", "--quiet", "--no-compile", "--no-deps", "--no-build-isolation", str(pkg))
    assert r.returncode == 0, f"pip install of the shadowing plugin failed:\n{r.stdout}\n{r.stderr}"
    try:
        if not (sample / "tiny.dfx").exists():
            venv.dfxsdk("convert", "tiny_cnn.json", "-o", "tiny.dfx", cwd=sample)
        r = venv.dfxsdk("run", "tiny.dfx", "--input", "bars.npy", "--outputs", "prob", "-o", "shadow.npz",
                        cwd=sample)
        assert np.load(sample / "shadow.npz")["prob"].argmax(1).tolist() == [0, 1, 2]   # the reference ran
        assert "plugin 'aaa' (package fast-numpy-backend 6.6.6) is not used" in r.stderr
        assert "a name of dfxsdk's own plugins" in r.stderr
        data = json.loads(venv.dfxsdk("plugins", "--json", cwd=sample).stdout)
        assert [f["package"] for f in data["failed"] if f["name"] == "aaa"] == ["fast-numpy-backend"]
        numpy_owner = [p["package"] for p in data["plugins"] if any(b["name"] == "numpy" for b in p["backends"])]
        assert numpy_owner == ["dfxsdk"]
        env = dict(venv.env(), DFXSDK_DISABLE_PLUGINS="aaa")
        r = run([str(venv.bin / "dfxsdk"), "run", "tiny.dfx", "--input", "bars.npy", "-o", "shadow.npz"],
                cwd=sample, env=env)
        assert r.returncode == 0 and "aaa" not in r.stderr, r.stderr
    finally:
        venv.pip("uninstall", "--yes", "fast-numpy-backend")
