"""Learned rounding of weights (AdaRound-style) and bias correction, layer by layer.

For each Conv2D and FullyConnected layer in execution order, the layer's input
is captured twice on the calibration data: from the float model (x_f) and from
the quantized model built so far (x_q, with every earlier layer already
refined). The layer's weights W (float) and their codes Q (fl chosen before,
unchanged) should make ``Q*s x_q`` close to ``W x_f``. Since the error is a
quadratic form of the columns the layer multiplies (im2col windows for a
convolution, the flattened input for a fully connected layer), only their
second moments are kept (K x K per group), so the cost does not grow with the
number of samples.

- **Learned rounding** (Nagel et al. 2020, "Up or down?"): every code is
  ``floor(W/s) + h`` with h in {0, 1}; h is relaxed to a rectified sigmoid of
  a free variable V, and V minimises the output error plus a regulariser that
  pushes h to 0 or 1 (its exponent annealed from 20 to 2) with Adam, all rows
  at once. The hard result (h >= 1/2) is kept per output channel only where
  its error is below that of rounding to nearest.
- **Bias correction**: the mean output error ``Q*s E[x_q] - W E[x_f]`` is
  subtracted from the bias (layers without a bias are left as they are).

The result is a float model whose weights lie exactly on their quantization
grid (so building it quantizes them to the learned codes) and whose biases are
corrected: the arithmetic and the file format do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dfxsdk import ops
from dfxsdk.fixedpoint import dequantize, quantize
from dfxsdk.graph import Layer, Model, Tensor

from dfx_numpy.common import pad_spatial, windows

from .apply import shift_fl
from .search import limit_batches

#: Multiply-adds per nominal second of the time budget (learned rounding's steps).
NOMINAL_RATE = 4e9
#: Fewest optimisation steps worth running (else a layer keeps nearest rounding).
MIN_ITERATIONS = 40
#: Rectified sigmoid stretch (AdaRound's zeta and gamma).
_ZETA, _GAMMA = 1.1, -0.1


@dataclass
class RoundingOptions:
    """What :func:`refine` does."""

    learned: bool = True
    bias_correction: bool = True
    iterations: int = 100
    #: Weight of the regulariser relative to the normalised output error.
    reg: float = 0.01
    learning_rate: float = 0.05
    #: Calibration samples whose columns are used (None: all).
    samples: int | None = 500
    #: Weight fl moves tried with learned rounding; the one with the least output error is kept (on LeNet
    #: 2/4/4, (0, -1, 1) chose coarser fc weights and lost 0.4 point of top-1: not the default).
    fl_moves: tuple[int, ...] = (0,)
    #: Nominal seconds the optimisation of all layers may take (None: no limit), shared by weights x K.
    seconds: float | None = None


def refinable(layer: Layer) -> bool:
    """Layers whose rounding is learned and whose bias is corrected."""
    return layer.type in ("Conv2D", "FullyConnected")


def columns(layer: Layer, x: np.ndarray) -> np.ndarray:
    """The columns the layer multiplies by its weights: (groups, positions, K)."""
    op = layer.op
    if isinstance(op, ops.FullyConnected):
        return x.reshape(int(np.prod(x.shape[:op.axis])), -1)[None]
    n, c, h, wd = x.shape
    oh = ops.conv_out_size(h, op.kernel_h, op.stride_h, op.pad_top, op.pad_bottom, op.dilation_h)
    ow = ops.conv_out_size(wd, op.kernel_w, op.stride_w, op.pad_left, op.pad_right, op.dilation_w)
    xp = pad_spatial(x, op.pad_top, op.pad_bottom, op.pad_left, op.pad_right)
    win = windows(xp, op.kernel_h, op.kernel_w, op.stride_h, op.stride_w, op.dilation_h, op.dilation_w, oh, ow)
    g = op.group
    cols = win.reshape(n, g, c // g, oh, ow, op.kernel_h, op.kernel_w)
    return cols.transpose(1, 0, 3, 4, 2, 5, 6).reshape(g, n * oh * ow, -1)


class Moments:
    """Running sums of the quantized and float columns of one layer (per group)."""

    def __init__(self) -> None:
        self.n = 0
        self.qq = self.qf = self.sq = self.sf = None

    def update(self, cq: np.ndarray, cf: np.ndarray) -> None:
        cq, cf = cq.astype(np.float64), cf.astype(np.float64)
        qq = np.matmul(cq.transpose(0, 2, 1), cq)
        qf = np.matmul(cq.transpose(0, 2, 1), cf)
        if self.qq is None:
            self.qq, self.qf, self.sq, self.sf = qq, qf, cq.sum(axis=1), cf.sum(axis=1)
        else:
            self.qq += qq
            self.qf += qf
            self.sq += cq.sum(axis=1)
            self.sf += cf.sum(axis=1)
        self.n += cq.shape[1]

    def second(self, centered: bool) -> tuple[np.ndarray, np.ndarray]:
        """E[x_q x_q^T] and E[x_q x_f^T] (covariances when ``centered``)."""
        qq, qf = self.qq / self.n, self.qf / self.n
        if centered:
            mq, mf = self.sq / self.n, self.sf / self.n
            qq = qq - mq[:, :, None] * mq[:, None, :]
            qf = qf - mq[:, :, None] * mf[:, None, :]
        return qq, qf


def _rect_sigmoid(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sig = 1.0 / (1.0 + np.exp(-v))
    raw = sig * (_ZETA - _GAMMA) + _GAMMA
    h = np.clip(raw, 0.0, 1.0)
    dh = np.where((raw > 0) & (raw < 1), sig * (1 - sig) * (_ZETA - _GAMMA), 0.0)
    return h, dh


def _row_loss(q: np.ndarray, qq: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per row: q^T E[qq] q - 2 q^T t (the output error up to a constant), shape (G, R)."""
    return np.einsum("grk,grk->gr", np.matmul(q, qq), q) - 2.0 * np.einsum("grk,grk->gr", q, t)


