"""The C library's operator table (kernels/src/ops.def) as Python data.

``dfxsdk compile`` reads the kernel rows to know which library source defines
each kernel function; tests/native/test_op_table.py compares the operator rows with
:mod:`dfxsdk.ops`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OpRow:
    """A ``DFX_OP`` row: C enum suffix, union code, schema name, arity and flags (-1: any number)."""

    id: str
    code: int
    name: str
    min_inputs: int
    max_inputs: int
    num_outputs: int
    integer: bool
    layout_only: bool


@dataclass(frozen=True)
class KernelRow:
    """A ``DFX_KERNEL`` row: kernel (``DFX_USE_`` suffix), its file and another file it needs (or "")."""

    name: str
    file: str
    also: str

    @property
    def files(self) -> list[str]:
        """Library sources (relative to kernels/src) a build calling this kernel needs."""
        return [self.file] + ([self.also] if self.also else [])


def _rows(text: str, macro: str) -> list[list[str]]:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return [[a.strip().strip('"') for a in m.split(",")]
            for m in re.findall(rf"^{macro}\(([^)]*)\)\s*$", text, re.M)]


def read_ops(path: str | Path) -> list[OpRow]:
    """The operator rows of an ops.def file, in file order."""
    return [OpRow(r[0], int(r[1]), r[2], int(r[3]), int(r[4]), int(r[5]), r[6] == "1", r[7] == "1")
            for r in _rows(Path(path).read_text(), "DFX_OP")]


def read_kernels(path: str | Path) -> dict[str, KernelRow]:
    """The kernel rows of an ops.def file by kernel name."""
    return {r[0]: KernelRow(r[0], r[1], r[2]) for r in _rows(Path(path).read_text(), "DFX_KERNEL")}
