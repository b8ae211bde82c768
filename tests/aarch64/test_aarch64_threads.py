"""Threads on AArch64 under qemu-user: the aarch64 ``dfx-run --threads N`` (N = 1, 2, 3, 7) with every kernel set
gives the NumPy reference's codes exactly, on the network that exercises every split of the work
(tests/native/test_native_threads.py) and on the real networks of tests/aarch64/test_aarch64.py.
The build, the qemu runner and the networks are that module's (same rules: no skip without the tools)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dfxsdk.io import save

from tests.aarch64 import test_aarch64 as base
from tests.aarch64.test_aarch64 import MODES, Arm64, _compare, _split_outputs
from tests.native.test_native_threads import every_split_model

arm64 = base.arm64  # that module's fixtures: the aarch64 build, the real networks
nets = base.nets

THREADS = (1, 2, 3, 4, 7)  # 1..4: a Raspberry Pi's cores (issue 15); 7: more threads than work units (issue 14)


def run_threads(build: Arm64, mode: str, threads: int, model: Path, inputs: list[np.ndarray], work: Path) -> bytes:
    """``dfx-run --threads`` of a cross build under qemu; checks the kernel set and the thread count it reports.
    (tests/armhf/test_armhf_threads.py runs it too.)"""
    inp, out = work / f"{model.stem}.{mode}.{threads}.in", work / f"{model.stem}.{mode}.{threads}.out"
    inp.write_bytes(b"".join(np.ascontiguousarray(a).tobytes() for a in inputs))
    proc = build.run(mode, "dfx-run", "--verbose", "--out-codes", "--threads", threads, model, inp, out)
    expected = build.target.modes[mode][2]
    assert f"kernels: {expected}\n" in proc.stderr and f"threads: {threads}\n" in proc.stderr, proc.stderr
    return out.read_bytes()


@pytest.fixture(scope="module")
def every_split(tmp_path_factory):
    """The every-split network at batch 2, every tensor a graph output; its inputs and reference outputs."""
    from dfxsdk.plugins import get_manager

    model = every_split_model()
    names = list(model.outputs) + [n for layer in model.layers for n in layer.outputs if n not in model.outputs]
    model.outputs = names
    path = tmp_path_factory.mktemp("threads") / "every_split.dfx"
    save(model, path)
    rng = np.random.default_rng(1)
    inputs = [rng.uniform(-1, 1, (2,) + tuple(model.tensors[n].shape[1:])).astype(np.float32) for n in model.inputs]
    want = get_manager().backend("numpy").run(model, dict(zip(model.inputs, inputs)), outputs=names)
    return path, inputs, names, [np.asarray(want[n]) for n in names]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("mode", list(MODES))
def test_every_split_bit_exact_at_every_thread_count(arm64, every_split, tmp_path, mode, threads):
    path, inputs, names, want = every_split
    raw = run_threads(arm64, mode, threads, path, inputs, tmp_path)
    _compare(names, _split_outputs(raw, want, path.stem), want, f"{path.stem} [{mode}, {threads} threads]")


@pytest.mark.slow
@pytest.mark.parametrize("threads", THREADS[1:])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("net", ["lenet", "mtcnn-det1", "mobilenet-ssd"])
def test_network_bit_exact_with_threads(arm64, nets, tmp_path, net, mode, threads):
    """One thread is test_aarch64.py's test_network_bit_exact."""
    path, inputs, names, want = nets(net)
    raw = run_threads(arm64, mode, threads, path, inputs, tmp_path)
    _compare(names, _split_outputs(raw, want, net), want, f"{net} [{mode}, {threads} threads]")
