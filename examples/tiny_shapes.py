"""Build the shipped default model: a tiny Caffe CNN that tells four shapes apart.

    python examples/tiny_shapes.py OUTDIR

writes, all made here from nothing but NumPy and a fixed seed:

- ``tiny_shapes.prototxt``            Caffe deploy network (Input 1x1x16x16)
- ``tiny_shapes.caffemodel``          its weights, trained here on synthetic images
- ``tiny_shapes_quantized.prototxt``  a Ristretto-style 8-bit dynamic fixed point
                                      version (fl by Ristretto's rule for parameters,
                                      applied to activations too, so nothing saturates)
- ``sample.npy``                      8 raw images (uint8, 8x1x16x16)
- ``test.npz``                        500 labelled raw images (x: uint8, y: int64)

Classes: 0 horizontal bar, 1 vertical bar, 2 plus sign, 3 square outline.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

SIZE, CLASSES = 16, 4
SCALE = 1.0 / 256  # Caffe transform_param scale: raw pixels 0..255 -> [0, 1)


def make_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy 16x16 uint8 images of the four shapes, and their labels."""
    x = rng.integers(0, 40, size=(n, 1, SIZE, SIZE)).astype(np.float64)
    y = rng.integers(0, CLASSES, size=n)
    for i, label in enumerate(y):
        c, r = rng.integers(4, SIZE - 4, size=2)
        half = int(rng.integers(3, 6))
        ink = rng.uniform(150, 255)
        img = x[i, 0]
        if label in (0, 2):
            img[r, max(0, c - half): c + half + 1] = ink
        if label in (1, 2):
            img[max(0, r - half): r + half + 1, c] = ink
        if label == 3:
            r0, r1, c0, c1 = max(0, r - half), min(SIZE - 1, r + half), max(0, c - half), min(SIZE - 1, c + half)
            img[r0, c0:c1 + 1] = img[r1, c0:c1 + 1] = ink
            img[r0:r1 + 1, c0] = img[r0:r1 + 1, c1] = ink
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def _im2col(x: np.ndarray, k: int) -> np.ndarray:
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))  # N,C,OH,OW,k,k
    n, c, oh, ow = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh, ow, c * k * k)


