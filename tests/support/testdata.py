"""The real models and data of ``../shared/testdata``, and the one rule for tests that need them.

A test that needs the data is marked ``@needs_testdata(path, ...)`` (or a module sets
``pytestmark = needs_testdata(...)``); a fixture calls :func:`require_testdata` itself. Both go
through :func:`require_testdata`, which decides what happens when the data is absent: the test
skips, saying what is missing (a user's fresh clone has no ``../shared``), unless the environment
sets ``DFX_REQUIRE_SHARED=1`` (``.ci/run`` does), where it fails, so that CI runs every test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .paths import ROOT

TESTDATA = ROOT.parent / "shared" / "testdata"
LENET = TESTDATA / "lenet-ristretto"
V1 = TESTDATA / "lenet-v1-cifar10"
MTCNN = TESTDATA / "mtcnn"
ONLY = TESTDATA / "prototxt-only"
RIST = TESTDATA / "ristretto-prototxt"
MNIST = TESTDATA / "mnist-data" / "mnist_5k.csv.gz"
MOBILENET_SSD = ONLY / "MobileNetSSD_deploy.prototxt"
LENET_CAFFEMODEL_SIZE = 1_725_006


#: Environment variable that turns the skip into a failure (set by .ci/run).
REQUIRE_ENV = "DFX_REQUIRE_SHARED"


def require_testdata(*paths: Path) -> None:
    """Skip the running test unless TESTDATA (and every one of ``paths``) exists; fail instead with
    DFX_REQUIRE_SHARED=1."""
    absent = [p for p in (TESTDATA, *paths) if not p.exists()]
    if not absent:
        return
    what = f"shared test data not found: {', '.join(map(str, absent))}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{what} ({REQUIRE_ENV}=1)")
    pytest.skip(f"{what} (set {REQUIRE_ENV}=1 to make this a failure)")


def needs_testdata(*paths: Path) -> pytest.MarkDecorator:
    """Mark a test (or a module, as ``pytestmark``) as needing TESTDATA and ``paths``.

    tests/conftest.py applies the mark with :func:`require_testdata` before the test runs.
    """
    return pytest.mark.testdata(*paths)
