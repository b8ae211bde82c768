"""Writes kernels/tests/data/tiny_lenet.dfx and its .expected file for test_buffer.c.

A LeNet-shaped int8 network (conv, max pool, conv with INT4 per-channel
weights, average pool, ReLU, fully connected) with random weights; the
expected output codes come from the NumPy reference backend.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

from dfxsdk import DataType, Layer, Model, QFormat, Rounding, Tensor, ops, save
from dfxsdk.plugins import get_manager


def build(seed: int = 1) -> Model:
    rng = np.random.default_rng(seed)
    m = Model(name="tiny_lenet")

    def act(name, shape, q):
        m.add_tensor(Tensor(name, tuple(shape), DataType.for_bw(q.bw), q))

    def const(name, shape, q, dtype=None):
        dt = dtype or DataType.for_bw(q.bw)
        t = Tensor(name, tuple(shape), dt, q)
        t.data = rng.integers(q.qmin, q.qmax + 1, shape).astype(dt.numpy_dtype)
        m.add_tensor(t)

    def layer(name, op, ins, out, q):
        shape = op.infer_shapes([m.tensors[n].shape for n in ins])[0]
        act(out, shape, q)
        m.add_layer(Layer(name, op, ins, [out]))

    act("data", (1, 1, 12, 12), QFormat(8, 7))
    m.inputs.append("data")
    const("w1", (4, 1, 3, 3), QFormat(8, 7))
    const("b1", (4,), QFormat(16, 10))
    layer("conv1", ops.Conv2D(kernel_h=3, kernel_w=3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1),
          ["data", "w1", "b1"], "c1", QFormat(8, 5))
    layer("pool1", ops.Pool2D(type=ops.POOL_MAX, kernel_h=2, kernel_w=2, stride_h=2, stride_w=2), ["c1"], "p1",
          QFormat(8, 5))
    q4 = QFormat(4, 0, Rounding.HALF_AWAY_FROM_ZERO, (3, 4, 2, 3, 4, 3), 0)
    const("w2", (6, 4, 3, 3), q4, DataType.INT4)
    layer("conv2", ops.Conv2D(kernel_h=3, kernel_w=3, stride_h=1, stride_w=1), ["p1", "w2"], "c2",
          QFormat(8, 3, Rounding.HALF_TO_EVEN))
    layer("pool2", ops.Pool2D(type=ops.POOL_AVERAGE, kernel_h=2, kernel_w=2, stride_h=2, stride_w=2), ["c2"],
          "p2", QFormat(8, 4, Rounding.HALF_UP))
    layer("relu2", ops.Relu(), ["p2"], "r2", QFormat(8, 4))
    const("w3", (10, 24), QFormat(8, 6))
    layer("ip", ops.FullyConnected(), ["r2", "w3"], "out", QFormat(16, 6))
    m.outputs.append("out")
    return m


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    m = build()
    path = out / "tiny_lenet.dfx"
    save(m, path)
    x = np.random.default_rng(7).uniform(-1, 1, (1, 1, 12, 12)).astype(np.float32)
    y = get_manager().backend("numpy").run(m, {"data": x})["out"].astype(np.int32)
    with open(str(path) + ".expected", "wb") as f:
        f.write(struct.pack("<q", x.size) + x.astype("<f4").tobytes())
        f.write(struct.pack("<q", y.size) + y.astype("<i4").tobytes())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent / "data"))
