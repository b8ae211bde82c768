"""Images per second of the NumPy reference backend on LeNet: integer vs float mode.

Usage: python benchmarks/bench_reference.py [--seconds S]

Uses the real Ristretto LeNet from ../shared/testdata (via the Caffe importer)
and falls back to a synthetic LeNet-shaped model with the same formats.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dfxsdk import DataType, Layer, Model, QFormat, Tensor, ops

LENET = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "lenet-ristretto"


def real_lenet() -> tuple[Model, str] | None:
    try:
        from dfx_caffe.plugin import import_caffe
    except ImportError:
        return None
    if not LENET.is_dir():
        return None
    m = import_caffe([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"],
                     ristretto_path=LENET / "lenet_quantized.prototxt")
    return m, "Ristretto LeNet (../shared/testdata)"


def synthetic_lenet() -> tuple[Model, str]:
    rng = np.random.default_rng(0)
    m = Model(name="lenet-synthetic")

    def act(name, shape, q):
        m.add_tensor(Tensor(name, shape, DataType.FLOAT32 if q is None else DataType.for_bw(q.bw), q))

    def const(name, shape, q):
        t = Tensor(name, shape, DataType.for_bw(q.bw), q)
        t.data = rng.integers(q.qmin, q.qmax + 1, shape).astype(np.int8)
        m.add_tensor(t)

    a4, w2, w4 = QFormat(4, 2), QFormat(2, 1), QFormat(4, 4)
    act("data", (1, 1, 28, 28), None)
    m.inputs.append("data")
    layers = [("q", ops.Requantize(), ["data"], "x", (1, 1, 28, 28)),
              ("conv1", ops.Conv2D(kernel_h=5, kernel_w=5), ["x", "w1", "b1"], "c1", (1, 20, 24, 24)),
              ("pool1", ops.Pool2D(kernel_h=2, kernel_w=2, stride_h=2, stride_w=2), ["c1"], "p1", (1, 20, 12, 12)),
              ("conv2", ops.Conv2D(kernel_h=5, kernel_w=5), ["p1", "w2", "b2"], "c2", (1, 50, 8, 8)),
              ("pool2", ops.Pool2D(kernel_h=2, kernel_w=2, stride_h=2, stride_w=2), ["c2"], "p2", (1, 50, 4, 4)),
              ("ip1", ops.FullyConnected(), ["p2", "w3", "b3"], "f1", (1, 500)),
              ("relu", ops.Relu(), ["f1"], "r1", (1, 500)),
              ("ip2", ops.FullyConnected(), ["r1", "w4", "b4"], "f2", (1, 10))]
    for name, shape, q in (("w1", (20, 1, 5, 5), w2), ("b1", (20,), w2), ("w2", (50, 20, 5, 5), w2),
                           ("b2", (50,), w2), ("w3", (500, 800), w4), ("b3", (500,), w4),
                           ("w4", (10, 500), w4), ("b4", (10,), w4)):
        const(name, shape, q)
    for name, op, ins, out, shape in layers:
        act(out, shape, a4)
        m.add_layer(Layer(name, op, ins, [out]))
    m.outputs.append("f2")
    return m, "synthetic LeNet-shaped model (testdata or Caffe importer missing)"


def rate(model: Model, mode: str, batch: int, seconds: float) -> float:
    x = np.random.default_rng(1).random((batch, 1, 28, 28), dtype=np.float32)
    name = model.inputs[0]
    model.run({name: x}, mode=mode)                       # warm-up (and constant cache)
    n, start = 0, time.perf_counter()
    while True:
        model.run({name: x}, mode=mode)
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2)")
    args = parser.parse_args()
    model, what = real_lenet() or synthetic_lenet()
    print(f"model: {what}; numpy {np.__version__}")
    print(f"{'batch':>6} {'integer img/s':>15} {'float img/s':>13} {'float/integer':>14}")
    for batch in (1, 256):
        r_int = rate(model, "integer", batch, args.seconds)
        r_flt = rate(model, "float", batch, args.seconds)
        print(f"{batch:>6} {r_int:>15.1f} {r_flt:>13.1f} {r_flt / r_int:>13.1f}x")


if __name__ == "__main__":
    main()
