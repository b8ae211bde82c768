"""Builds the C library of kernels/ into the dfx_native package on ``pip install``.

The library is compiled as a plain shared object named like an extension
module (``dfx_native/_dfxnative.<abi>.so``) with setuptools' own compiler
support, so a normal and an editable install both produce it with nothing but
a C compiler; it is loaded with ctypes, never imported.

What it is built from is kernels/cmake/sources.cmake, the list CMake builds:
the same sources (plus the NEON ones on AArch64, the dot-product file with its
own -march; on 32-bit ARM the ARMv7 NEON ones, their SIMD files with
-mfpu=neon), definitions and warnings, and hidden visibility with
``DFX_BUILD_SHARED`` so that only the public ``dfx_*`` API is exported.
``kernel_build`` says what that is for a given CPU (tests cross-compile it).
"""

import platform
import re
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

KERNELS = Path("kernels")


def cmake_lists(path: Path) -> dict[str, list[str]]:
    """The ``set(NAME item ...)`` lists of a CMake file of literal items (cmake/sources.cmake)."""
    text = re.sub(r"#[^\n]*", "", path.read_text())
    return {name: body.split() for name, body in re.findall(r"\bset\(\s*(\w+)\s+([^)]*)\)", text)}


LISTS = cmake_lists(KERNELS / "cmake" / "sources.cmake")


def target_arch(machine: str, is_64bit: bool) -> str:
    """"aarch64", "arm32" or "other" for ``platform.machine()`` and the width of the Python building.

    A 32-bit Raspberry Pi OS on a 64-bit kernel says "aarch64" (or "armv8l"): its Python is 32-bit.
    """
    m = machine.lower()
    if m in ("aarch64", "arm64"):
        return "aarch64" if is_64bit else "arm32"
    return "arm32" if m.startswith("arm") else "other"


def kernel_build(arch: str) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """Sources, definitions and {source: its own extra flags} of the library for ``target_arch``'s ``arch``,
    as cmake/simd.cmake builds it."""
    sources, defines, own = list(LISTS["DFX_SOURCES"]), list(LISTS["DFX_DEFINITIONS"]), {}
    if arch == "aarch64":
        sources += LISTS["DFX_NEON_SOURCES"]
        defines += LISTS["DFX_NEON_DEFINITIONS"]
        own = {s: LISTS["DFX_DOTPROD_FLAGS"] for s in LISTS["DFX_DOTPROD_SOURCES"]}
    elif arch == "arm32":
        sources += LISTS["DFX_NEON32_SOURCES"]
        defines += LISTS["DFX_NEON32_DEFINITIONS"]
        own = {s: LISTS["DFX_NEON32_FLAGS"] for s in LISTS["DFX_NEON32_SIMD_SOURCES"]}
    return ([f"kernels/{s}" for s in sources], defines + ["DFX_BUILD_SHARED"],
            {f"kernels/{s}": flags for s, flags in own.items()})


ARCH = target_arch(platform.machine(), sys.maxsize > 2**32)
SOURCES, DEFINES, OWN_FLAGS = kernel_build(ARCH)
#: what every file is compiled with (tests cross-compile with these too)
COMPILE_ARGS = ["-std=c99", "-O3", "-fvisibility=hidden", "-pthread", *LISTS["DFX_WARNINGS"]]
LINK_ARGS = ["-pthread"]   # the session thread pool


def _macro(d: str) -> tuple[str, str | None]:
    name, _, value = d.partition("=")
    return name, value or None


class build_ext_like_cmake(build_ext):
    """Compiles the files of OWN_FLAGS with their own flags (DFX_DOTPROD_FLAGS, DFX_NEON32_FLAGS), as
    cmake/simd.cmake does."""

    def build_extension(self, ext):
        for flags in {tuple(f) for f in OWN_FLAGS.values()}:
            own = [s for s in ext.sources if tuple(OWN_FLAGS.get(s, ())) == flags]
            ext.sources = [s for s in ext.sources if s not in own]
            ext.extra_objects = list(ext.extra_objects or []) + self.compiler.compile(
                own, output_dir=self.build_temp, macros=ext.define_macros, include_dirs=ext.include_dirs,
                extra_postargs=ext.extra_compile_args + list(flags))
        super().build_extension(ext)


class build_py_with_kernels(build_py):
    """Also ship the C sources (kernels/src, kernels/include) as dfxsdk/_kernels: ``dfxsdk compile``
    copies the kernels a model needs from there (an editable install reads kernels/ directly)."""

    def run(self):
        super().run()
        if self.editable_mode:
            return
        dst = Path(self.build_lib) / "dfxsdk" / "_kernels"
        shutil.rmtree(dst, ignore_errors=True)
        for sub in ("src", "include"):
            for f in sorted(Path("kernels", sub).rglob("*")):
                if f.suffix in (".c", ".h", ".def") and f.is_file():
                    out = dst / sub / f.relative_to(Path("kernels", sub))
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, out)


setup(
    cmdclass={"build_py": build_py_with_kernels, "build_ext": build_ext_like_cmake},
    ext_modules=[
        Extension(
            "dfx_native._dfxnative",
            sources=SOURCES,
            include_dirs=["kernels/include", "kernels/src"],
            define_macros=[_macro(d) for d in DEFINES],
            extra_compile_args=COMPILE_ARGS,
            extra_link_args=LINK_ARGS,
            libraries=["m"],
            py_limited_api=False,
        )
    ],
)
