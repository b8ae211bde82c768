"""Fixtures shared by the test packages, and the ``testdata`` mark (tests.support.testdata)."""

from __future__ import annotations

import pytest

from tests.support.cross import CROSS_CC, require_cross
from tests.support.testdata import require_testdata


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "testdata(*paths): needs ../shared/testdata (and these paths in it)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("testdata"):
        require_testdata(*mark.args)


@pytest.fixture(scope="session")
def native(tmp_path_factory: pytest.TempPathFactory):
    """The native backend (dfx_native), with libdfx built by CMake if the package lacks it."""
    from tests.support.native import native_backend

    return native_backend(tmp_path_factory)


@pytest.fixture(scope="session")
def caffe():
    """The Caffe importer plugin module (the test skips without it)."""
    return pytest.importorskip("dfx_caffe.plugin", reason="the Caffe importer plugin is not installed")


@pytest.fixture(scope="session")
def cross() -> str:
    """The aarch64 cross compiler (see tests.support.cross.require_cross)."""
    require_cross("the aarch64 compile tests")
    return CROSS_CC


@pytest.fixture
def fresh_plugins():
    """A fresh process-wide plugin registry for the test (dfxsdk.plugins.fresh_registry): it loads
    the installed plugins when first used, and the previous registry is back afterwards."""
    from dfxsdk.plugins import fresh_registry

    with fresh_registry():
        yield
