"""Locations in the repository."""

from __future__ import annotations

from pathlib import Path

#: The repository root.
ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
KERNELS = ROOT / "kernels"
SPEC = ROOT / "spec"
#: The checked-in conformance vectors (``*.dfx`` with their ``*.npz``).
CONFORMANCE = SPEC / "conformance"
EXAMPLES = ROOT / "examples"
