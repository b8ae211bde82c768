"""Build the quantized graph from a float model, bit widths and statistics.

Only Conv2D, Deconv2D and FullyConnected layers get formats chosen here (as
in Ristretto: an input, an output and a parameter format per layer):

- input: when the tensor the layer reads is not already in the chosen input
  format, a Requantize layer ``<layer>/quantize_in`` converts it (float to
  integer at the float->int boundaries, integer to integer elsewhere);
- weights: quantized with the params format, one fl per output channel with
  ``per_channel`` (axis 0; axis 1 for Deconv2D weights); bw <= 4 is stored
  packed (INT4/INT2);
- bias: ``bias="int32"`` (default) stores it as int32 at fl_in + fl_w (per
  channel when the weights are), the accumulator's own grid, so the bias adds
  no rounding at all; ``bias="params"`` uses the weights' format, as Ristretto
  does (a bias outside the weights' range then saturates). A layer whose input
  stays float keeps a float bias in int32 mode;
- output: the chosen output format.

Every other layer gets its output formats from :mod:`dfxsdk.propagate`
(exact where possible; float operators stay float), so the integer network
computes exactly what the formats say.

Which statistics choose the activation formats: a layer's input format comes
from the stats of the tensor it reads; its output format from the stats of its
output, except when that output's only reader is a Relu: then the Relu's
output (negative values saturating before a ReLU do no harm, and the
positive range is all that matters). With ``ristretto_stats`` both use the
*final* value of the Caffe blob instead, after every in-place layer (tensors
``blob@layer``), which is what Ristretto's tool reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dfxsdk import ops, propagate
from dfxsdk.errors import DfxInputError
from dfxsdk.fixedpoint import quantize
from dfxsdk.formats import DataType, QFormat, Rounding
from dfxsdk.graph import Layer, Model, Tensor

from . import fl_rules
from .stats import TensorStats

QUANT_TYPES = ("Conv2D", "Deconv2D", "FullyConnected")
#: Layers whose exact output can be wider than their inputs: build keeps them within it.
LIMITED_TYPES = ("Concat", "Eltwise", "PRelu")
BIAS_MODES = ("int32", "params")


@dataclass(frozen=True)
class LayerPlan:
    """Bit widths of one layer's input, output and parameters (None: float)."""

    bw_in: int | None = None
    bw_out: int | None = None
    bw_params: int | None = None


Plan = dict[str, LayerPlan]


@dataclass
class Settings:
    """How fractional lengths are chosen and the graph is built."""

    rule: str = "mse"
    #: Rule for weights (None: the same as ``rule``).
    params_rule: str | None = None
    per_channel: bool = False
    bias: str = "int32"
    ristretto_stats: bool = False
    rounding: Rounding = Rounding.HALF_AWAY_FROM_ZERO
    rule_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerFormats:
    """The formats chosen for one quantized layer (None: float)."""

    input: QFormat | None
    output: QFormat | None
    params: QFormat | None


def quant_layers(model: Model) -> list[Layer]:
    """The layers whose formats the quantizer chooses, in execution order."""
    return [l for l in model.layers if l.type in QUANT_TYPES]


def weight_axis(layer: Layer) -> int:
    """The output-channel axis of the layer's weights."""
    return 1 if layer.type == "Deconv2D" else 0


def final_value(model: Model, tensor: str) -> str:
    """The last value of ``tensor``'s Caffe blob: the last ``blob`` / ``blob@layer`` written."""
    blob = tensor.split("@", 1)[0]
    last = tensor
    for layer in model.layers:
        for out in layer.outputs:
            if out == blob or out.startswith(blob + "@"):
                last = out
    return last


