"""One build description: setup.py and CMake build libdfx from kernels/cmake/sources.cmake, and
the library the Python package loads exports only the public API."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.support.paths import KERNELS, ROOT
from tests.support.setup_py import load_setup_py


@pytest.fixture(scope="module")
def setup_py() -> dict:
    """setup.py's globals and the arguments it gives setuptools.setup (not called)."""
    return load_setup_py()


def _public_api() -> set[str]:
    header = (KERNELS / "include" / "dfx.h").read_text()
    return set(re.findall(r"\bDFX_API\b[^;(]*?\b(dfx_\w+)\s*\(", header))


def test_every_library_source_is_in_the_list(setup_py):
    lists = setup_py["LISTS"]
    listed = set(lists["DFX_SOURCES"]) | set(lists["DFX_NEON_SOURCES"]) | set(lists["DFX_NEON32_SOURCES"])
    on_disk = {p.relative_to(KERNELS).as_posix() for p in (KERNELS / "src").rglob("*.c")}
    assert listed == on_disk
    assert set(lists["DFX_DOTPROD_SOURCES"]) <= set(lists["DFX_NEON_SOURCES"])
    assert set(lists["DFX_NEON32_SIMD_SOURCES"]) < set(lists["DFX_NEON32_SOURCES"])
    assert set(lists["DFX_PORTABLE_SET_SOURCES"]) <= set(lists["DFX_SOURCES"])


def test_compile_targets_take_the_listed_kernel_sets(setup_py):
    """dfxsdk compile's kernel-set globs (ccompile.PORTABLE_SET, NEON_SET) expand to sources.cmake's sets."""
    from dfxsdk import ccompile

    lists = setup_py["LISTS"]

    def expand(patterns):
        return {p.relative_to(KERNELS).as_posix() for g in patterns for p in (KERNELS / "src").glob(g)}

    assert expand(ccompile.PORTABLE_SET) == set(lists["DFX_PORTABLE_SET_SOURCES"])
    assert expand(ccompile.NEON_SET) == set(lists["DFX_NEON_SOURCES"])


def test_setup_py_builds_the_list_with_cmakes_flags(setup_py):
    lists = setup_py["LISTS"]
    (ext,) = setup_py["setup_args"]["ext_modules"]
    simd = {"aarch64": lists["DFX_NEON_SOURCES"], "arm32": lists["DFX_NEON32_SOURCES"]}.get(setup_py["ARCH"], [])
    assert ext.sources == [f"kernels/{s}" for s in lists["DFX_SOURCES"] + simd]
    assert "-fvisibility=hidden" in ext.extra_compile_args
    assert set(lists["DFX_WARNINGS"]) <= set(ext.extra_compile_args)
    defined = {name if value is None else f"{name}={value}" for name, value in ext.define_macros}
    assert defined >= set(lists["DFX_DEFINITIONS"]) | {"DFX_BUILD_SHARED"}


@pytest.mark.parametrize("machine,is_64bit,arch", [
    ("x86_64", True, "other"), ("aarch64", True, "aarch64"), ("arm64", True, "aarch64"),
    ("armv7l", False, "arm32"), ("armv6l", False, "arm32"), ("armv8l", False, "arm32"),
    ("aarch64", False, "arm32"),  # 32-bit Raspberry Pi OS on a 64-bit kernel
])
def test_setup_py_builds_the_arm_kernels_on_arm(setup_py, machine, is_64bit, arch):
    lists = setup_py["LISTS"]
    assert setup_py["target_arch"](machine, is_64bit) == arch
    sources, defines, own = setup_py["kernel_build"](arch)
    if arch == "aarch64":
        assert {f"kernels/{s}" for s in lists["DFX_NEON_SOURCES"]} <= set(sources)
        assert own == {f"kernels/{s}": lists["DFX_DOTPROD_FLAGS"] for s in lists["DFX_DOTPROD_SOURCES"]}
    elif arch == "arm32":
        assert {f"kernels/{s}" for s in lists["DFX_NEON32_SOURCES"]} <= set(sources)
        assert set(lists["DFX_NEON32_DEFINITIONS"]) <= set(defines)
        assert own == {f"kernels/{s}": lists["DFX_NEON32_FLAGS"] for s in lists["DFX_NEON32_SIMD_SOURCES"]}
    else:
        assert sources == [f"kernels/{s}" for s in lists["DFX_SOURCES"]] and not own


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
