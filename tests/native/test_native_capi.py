"""The C library on its own: CMake build, the CTest program, and a short fuzz run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.native import cmake_build
from tests.support.paths import KERNELS, ROOT


def test_ctest_loads_from_memory_buffer_and_checks_outputs(tmp_path):
    build = cmake_build(tmp_path / "build", "-DDFX_BUILD_TESTS=ON")
    run = subprocess.run(["ctest", "--output-on-failure"], cwd=build, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "100% tests passed" in run.stdout


def test_test_model_is_current(tmp_path):
    """kernels/tests/data is reproducible from make_test_model.py."""
    subprocess.run([sys.executable, str(KERNELS / "tests" / "make_test_model.py"), str(tmp_path)], check=True,
                   env={**os.environ})
    for name in ("tiny_lenet.dfx", "tiny_lenet.dfx.expected"):
        assert (tmp_path / name).read_bytes() == (KERNELS / "tests" / "data" / name).read_bytes(), name


def test_fuzz_short_run_under_sanitizers(tmp_path):
    seeds = sorted((ROOT / "spec" / "conformance").glob("*.dfx")) + [KERNELS / "tests" / "data" / "tiny_lenet.dfx"]
    try:
        build = cmake_build(tmp_path / "fuzz", "-DDFX_BUILD_FUZZ=ON", "-DDFX_BUILD_TESTS=OFF",
                            "-DDFX_BUILD_TOOLS=OFF", target="dfx-fuzz")
    except subprocess.CalledProcessError as exc:  # compiler without sanitizers
        pytest.skip(f"cannot build the sanitizer fuzz driver: {exc.stderr[-300:]!r}")
    iters = os.environ.get("DFX_FUZZ_ITERATIONS", "5000")
    run = subprocess.run([str(build / "dfx-fuzz"), iters, "1", *map(str, seeds)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ERROR" not in run.stderr and "runtime error" not in run.stderr, run.stderr[-3000:]
    assert f"{iters} iterations" in run.stdout