def learn_codes(a: np.ndarray, lo: int, hi: int, qq: np.ndarray, qf: np.ndarray, opts: RoundingOptions,
                seconds: float | None = None) -> np.ndarray:
    """Integer codes near ``a`` (G, R, K: weights / step) minimising the output error.

    ``qq`` (G, K, K) and ``qf`` (G, K, K) are the second moments of the quantized
    input with itself and with the float input, in units where a weight's step is 1.
    With ``seconds`` (nominal: a step costs weights x K multiply-adds at
    :data:`NOMINAL_RATE`, so the result does not depend on the machine's load) the
    number of steps is cut to fit; below :data:`MIN_ITERATIONS` the nearest codes
    are returned.
    """
    base = np.floor(a)
    nearest = np.clip(np.round(a), lo, hi)
    t = np.matmul(a, qf.transpose(0, 2, 1))             # (Sqf a_r) per row
    scale = np.maximum(np.einsum("gkk->g", qq) / qq.shape[-1], 1e-30)[:, None, None]
    qq_n, t_n = qq / scale, t / scale
    qq_32 = qq_n.astype(np.float32)
    h0 = np.clip(a - base, 0.01, 0.99)
    v = -np.log((_ZETA - _GAMMA) / (h0 - _GAMMA) - 1.0)
    m = np.zeros_like(v)
    s = np.zeros_like(v)
    k = a.shape[-1]
    iterations = opts.iterations
    if seconds is not None:
        iterations = min(iterations, int(seconds * NOMINAL_RATE / max(a.size * k, 1)))
        if iterations < MIN_ITERATIONS:
            return nearest
    warm = iterations // 5
    for it in range(iterations):
        h, dh = _rect_sigmoid(v)
        raw_q = base + h
        q = np.clip(raw_q, lo, hi)
        inside = (raw_q >= lo) & (raw_q <= hi)
        grad = 2.0 * (np.matmul(q.astype(np.float32), qq_32) - t_n) / k * inside
        if it >= warm:
            beta = 20.0 + (2.0 - 20.0) * (it - warm) / max(1, iterations - warm - 1)
            u = 2.0 * h - 1.0
            grad = grad - opts.reg * beta * np.abs(u) ** (beta - 1.0) * np.sign(u) * 2.0
        g = grad * dh
        m = 0.9 * m + 0.1 * g
        s = 0.999 * s + 0.001 * g * g
        mh = m / (1 - 0.9 ** (it + 1))
        sh = s / (1 - 0.999 ** (it + 1))
        v -= opts.learning_rate * mh / (np.sqrt(sh) + 1e-8)
    learned = np.clip(base + (_rect_sigmoid(v)[0] >= 0.5), lo, hi)
    better = _row_loss(learned, qq_n, t_n) < _row_loss(nearest, qq_n, t_n)
    return np.where(better[:, :, None], learned, nearest)


def _cost(model: Model, layer: Layer) -> int:
    """Work of one optimisation step: weights x K."""
    w = model.tensors[layer.inputs[1]]
    return int(w.size) * int(np.prod(w.shape[1:]))


