"""The memory planner (kernels/src/planner.c): reuse on chains, and arenas of real networks.

The speed on 1k..100k chained layers is measured by benchmarks/bench_planner.py.
"""

from __future__ import annotations

import sys
import warnings

import pytest

import dfxsdk

from tests.support.paths import ROOT
from tests.support.testdata import MOBILENET_SSD, TESTDATA, require_testdata

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_planner  # noqa: E402

#: Arenas (bytes, batch 1, random weights) given by the previous, quadratic planner: never worse.
ARENAS_BEFORE = {
    MOBILENET_SSD: 13_552_320,
    TESTDATA / "lenet-ristretto" / "lenet.prototxt": 64_832,
    TESTDATA / "lenet-v1-cifar10" / "cifar10_full.prototxt": 176_832,
}


@pytest.mark.parametrize("n", [1, 2, 1000])
def test_chain_reuses_two_buffers(native, tmp_path, n):
    path = tmp_path / "chain.dfx"
    dfxsdk.save(bench_planner.chain(n), path)
    arena = bench_planner.time_open_plan(str(path), 1)[2]
    assert arena == 128  # input and output of the running layer, 64 bytes each


@pytest.mark.parametrize("prototxt", list(ARENAS_BEFORE), ids=[p.stem for p in ARENAS_BEFORE])
def test_real_network_arenas_do_not_grow(native, prototxt):
    require_testdata(prototxt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arena = bench_planner.arena_of(str(prototxt))
    assert arena <= ARENAS_BEFORE[prototxt]
