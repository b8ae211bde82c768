"""Threads on armhf under qemu-arm: the armhf ``dfx-run --threads N`` (N = 1 .. 4) with every kernel-set mode of
tests/armhf/test_armhf.py gives the NumPy reference's codes exactly, on the network that exercises every split
of the work (tests/native/test_native_threads.py) and on the real networks. Same rules as test_armhf.py."""

from __future__ import annotations

import pytest

from tests.aarch64 import test_aarch64_threads as aarch64_threads
from tests.armhf import test_armhf as base
from tests.support.cross import compare, split_outputs

MODES = base.MODES
THREADS = aarch64_threads.THREADS
armhf = base.armhf  # that module's fixtures: the armhf build, the real networks
nets = base.nets
every_split = aarch64_threads.every_split  # the every-split network and its reference outputs


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("mode", list(MODES))
def test_every_split_bit_exact_at_every_thread_count(armhf, every_split, tmp_path, mode, threads):
    path, inputs, names, want = every_split
    raw = aarch64_threads.run_threads(armhf, mode, threads, path, inputs, tmp_path)
    compare(names, split_outputs(raw, want, path.stem), want, f"{path.stem} [{mode}, {threads} threads]")


@pytest.mark.slow
@pytest.mark.parametrize("threads", THREADS[1:])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("net", ["lenet", "mtcnn-det1", "mobilenet-ssd"])
def test_network_bit_exact_with_threads(armhf, nets, tmp_path, net, mode, threads):
    """One thread is test_armhf.py's test_network_bit_exact."""
    path, inputs, names, want = nets(net)
    raw = aarch64_threads.run_threads(armhf, mode, threads, path, inputs, tmp_path)
    compare(names, split_outputs(raw, want, net), want, f"{net} [{mode}, {threads} threads]")
