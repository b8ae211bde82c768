"""Builds the C library of kernels/ into the dfx_native package on ``pip install``.

The library is compiled as a plain shared object named like an extension
module (``dfx_native/_dfxnative.<abi>.so``) with setuptools' own compiler
support, so a normal and an editable install both produce it with nothing but
a C compiler; it is loaded with ctypes, never imported.
"""

from glob import glob

from setuptools import Extension, setup

SOURCES = sorted(glob("kernels/src/*.c"))

setup(
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
