"""The installed C library: `cmake --install` into a temporary prefix, then a program of one's own
(kernels/examples/classify.c) built against it with find_package(dfx CONFIG) and with pkg-config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.native import cmake_build
from tests.support.paths import KERNELS

EXAMPLES = KERNELS / "examples"
WANT = "class 2: plus sign"


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("install")
    build = cmake_build(work / "build", "-DDFX_BUILD_TESTS=OFF", "-DCMAKE_BUILD_TYPE=Release")
    subprocess.run(["cmake", "--install", str(build), "--prefix", str(work / "prefix")], check=True,
                   capture_output=True)
    return work / "prefix"


def _header_version() -> str:
    """MAJOR.MINOR.0 of kernels/include/dfx.h (the version CMake and dfx.pc take from it)."""
    text = (KERNELS / "include" / "dfx.h").read_text()
    major, minor = (re.search(rf"#define DFX_VERSION_{k} (\d+)", text).group(1) for k in ("MAJOR", "MINOR"))
    return f"{major}.{minor}.0"


def _classify(exe: Path, env: dict | None = None) -> str:
    args = [str(exe), str(EXAMPLES / "data" / "tiny_shapes.dfx"), str(EXAMPLES / "data" / "plus_sign.u8")]
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_installed_files(prefix):
    lib = next(p for p in ("lib", "lib64", "lib/x86_64-linux-gnu") if (prefix / p / "cmake" / "dfx").is_dir())
    for name in ("dfxConfig.cmake", "dfxConfigVersion.cmake", "dfxTargets.cmake"):
        assert (prefix / lib / "cmake" / "dfx" / name).is_file(), name
    assert (prefix / lib / "pkgconfig" / "dfx.pc").is_file()
    assert (prefix / "include" / "dfx.h").is_file()
    proc = subprocess.run([str(prefix / "bin" / "dfx-run"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: dfx-run" in proc.stdout  # finds its libdfx (RPATH $ORIGIN)


def test_cmake_consumer_with_find_package(prefix, tmp_path):
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(EXAMPLES), "-B", str(build), f"-DCMAKE_PREFIX_PATH={prefix}"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    assert _classify(build / "classify").startswith(WANT)


def test_pkg_config_consumer(prefix, tmp_path):
    if shutil.which("pkg-config") is None:
        pytest.skip("pkg-config is not installed (.ci/install-cross.sh installs it)")
    pc_dirs = [str(p.parent) for p in prefix.rglob("dfx.pc")]
    env = {**os.environ, "PKG_CONFIG_PATH": os.pathsep.join(pc_dirs)}
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "dfx"], capture_output=True, text=True, env=env,
                           check=True).stdout.split()
    assert subprocess.run(["pkg-config", "--modversion", "dfx"], capture_output=True, text=True, env=env,
                          check=True).stdout.strip() == _header_version()
    exe = tmp_path / "classify"
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-std=c99", str(EXAMPLES / "classify.c"), "-o", str(exe), *flags], check=True,
                   capture_output=True)
    libdir = next(f[2:] for f in flags if f.startswith("-L"))
    assert _classify(exe, {**os.environ, "LD_LIBRARY_PATH": libdir}).startswith(WANT)