def _capture(model: Model, tensor: str, batches: Sequence[dict[str, np.ndarray]], mode: str,
             backend) -> list[np.ndarray]:
    """Real values of ``tensor`` per batch, running only the layers it depends on."""
    needed = {tensor}
    layers = []
    for layer in reversed(model.layers):
        if any(o in needed for o in layer.outputs):
            layers.append(layer)
            needed.update(n for n in layer.inputs if n is not None)
    sub = Model(name=model.name, inputs=list(model.inputs), outputs=[tensor],
                preprocessing=dict(model.preprocessing), metadata={})
    sub.tensors = model.tensors
    sub.layers = list(reversed(layers))
    fmt = model.tensors[tensor].qformat
    from dfxsdk.plugins import get_manager

    manager = get_manager()
    out = []
    for b in batches:
        y = manager.call_backend(backend, sub, b, mode=mode, outputs=[tensor])[tensor]
        out.append(dequantize(y, fmt, np.float64) if fmt is not None and y.dtype.kind == "i"
                   else np.asarray(y, np.float64))
    return out


def refine(model: Model, build: Callable[[Model, dict[str, int]], Model], batches: Sequence[dict[str, np.ndarray]],
           opts: RoundingOptions, *, backend=None,
           echo: Callable[[str], None] | None = None) -> tuple[Model, dict[str, int]]:
    """A copy of the float ``model`` with learned weight codes and corrected biases.

    ``build(float_model, moves)`` must return the quantized model, each layer's weight
    fl moved by ``moves.get(layer, 0)``. Returns the refined float model and the moves
    chosen (learned rounding tries :attr:`RoundingOptions.fl_moves` per layer and keeps
    the one whose output error is least); ``build(refined, moves)`` is the result.
    """
    if backend is None:
        from dfxsdk.plugins import get_manager
        backend = get_manager().backend("numpy")
    batches = limit_batches(batches, opts.samples)
    work = Model(name=model.name, inputs=list(model.inputs), outputs=list(model.outputs),
                 preprocessing=dict(model.preprocessing), metadata=dict(model.metadata))
    work.tensors = dict(model.tensors)
    work.layers = list(model.layers)
    moves: dict[str, int] = {}
    costs = {l.name: _cost(model, l) for l in model.layers if refinable(l)}
    total_cost = sum(costs.values())
    for layer in model.layers:
        if not refinable(layer) or not (opts.learned or opts.bias_correction):
            continue
        qmodel = build(work, moves)
        qlayer = qmodel.layer(layer.name)
        wfmt = qmodel.tensors[layer.inputs[1]].qformat
        if wfmt is None:
            continue
        xq = _capture(qmodel, qlayer.inputs[0], batches, "integer", backend)
        xf = _capture(model, layer.inputs[0], batches, "float", backend)
        mom = Moments()
        for a, b in zip(xq, xf):
            mom.update(columns(layer, a), columns(layer, b))
        w = np.asarray(model.tensors[layer.inputs[1]].data, np.float64)
        has_bias = len(layer.inputs) > 2 and layer.inputs[2] is not None
        nearest = quantize(w, wfmt)
        codes = nearest
        if opts.learned:
            g = mom.qq.shape[0]
            shape = (g, w.shape[0] // g, -1)
            qq, qf = mom.second(opts.bias_correction and has_bias)
            best = None
            share = None
            if opts.seconds is not None:
                share = opts.seconds * costs[layer.name] / max(total_cost, 1) / len(opts.fl_moves)
            for d in opts.fl_moves:
                f = shift_fl(wfmt, d)
                step = dequantize(np.ones_like(w), f, np.float64)
                c = learn_codes((w / step).reshape(shape), f.qmin, f.qmax, qq, qf, opts, share).reshape(w.shape)
                err = float(np.sum(_row_loss((c * step).reshape(shape), qq, np.matmul(w.reshape(shape),
                                                                                      qf.transpose(0, 2, 1)))))
                if best is None or err < best[0]:
                    best = (err, d, c.astype(np.int64), f)
            _, d, codes, wfmt = best
            if d:
                moves[layer.name] = d
        wq = dequantize(codes, wfmt, np.float64)
        work.tensors[layer.inputs[1]] = Tensor.constant(layer.inputs[1], wq.astype(np.float32))
        if opts.bias_correction and has_bias:
            g = mom.qq.shape[0]
            mq, mf = mom.sq / mom.n, mom.sf / mom.n                   # (G, K)
            og = w.shape[0] // g
            delta = (np.einsum("grk,gk->gr", wq.reshape(g, og, -1), mq)
                     - np.einsum("grk,gk->gr", w.reshape(g, og, -1), mf)).reshape(-1)
            b = model.tensors[layer.inputs[2]]
            nb = np.asarray(b.data, np.float64).reshape(-1) - delta
            work.tensors[b.name] = Tensor.constant(b.name, nb.reshape(b.shape).astype(np.float32))
        if echo:
            echo(f"  rounding {layer.name}: weight fl {moves.get(layer.name, 0):+d}, "
                 f"{int(np.sum(codes != quantize(w, wfmt)))} of {codes.size} codes differ from nearest")
    return work, moves

