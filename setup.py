"""Builds the C library of kernels/ into the dfx_native package on ``pip install``.

The library is compiled as a plain shared object named like an extension
module (``dfx_native/_dfxnative.<abi>.so``) with setuptools' own compiler
support, so a normal and an editable install both produce it with nothing but
a C compiler; it is loaded with ctypes, never imported.
"""

import shutil
from glob import glob
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

SOURCES = sorted(glob("kernels/src/*.c"))


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
                if f.suffix in (".c", ".h") and f.is_file():
                    out = dst / sub / f.relative_to(Path("kernels", sub))
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, out)

setup(
    cmdclass={"build_py": build_py_with_kernels},
    ext_modules=[
        Extension(
            "dfx_native._dfxnative",
            sources=SOURCES,
            include_dirs=["kernels/include", "kernels/src"],
            define_macros=[("DFX_BUILD_SHARED", "1"), ("_POSIX_C_SOURCE", "200809L"), ("_DEFAULT_SOURCE", "1")],
            extra_compile_args=["-std=c99", "-O3"],
            libraries=["m"],
            py_limited_api=False,
        )
    ],
)
