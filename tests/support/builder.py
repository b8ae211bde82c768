"""Small helpers for building test graphs by hand (not a test module)."""

from __future__ import annotations

import itertools

import numpy as np

from dfxsdk import DataType, Layer, Model, QFormat, Rounding, Tensor
from dfxsdk.fixedpoint import quantize


def fmt(bw: int, fl: int = 0, rounding: Rounding = Rounding.HALF_AWAY_FROM_ZERO,
        channel_fl=None, channel_axis: int = 0) -> QFormat:
    if channel_fl is not None:
        return QFormat(bw, 0, rounding, tuple(int(v) for v in channel_fl), channel_axis)
    return QFormat(bw, fl, rounding)


class Builder:
    """Builds a Model tensor by tensor; output shapes are inferred by the ops."""

    def __init__(self, name: str = "test") -> None:
        self.model = Model(name=name)
        self._ids = itertools.count()

    def _name(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def input(self, shape, q: QFormat | None = None, name: str | None = None) -> str:
        name = name or self._name("in")
        self._act(name, shape, q)
        self.model.inputs.append(name)
        return name

    def _act(self, name, shape, q):
        dtype = DataType.FLOAT32 if q is None else DataType.for_bw(q.bw)
        self.model.add_tensor(Tensor(name, tuple(shape), dtype, q))

    def const(self, values, q: QFormat | None = None, name: str | None = None,
              packed: bool = False) -> str:
        """A constant; ``values`` are integer codes when ``q`` is given, else floats."""
        name = name or self._name("c")
        v = np.asarray(values)
        if q is None:
            t = Tensor(name, v.shape, DataType.FLOAT32, None)
            t.data = v.astype(np.float32)
        else:
            dt = DataType.for_bw(q.bw, packed=packed)
            t = Tensor(name, v.shape, dt, q)
            t.data = v.astype(dt.numpy_dtype)
        self.model.add_tensor(t)
        return name

    def qconst(self, real, q: QFormat, **kw) -> str:
        """A constant quantized from real values."""
        return self.const(quantize(np.asarray(real, np.float64), q), q, **kw)

    def add(self, op, inputs, out_q=None, shapes=None, name: str | None = None,
            outputs=None) -> list[str] | str:
        """Append a layer; ``out_q`` is one format (or None) or a list per output."""
        in_shapes = [None if n is None else self.model.tensors[n].shape for n in inputs]
        shapes = shapes or op.infer_shapes(in_shapes)
        n_out = len(shapes)
        qs = out_q if isinstance(out_q, list) else [out_q] * n_out
        outputs = outputs or [self._name("t") for _ in range(n_out)]
        for o, s, q in zip(outputs, shapes, qs):
            self._act(o, s, q)
        self.model.add_layer(Layer(name or self._name(op.TYPE.lower()), op, list(inputs), outputs))
        return outputs if n_out > 1 else outputs[0]

    def output(self, *names: str) -> Model:
        self.model.outputs.extend(names)
        return self.model


def small_cnn(path, *, channels: int, size: int, filters: int, classes: int, q_in: QFormat, q_w: QFormat,
              q_conv: QFormat, q_fc: QFormat, scale: float, channel_order: str) -> None:
    """Save a seeded integer Requantize -> 3x3 Conv2D -> Flatten -> FullyConnected ('score') net to ``path``."""
    from dfxsdk import Preprocessing, ops, save

    rng = np.random.default_rng(0)
    b = Builder("small_cnn")
    x = b.input((1, channels, size, size), name="data")
    xq = b.add(ops.Requantize(), [x], q_in)
    c = b.add(ops.Conv2D(kernel_h=3, kernel_w=3), [xq, b.qconst(rng.standard_normal((filters, channels, 3, 3)) * .3,
                                                                q_w)], q_conv)
    f = b.add(ops.Flatten(), [c], q_conv)
    w = b.qconst(rng.standard_normal((classes, filters * (size - 2) ** 2)) * .2, q_w)
    m = b.output(b.add(ops.FullyConnected(), [f, w], q_fc, outputs=["score"]))
    m.preprocessing["data"] = Preprocessing(scale=[scale], channel_order=channel_order)
    save(m, path)
