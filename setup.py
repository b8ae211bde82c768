"""Builds the C library of kernels/ into the dfx_native package on ``pip install``.

The library is compiled as a plain shared object named like an extension
module (``dfx_native/_dfxnative.<abi>.so``) with setuptools' own compiler
support, so a normal and an editable install both produce it with nothing but
a C compiler; it is loaded with ctypes, never imported.

What it is built from is kernels/cmake/sources.cmake, the list CMake builds:
the same sources (plus the NEON ones on AArch64, the dot-product file with its
own -march), definitions and warnings, and hidden visibility with
``DFX_BUILD_SHARED`` so that only the public ``dfx_*`` API is exported.
"""

import platform
import re
import shutil
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
NEON = platform.machine().lower() in ("aarch64", "arm64")
SOURCES = [f"kernels/{s}" for s in LISTS["DFX_SOURCES"] + (LISTS["DFX_NEON_SOURCES"] if NEON else [])]
DEFINES = LISTS["DFX_DEFINITIONS"] + (LISTS["DFX_NEON_DEFINITIONS"] if NEON else []) + ["DFX_BUILD_SHARED"]
DOTPROD = [f"kernels/{s}" for s in LISTS["DFX_DOTPROD_SOURCES"]] if NEON else []


def _macro(d: str) -> tuple[str, str | None]:
    name, _, value = d.partition("=")
    return name, value or None


class build_ext_like_cmake(build_ext):
    """Compiles the files of DFX_DOTPROD_SOURCES with DFX_DOTPROD_FLAGS, as cmake/simd.cmake does."""

    def build_extension(self, ext):
        own = [s for s in ext.sources if s in DOTPROD]
        if own:
            ext.sources = [s for s in ext.sources if s not in own]
            ext.extra_objects = list(ext.extra_objects or []) + self.compiler.compile(
                own, output_dir=self.build_temp, macros=ext.define_macros, include_dirs=ext.include_dirs,
                extra_postargs=ext.extra_compile_args + LISTS["DFX_DOTPROD_FLAGS"])
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
            extra_compile_args=["-std=c99", "-O3", "-fvisibility=hidden", "-pthread", *LISTS["DFX_WARNINGS"]],
            extra_link_args=["-pthread"],   # the session thread pool
            libraries=["m"],
            py_limited_api=False,
        )
    ],
)