def stat_tensors(model: Model, ristretto_stats: bool = False) -> dict[str, tuple[str, str]]:
    """For each quantized layer: (tensor whose stats give the input format, ... the output format)."""
    out = {}
    for layer in quant_layers(model):
        x, y = layer.inputs[0], layer.outputs[0]
        if ristretto_stats:
            out[layer.name] = (final_value(model, x), final_value(model, y))
            continue
        readers = model.consumers(y)
        if len(readers) == 1 and readers[0].type == "Relu" and y not in model.outputs:
            y = readers[0].outputs[0]
        out[layer.name] = (x, y)
    return out


def weight_stats(model: Model, per_channel: bool = False) -> dict[str, TensorStats]:
    """Exact statistics of every quantized layer's weights (bias ignored, as Ristretto does).

    Per-channel fl values are computed from the weights themselves
    (:func:`fl_rules.choose_per_channel`); ``per_channel`` is accepted for
    compatibility and changes nothing.
    """
    out: dict[str, TensorStats] = {}
    for layer in quant_layers(model):
        w = np.asarray(model.tensors[layer.inputs[1]].data, np.float64)
        out[layer.name] = TensorStats.of(layer.inputs[1], w)
    return out


class FormatChooser:
    """Chooses (and caches) the formats of each layer for given bit widths."""

    def __init__(self, model: Model, act_stats: dict[str, TensorStats],
                 w_stats: dict[str, Any], settings: Settings) -> None:
        self.model, self.act_stats, self.w_stats, self.settings = model, act_stats, w_stats, settings
        self.where = stat_tensors(model, settings.ristretto_stats)
        self._cache: dict[tuple, QFormat] = {}

    def activation(self, tensor: str, bw: int) -> QFormat:
        """The format of activation ``tensor`` at ``bw`` bits by the fl rule."""
        return self._act(tensor, bw)

    def _act(self, tensor: str, bw: int) -> QFormat:
        key = ("a", tensor, bw)
        if key not in self._cache:
            fl = fl_rules.choose(self.settings.rule, self.act_stats[tensor], bw, "activations",
                                 self.settings.rule_options)
            self._cache[key] = QFormat(bw, fl, self.settings.rounding)
        return self._cache[key]

    def _params(self, layer: str, bw: int) -> QFormat:
        key = ("p", layer, bw)
        if key not in self._cache:
            name = self.settings.params_rule or self.settings.rule
            opts = self.settings.rule_options
            fl = fl_rules.choose(name, self.w_stats[layer], bw, "params", opts)
            if self.settings.per_channel:
                lay = self.model.layer(layer)
                axis = weight_axis(lay)
                cfl = fl_rules.choose_per_channel(name, self.model.tensors[lay.inputs[1]].data, axis, bw,
                                                  "params", opts, fallback=fl)
                self._cache[key] = QFormat(bw, 0, self.settings.rounding, cfl, axis)
            else:
                self._cache[key] = QFormat(bw, fl, self.settings.rounding)
        return self._cache[key]

    def formats(self, plan: Plan, offsets: dict[tuple[str, str], int] | None = None) -> dict[str, LayerFormats]:
        """The formats of every quantized layer; ``offsets`` moves fl: key ("act", stats tensor) or
        ("params", layer) -> added to the rule's fl (see :func:`fl_knobs`)."""
        offsets = offsets or {}
        out = {}
        for layer in quant_layers(self.model):
            p = plan.get(layer.name, LayerPlan())
            x, y = self.where[layer.name]
            out[layer.name] = LayerFormats(
                shift_fl(self._act(x, p.bw_in), offsets.get(("act", x), 0)) if p.bw_in else None,
                shift_fl(self._act(y, p.bw_out), offsets.get(("act", y), 0)) if p.bw_out else None,
                shift_fl(self._params(layer.name, p.bw_params), offsets.get(("params", layer.name), 0))
                if p.bw_params else None)
        return out

    def knobs(self, plan: Plan) -> list[tuple[str, str]]:
        """The fl offsets a search may move for ``plan``: each quantized layer's weights, then
        each activation statistics tensor, in execution order."""
        params, acts = [], []
        for layer in quant_layers(self.model):
            p = plan.get(layer.name, LayerPlan())
            if p.bw_params:
                params.append(("params", layer.name))
            x, y = self.where[layer.name]
            for t, bw in ((x, p.bw_in), (y, p.bw_out)):
                if bw and ("act", t) not in acts:
                    acts.append(("act", t))
        return params + acts


