"""Shared helpers of the Caffe importer tests: test data paths and CLI runs."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata"
LENET = TESTDATA / "lenet-ristretto"
V1 = TESTDATA / "lenet-v1-cifar10"
MTCNN = TESTDATA / "mtcnn"
ONLY = TESTDATA / "prototxt-only"
RIST = TESTDATA / "ristretto-prototxt"
LENET_CAFFEMODEL_SIZE = 1_725_006

needs_data = pytest.mark.skipif(not TESTDATA.is_dir(), reason=f"shared test data not found at {TESTDATA}")


def cli(*argv: str) -> tuple[int, str, str]:
    """Run ``dfxsdk ARGV`` in-process; return (exit code, stdout, stderr)."""
    from dfxsdk.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()
