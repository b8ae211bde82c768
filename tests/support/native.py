"""Locating (or building) the native library for the native backend tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .paths import KERNELS


def cmake_build(build_dir: Path, *options: str, target: str | None = None) -> Path:
    """Configure and build kernels/ with CMake into ``build_dir``."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    subprocess.run(["cmake", "-S", str(KERNELS), "-B", str(build_dir), *options], check=True,
                   capture_output=True)
    cmd = ["cmake", "--build", str(build_dir), "-j2"] + (["--target", target] if target else [])
    subprocess.run(cmd, check=True, capture_output=True)
    return build_dir


def native_backend(tmp_path_factory: pytest.TempPathFactory):
    """The native backend, building libdfx with CMake if the package lacks it."""
    from dfx_native import _lib

    try:
        _lib.load()
    except OSError:
        build = cmake_build(tmp_path_factory.mktemp("libdfx"), "-DDFX_BUILD_TESTS=OFF", "-DDFX_BUILD_TOOLS=OFF")
        os.environ["DFX_NATIVE_LIB"] = str(build / "libdfx.so")
        _lib.load()
    from dfx_native.backend import NativeBackend

    return NativeBackend()


def host_compiled_set() -> str:
    """The kernel set that a model compiled with ``--target portable`` (and a layer that dispatches) picks on
    this machine: on x86-64 the library's own choice (both take the best x86 set this CPU runs,
    kernels/src/arch/x86/set.c), elsewhere ``portable``."""
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        return "portable"
    from dfx_native import _lib

    try:
        lib = _lib.load()
    except OSError:
        pytest.skip("libdfx is not built: it tells which x86 kernel set this CPU runs")
    return lib.dfx_kernels_available(0).decode()
