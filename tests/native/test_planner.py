"""The memory planner (kernels/src/planner.c): reuse on chains, and arenas of real networks.

The speed on 1k..100k chained layers is measured by benchmarks/bench_planner.py.
"""

from __future__ import annotations

import random
import sys
import warnings

import pytest

import dfxsdk
from dfxsdk import DataType, Layer, Model, Tensor, ops

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


def _random_graph(seed: int, n_layers: int) -> dfxsdk.Model:
    """Float Relu / Eltwise / Concat layers on earlier tensors, near and far back (lifetimes of every length),
    channel counts that repeat (equal sizes: ties) and several graph outputs."""
    rng = random.Random(seed)
    m = Model(name=f"random{seed}")
    channels = [rng.choice((1, 2, 3, 4, 8))]
    m.add_tensor(Tensor("t0", (1, channels[0], 4, 4), DataType.FLOAT32))
    m.inputs.append("t0")

    def pick() -> int:
        back = rng.choice((1, 1, 2, 3, rng.randint(1, 40)))
        return max(0, len(channels) - back)

    for i in range(1, n_layers + 1):
        a, b = pick(), pick()
        kind = rng.random()
        if kind < 0.3 and channels[a] == channels[b] and a != b:
            op, ins, c = ops.Eltwise(), [a, b], channels[a]
        elif kind < 0.6 and a != b and channels[a] + channels[b] <= 16:
            op, ins, c = ops.Concat(axis=1), [a, b], channels[a] + channels[b]
        else:
            op, ins, c = ops.Relu(), [a], channels[a]
        channels.append(c)
        m.add_tensor(Tensor(f"t{i}", (1, c, 4, 4), DataType.FLOAT32))
        m.add_layer(Layer(f"l{i}", op, [f"t{k}" for k in ins], [f"t{i}"]))
    outputs = {n_layers} | set(rng.sample(range(1, n_layers), 3))
    m.outputs.extend(f"t{k}" for k in sorted(outputs))
    return m


def _greedy_by_size(plan: dict) -> tuple[dict[int, int], int]:
    """planner.c's rule written plainly (every placed tensor checked): the offset of every activation and the
    arena. Largest first (ties by tensor index), each at the lowest 64-aligned offset free for its lifetime.
    (The random graphs have no Conv2D, so no ReLU runs in place: see test_relu_after_conv_shares_the_conv_output.)"""
    n_layers = len(plan["layers"])
    todo = []
    for i, t in enumerate(plan["tensors"]):
        if t["is_const"]:
            continue
        last = n_layers if t["is_graph_output"] else max(t["last_use"], t["producer"])
        todo.append((-(-t["run_count"] * t["esz"] // 64) * 64, i, t["producer"], last))
    todo.sort(key=lambda x: (-x[0], x[1]))
    placed: list[tuple[int, int, int, int]] = []
    offsets, total = {}, 0
    for size, i, first, last in todo:
        cand = 0
        for off, end in sorted((o, e) for o, e, f, la in placed if f <= last and first <= la):
            if cand + size <= off:
                break
            cand = max(cand, end)
        placed.append((cand, cand + size, first, last))
        offsets[i], total = cand, max(total, cand + size)
    return offsets, total


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("seed", range(6))
def test_plan_is_greedy_by_size_and_valid(native, tmp_path, seed, batch):
    """Random graphs (short and long lifetimes, ties, graph outputs), at the stored batch and another: the
    run-time shapes follow the batch, the offsets are exactly the plain greedy-by-size ones, and no two tensors
    alive at the same time share a byte."""
    path = tmp_path / "random.dfx"
    dfxsdk.save(_random_graph(seed, 150), path)
    plan = native.describe_plan(path, batch)
    for t in plan["tensors"]:
        if not t["is_const"]:
            assert t["run_shape"] == [batch, *t["shape"][1:]]
            assert t["run_count"] == batch * t["count"]
    offsets, total = _greedy_by_size(plan)
    assert {i: t["arena_off"] for i, t in enumerate(plan["tensors"]) if not t["is_const"]} == offsets
    assert plan["plan_bytes"] == total
    n_layers = len(plan["layers"])
    live = []
    for t in plan["tensors"]:
        last = n_layers if t["is_graph_output"] else max(t["last_use"], t["producer"])
        live.append((t["producer"], last, t["arena_off"], t["arena_off"] + t["run_count"] * t["esz"]))
    for i, (f1, l1, o1, e1) in enumerate(live):
        for f2, l2, o2, e2 in live[i + 1:]:
            if f1 <= l2 and f2 <= l1:
                assert e1 <= o2 or e2 <= o1


def _conv_relu_net() -> dfxsdk.Model:
    """int8 input (1 channel) -> 3x3 Conv2D to 16 channels -> ReLU -> 3x3 Conv2D to 4 -> ReLU (graph output)."""
    import numpy as np

    from dfxsdk import QFormat

    from tests.support.builder import Builder

    rng = np.random.default_rng(3)
    q = QFormat(8, 4)
    b = Builder("conv_relu")
    x = b.add(ops.Requantize(), [b.input((1, 1, 16, 16), name="data")], q)
    for c_in, c_out in ((1, 16), (16, 4)):
        w = b.qconst(rng.standard_normal((c_out, c_in, 3, 3)) * .3, QFormat(8, 6))
        x = b.add(ops.Relu(), [b.add(ops.Conv2D(kernel_h=3, kernel_w=3, pad_top=1, pad_left=1, pad_bottom=1,
                                                pad_right=1), [x, w], q)], q)
    return b.output(x)


def test_relu_after_conv_shares_the_conv_output(native, tmp_path):
    """A ReLU right after the Conv2D it reads (that output read by nothing else) runs in place: its output is
    planned at the convolution output's offset, so that the convolution can apply the ReLU as it stores, and
    the arena holds no separate ReLU buffer; with every tensor kept, each has its own memory. The graph output
    (the convolution storing the ReLU'd codes itself) is bit-exact with the NumPy reference."""
    import numpy as np

    from dfxsdk.plugins import get_manager

    model = _conv_relu_net()
    path = tmp_path / "conv_relu.dfx"
    dfxsdk.save(model, path)
    plan = native.describe_plan(path, 1)
    off = {t["name"]: t["arena_off"] for t in plan["tensors"]}
    convs = [layer for layer in model.layers if layer.type == "Conv2D"]
    relus = [layer for layer in model.layers if layer.type == "Relu"]
    for conv, relu in zip(convs, relus):
        assert off[relu.outputs[0]] == off[conv.outputs[0]]
    # the peak is the second convolution's input and output (4096 and 1024 bytes); a ReLU buffer of its own
    # would make the first ReLU's input and output the peak (8192)
    assert plan["plan_bytes"] == 4096 + 1024
    inputs = {"data": np.random.default_rng(5).uniform(-1, 1, (1, 1, 16, 16)).astype(np.float32)}
    out = model.outputs[0]
    got = native.run(model, inputs)[out]
    assert np.array_equal(got, get_manager().backend("numpy").run(model, inputs)[out])