def shift_fl(fmt: QFormat, d: int) -> QFormat:
    """``fmt`` with fl (every channel's) moved by ``d``."""
    if not d:
        return fmt
    if fmt.per_channel:
        return replace(fmt, channel_fl=tuple(fl_rules.clamp_fl(f + d) for f in fmt.channel_fl))
    return replace(fmt, fl=fl_rules.clamp_fl(fmt.fl + d))


def _bias_format(layer: Layer, f: LayerFormats, mode: str, n_out: int) -> QFormat | None:
    if f.params is None:
        return None
    if mode == "params":
        if f.params.per_channel and layer.type == "Deconv2D":
            og = len(f.params.channel_fl)
            return replace(f.params, channel_fl=tuple(f.params.channel_fl[o % og] for o in range(n_out)),
                           channel_axis=0)
        return replace(f.params, channel_axis=0) if f.params.per_channel else f.params
    if f.input is None:
        return None
    if f.params.per_channel:
        og = len(f.params.channel_fl)
        cfl = tuple(fl_rules.clamp_fl(f.input.fl + f.params.channel_fl[o % og]) for o in range(n_out))
        return QFormat(32, 0, f.params.rounding, cfl, 0)
    return QFormat(32, fl_rules.clamp_fl(f.input.fl + f.params.fl), f.params.rounding)


def _constant(name: str, values: np.ndarray, fmt: QFormat) -> Tensor:
    dtype = DataType.for_bw(fmt.bw, packed=True)
    codes = quantize(values, fmt).astype(dtype.numpy_dtype)
    return Tensor(name, tuple(codes.shape), dtype, fmt, _data=np.ascontiguousarray(codes))


def _activation(t: Tensor, fmt: QFormat | None) -> Tensor:
    dtype = DataType.FLOAT32 if fmt is None else DataType.for_bw(fmt.bw)
    return Tensor(t.name, t.shape, dtype, fmt)


def limited_tensors(model: Model) -> list[str]:
    """Outputs whose format :func:`build` may choose from statistics (see :data:`LIMITED_TYPES`)."""
    return [layer.outputs[0] for layer in model.layers if layer.type in LIMITED_TYPES]


def _slope(model: Model, new: Model, layer: Layer) -> None:
    """Quantize a PRelu's float slope at the input's bit width (maxabs fl), in place in ``new``."""
    x = new.tensors[layer.inputs[0]].qformat
    s = model.tensors[layer.inputs[1]]
    if x is None or x.per_channel or s.qformat is not None or not s.is_constant:
        return
    values = np.asarray(s.data, np.float64)
    fl = fl_rules.choose("maxabs", TensorStats.of(s.name, values), x.bw, "params")
    new.tensors[s.name] = _constant(s.name, values, QFormat(x.bw, fl, x.rounding))


def _limit(layer: Layer, new: Model, outs: list[QFormat | None],
           activation: Callable[[str, int], QFormat]) -> list[QFormat | None]:
    """Keep a Concat/Eltwise/PRelu output within its widest integer input's bit width."""
    data = layer.inputs[:1] if layer.type == "PRelu" else layer.inputs
    fmts = [new.tensors[n].qformat for n in data if n is not None]
    if not fmts or any(f is None for f in fmts) or outs[0] is None:
        return outs
    width = max(f.bw for f in fmts)
    if outs[0].bw <= width:
        return outs
    return [activation(layer.outputs[0], width)] + outs[1:]


