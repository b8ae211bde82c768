"""setup.py read without building: its globals and the arguments it gives setuptools.setup."""

from __future__ import annotations

import os
import runpy

import setuptools

from .paths import ROOT


def load_setup_py() -> dict:
    """setup.py's globals plus "setup_args", the keyword arguments of its setuptools.setup call (not made)."""
    captured: dict = {}
    real = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        names = runpy.run_path(str(ROOT / "setup.py"))
    finally:
        setuptools.setup = real
        os.chdir(cwd)
    return {**names, "setup_args": captured}
