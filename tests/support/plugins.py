"""Helpers for the plugin tests: fake installed distributions, the tutorial code blocks of
spec/plugins.md, and fresh virtual environments."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from .paths import EXAMPLES, SPEC

PLUGINS_MD = SPEC / "plugins.md"
EXAMPLE = EXAMPLES / "npz_importer"


def make_dist(site: Path, dist: str, version: str, entry_points: dict[str, str],
              modules: dict[str, str] | None = None) -> Path:
    """Write a minimal installed distribution into ``site`` (a sys.path entry).

    ``modules`` maps a module file ("pkg/mod.py") to its source; the
    dist-info declares ``entry_points`` in the ``dfxsdk`` group, as pip would.
    """
    for rel, src in (modules or {}).items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(src))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    eps = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[dfxsdk]\n{eps}")
    importlib.invalidate_caches()
    return info


# -- the tutorial in spec/plugins.md ---------------------------------------------

_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_MARK = re.compile(r"^# tutorial: (\S+)\n")


def tutorial_blocks(text: str | None = None) -> tuple[dict[str, str], list[str]]:
    """The tutorial's files (path -> text, exactly as printed) and its shell commands, in order."""
    text = PLUGINS_MD.read_text() if text is None else text
    files: dict[str, str] = {}
    commands: list[str] = []
    for _lang, body in _BLOCK.findall(text):
        m = _MARK.match(body)
        if not m:
            continue
        if m.group(1) == "run":
            commands += [line for line in body[m.end():].splitlines()
                         if line.strip() and not line.lstrip().startswith("#")]
        else:
            assert m.group(1) not in files, f"tutorial file {m.group(1)} printed twice"
            files[m.group(1)] = body
    return files, commands


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# -- fresh virtual environments -----------------------------------------------------

def copy_tree(src: Path, dst: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """Copy a source tree without build products, caches or ``skip``ped top-level entries."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".venv", ".git",
                                    ".pytest_cache", ".hypothesis", "*.pyc", "*.so", "*.dfx")

    def _ignore(directory: str, names: list[str]) -> set[str]:
        out = set(ignore(directory, names))
        if Path(directory) == src:
            out |= {n for n in names if n in skip}
        return out

    shutil.copytree(src, dst, ignore=_ignore)
    return dst


def run(cmd: list[str] | str, *, cwd: Path | None = None, env: dict | None = None,
        timeout: float = 900, shell: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          shell=shell)


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


# -- plugin modules written by tests ----------------------------------------------------

def plugin_source(plugin: str, version: str, classes: str, hooks: dict[str, str]) -> str:
    """The source of a plugin module: ``classes`` (provider classes), ``dfxsdk_plugin_info`` for
    ``plugin`` ``version``, and a hook per entry of ``hooks`` ("backends" -> "[Zeros()]": the list
    ``dfxsdk_backends`` returns). The provider base classes and numpy are imported."""
    lines = ["import numpy as np",
             "from dfxsdk.hookspecs import hookimpl",
             "from dfxsdk.providers import Backend, CustomOperator, Importer, PluginInfo, Quantizer",
             textwrap.dedent(classes),
             "@hookimpl",
             "def dfxsdk_plugin_info():",
             f"    return PluginInfo(name={plugin!r}, version={version!r}, api_version=(1, 0))"]
    for hook, result in hooks.items():
        lines += ["@hookimpl", f"def dfxsdk_{hook}():", f"    return {result}"]
    return "\n".join(lines) + "\n"


#: A backend that takes the reference backend's name and returns zeros of the right shapes.
ZEROS_NAMED_NUMPY = """
class Zeros(Backend):
    name = "numpy"
    supported_ops = frozenset({"Conv2D", "FullyConnected", "Pool2D", "Relu", "Softmax", "Flatten", "Reshape"})

    def run(self, model, inputs, *, mode=None, outputs=None):
        n = len(next(iter(inputs.values())))
        return {o: np.zeros((n,) + model.tensors[o].shape[1:], np.float32) for o in outputs or model.outputs}
"""
