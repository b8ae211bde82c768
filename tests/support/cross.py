"""The aarch64 cross toolchain and qemu-user (.ci/install-cross.sh installs them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SYSROOT = Path("/usr/aarch64-linux-gnu")
CROSS_CC = "aarch64-linux-gnu-gcc"


def require_cross(what: str, *tools: str) -> None:
    """Skip when DFX_SKIP_CROSS=1; otherwise fail (naming them) if the cross tools or ``tools`` are missing.

    ``what`` names the tests in the message ("the aarch64 tests").
    """
    if os.environ.get("DFX_SKIP_CROSS") == "1":
        pytest.skip("DFX_SKIP_CROSS=1: the aarch64 cross build and qemu tests are skipped")
    missing = [t for t in (*tools, CROSS_CC, "qemu-aarch64") if shutil.which(t) is None]
    if not (SYSROOT / "lib" / "libc.so.6").exists():
        missing.append(f"{SYSROOT}/lib/libc.so.6 (libc6-dev-arm64-cross)")
    if missing:
        pytest.fail(f"{what} need {', '.join(missing)}: run .ci/install-cross.sh "
                    "(as root), or set DFX_SKIP_CROSS=1 to skip them on a developer machine")