class TinyNet:
    """conv1 (8 x 3x3) -> ReLU -> max pool 2 -> ip1 (32) -> ReLU -> ip2 (4)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.w1 = rng.normal(0, math.sqrt(2 / 9), (8, 1, 3, 3))
        self.b1 = np.zeros(8)
        self.w2 = rng.normal(0, math.sqrt(2 / 392), (32, 8 * 7 * 7))
        self.b2 = np.zeros(32)
        self.w3 = rng.normal(0, math.sqrt(2 / 32), (CLASSES, 32))
        self.b3 = np.zeros(CLASSES)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        cols = _im2col(x, 3)                                   # N,14,14,9
        c1 = cols @ self.w1.reshape(8, -1).T + self.b1         # N,14,14,8
        r1 = np.maximum(c1, 0)
        n = x.shape[0]
        blocks = r1.reshape(n, 7, 2, 7, 2, 8)
        p1 = blocks.max(axis=(2, 4))                           # N,7,7,8
        flat = p1.transpose(0, 3, 1, 2).reshape(n, -1)         # Caffe order C,H,W
        h = np.maximum(flat @ self.w2.T + self.b2, 0)
        out = h @ self.w3.T + self.b3
        return out, dict(cols=cols, c1=c1, blocks=blocks, p1=p1, flat=flat, h=h)

    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        out, s = self.forward(x)
        n = x.shape[0]
        p = np.exp(out - out.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(n), y] + 1e-12).mean()
        g = p
        g[np.arange(n), y] -= 1
        g /= n
        gw3, gb3 = g.T @ s["h"], g.sum(0)
        gh = (g @ self.w3) * (s["h"] > 0)
        gw2, gb2 = gh.T @ s["flat"], gh.sum(0)
        gp = (gh @ self.w2).reshape(n, 8, 7, 7).transpose(0, 2, 3, 1)
        mask = s["blocks"] == s["p1"][:, :, None, :, None, :]
        gr = (mask * gp[:, :, None, :, None, :]).reshape(n, 14, 14, 8) * (s["c1"] > 0)
        gw1 = np.einsum("nhwk,nhwo->ok", s["cols"], gr).reshape(self.w1.shape)
        gb1 = gr.sum(axis=(0, 1, 2))
        for name, grad in (("w1", gw1), ("b1", gb1), ("w2", gw2), ("b2", gb2), ("w3", gw3), ("b3", gb3)):
            setattr(self, name, getattr(self, name) - lr * grad)
        return float(loss)


def train(seed: int = 7) -> tuple[TinyNet, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    net = TinyNet(rng)
    for _ in range(300):
        xb, yb = make_images(64, rng)
        net.step(xb * SCALE, yb, lr=0.05)
    x_test, y_test = make_images(500, rng)
    return net, x_test, y_test


def no_overflow_fl(max_abs: float, bw: int) -> int:
    """fl = bw - il with il = ceil(log2 max) + 1: Ristretto's rule for parameters.

    (For activations Ristretto drops the +1 on purpose and lets the top
    octave saturate; on this small net that costs about 10 points of accuracy.)
    """
    return bw - (math.ceil(math.log2(max_abs)) + 1)


DEPLOY = """name: "TinyShapes"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 1 dim: 16 dim: 16 }} }} }}
layer {{ name: "conv1" type: "{conv}" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 8 kernel_size: 3 }}{q_conv1} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "ip1" type: "{fc}" bottom: "pool1" top: "ip1"
  inner_product_param {{ num_output: 32 }}{q_ip1} }}
layer {{ name: "relu2" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "{fc}" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 4 }}{q_ip2} }}
"""


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    net, x_test, y_test = train()
    logits, s = net.forward(x_test * SCALE)
    acc = float((logits.argmax(1) == y_test).mean())
    print(f"trained TinyShapes: float top-1 on 500 test images = {acc:.3f}")

    from dfx_caffe.synth import write_caffemodel  # the Caffe plugin's writer

    write_caffemodel(out / "tiny_shapes.caffemodel", "TinyShapes", {
        "conv1": [net.w1, net.b1], "ip1": [net.w2, net.b2], "ip2": [net.w3, net.b3]})
    (out / "tiny_shapes.prototxt").write_text(
        DEPLOY.format(conv="Convolution", fc="InnerProduct", q_conv1="", q_ip1="", q_ip2=""))

    maxima = {  # (max |input|, max |output|, max |weights|), as Ristretto measures them
        "conv1": (np.abs(x_test * SCALE).max(), np.abs(s["c1"]).max(), np.abs(net.w1).max()),
        "ip1": (np.abs(s["flat"]).max(), np.abs(s["flat"] @ net.w2.T + net.b2).max(), np.abs(net.w2).max()),
        "ip2": (np.abs(s["h"]).max(), np.abs(logits).max(), np.abs(net.w3).max()),
    }
    blocks = {}
    for name, (m_in, m_out, m_w) in maxima.items():
        blocks[f"q_{name}"] = (
            "\n  quantization_param { bw_layer_in: 8 bw_layer_out: 8 bw_params: 8 "
            f"fl_layer_in: {no_overflow_fl(m_in, 8)} fl_layer_out: {no_overflow_fl(m_out, 8)} "
            f"fl_params: {no_overflow_fl(m_w, 8)} }}")
    (out / "tiny_shapes_quantized.prototxt").write_text(
        DEPLOY.format(conv="ConvolutionRistretto", fc="FcRistretto", **blocks))
    np.save(out / "sample.npy", x_test[:8])
    np.savez(out / "test.npz", x=x_test, y=y_test)
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