def build(model: Model, formats: dict[str, LayerFormats], *, bias: str = "int32",
          metadata: dict[str, str] | None = None,
          activation: Callable[[str, int], QFormat] | None = None) -> Model:
    """A new model: ``model`` with the layer formats applied (``model`` is not changed).

    With ``activation`` (tensor, bw -> format from statistics) every layer stays
    integer where it can and within the width of its inputs: a PRelu's float slope is
    quantized at its input's width (fl by ``maxabs``), and a Concat, Eltwise or PRelu
    whose exact output would be wider than its widest input gets a format of that
    width chosen by ``activation``. One Requantize serves every reader that wants a
    tensor in the same format.
    """
    if bias not in BIAS_MODES:
        raise DfxInputError(f"unknown bias mode '{bias}' (known: {', '.join(BIAS_MODES)})")
    new = Model(name=model.name, inputs=list(model.inputs), outputs=list(model.outputs),
                preprocessing=dict(model.preprocessing), metadata=dict(model.metadata))
    for t in model.tensors.values():
        if t.is_constant:
            new.tensors[t.name] = t
        elif t.name in model.inputs:
            new.tensors[t.name] = _activation(t, None)
    used_names = set(model.tensors)
    requantized: dict[tuple[str, QFormat | None], str] = {}
    for layer in model.layers:
        f = formats.get(layer.name)
        if f is None:
            if activation is not None and layer.type == "PRelu":
                _slope(model, new, layer)
            in_fmts = [None if n is None else new.tensors[n].qformat for n in layer.inputs]
            outs = propagate.output_formats(layer.op, in_fmts, len(layer.outputs))
            if activation is not None and layer.type in LIMITED_TYPES:
                outs = _limit(layer, new, outs, activation)
            for name, fmt in zip(layer.outputs, outs):
                new.tensors[name] = _activation(model.tensors[name], fmt)
            new.layers.append(Layer(layer.name, layer.op, list(layer.inputs), list(layer.outputs),
                                    layer.origin, layer.version))
            continue
        inputs = list(layer.inputs)
        x = new.tensors[inputs[0]]
        want = f.input
        shared = requantized.get((inputs[0], want))
        if shared is not None:
            inputs[0] = shared
        elif (want is None) != (x.qformat is None) or (want is not None and x.qformat != want):
            rq_name = f"{layer.name}/quantize_in"
            out_name = f"{inputs[0].split('@', 1)[0]}@{rq_name}"
            k = 2
            while out_name in used_names:
                out_name = f"{inputs[0].split('@', 1)[0]}@{rq_name}#{k}"
                k += 1
            used_names.add(out_name)
            new.tensors[out_name] = Tensor(out_name, x.shape,
                                           DataType.FLOAT32 if want is None else DataType.for_bw(want.bw), want)
            new.layers.append(Layer(rq_name, ops.Requantize(), [inputs[0]], [out_name], origin=layer.name))
            requantized[(inputs[0], want)] = out_name
            inputs[0] = out_name
        if f.params is not None:
            w = model.tensors[layer.inputs[1]]
            new.tensors[w.name] = _constant(w.name, np.asarray(w.data, np.float64), f.params)
            if len(inputs) > 2 and inputs[2] is not None:
                b = model.tensors[inputs[2]]
                bf = _bias_format(layer, f, bias, b.size)
                if bf is not None:
                    new.tensors[b.name] = _constant(b.name, np.asarray(b.data, np.float64).reshape(b.shape), bf)
        y = layer.outputs[0]
        new.tensors[y] = _activation(model.tensors[y], f.output)
        new.layers.append(Layer(layer.name, layer.op, inputs, list(layer.outputs), layer.origin, layer.version))
    # keep the tensor order of the source model (inserted tensors follow their source)
    ordered: dict[str, Tensor] = {}
    for name in model.tensors:
        if name in new.tensors:
            ordered[name] = new.tensors[name]
    for name, t in new.tensors.items():
        ordered.setdefault(name, t)
    new.tensors = ordered
    if metadata:
        new.metadata.update(metadata)
    return new
