"""One build description: setup.py and CMake build libdfx from kernels/cmake/sources.cmake, and
the library the Python package loads exports only the public API."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"


def _lists() -> dict[str, list[str]]:
    text = re.sub(r"#[^\n]*", "", (KERNELS / "cmake" / "sources.cmake").read_text())
    return {name: body.split() for name, body in re.findall(r"\bset\(\s*(\w+)\s+([^)]*)\)", text)}


def _public_api() -> set[str]:
    header = (KERNELS / "include" / "dfx.h").read_text()
    return set(re.findall(r"\bDFX_API\b[^;(]*?\b(dfx_\w+)\s*\(", header))


def test_every_library_source_is_in_the_list():
    lists = _lists()
    listed = set(lists["DFX_SOURCES"]) | set(lists["DFX_NEON_SOURCES"])
    on_disk = {p.relative_to(KERNELS).as_posix() for p in (KERNELS / "src").rglob("*.c")}
    assert listed == on_disk
    assert set(lists["DFX_DOTPROD_SOURCES"]) <= set(lists["DFX_NEON_SOURCES"])
    assert set(lists["DFX_PORTABLE_SET_SOURCES"]) <= set(lists["DFX_SOURCES"])


def test_no_second_source_list():
    # CMakeLists.txt, simd.cmake and setup.py name no library source themselves
    for path in (KERNELS / "CMakeLists.txt", KERNELS / "cmake" / "simd.cmake", ROOT / "setup.py"):
        assert not re.search(r"\bsrc/[\w/]+\.c\b", path.read_text().replace("tests/", "")), path


def test_loaded_library_exports_only_the_public_api():
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is not installed")
    from dfx_native import _lib

    path = _lib.load()._name
    out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True, check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.strip()}
    api = _public_api()
    assert len(api) > 20
    assert exported <= api, sorted(exported - api)
