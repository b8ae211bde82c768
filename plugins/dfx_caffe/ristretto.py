"""Ristretto's dynamic fixed point layers, as integer tensors.

A Ristretto layer (TEST phase, CPU semantics) quantizes its bottom blob in
place with (bw_layer_in, fl_layer_in), its weights and bias with (bw_params,
fl_params), and its output after the bias add with (bw_layer_out,
fl_layer_out); rounding NEAREST is C ``round()``, i.e. half away from zero.
Here that becomes: a Requantize layer ``<layer>/quantize_in`` when the
current tensor of the bottom blob is not already in the input format (the
blob is then rebound to the quantized tensor, as later readers of the blob
see quantized values in Ristretto too), integer weight and bias constants,
and an integer output tensor.

INTEGER_POWER_OF_2_WEIGHTS (CPU semantics: inputs, outputs and bias stay
float, Trim2IntegerPowerOf2 only on the weights): each weight becomes
sign(w) * 2^e with e = clamp(round(log2|w|), exp_min, exp_max), rounding the
float32 log2 half away from zero (0 gives +2^exp_min). Those values are
exact dynamic fixed point codes ``sign * 2^(e - exp_min)`` with
``fl = -exp_min`` and ``bw = exp_max - exp_min + 2``; the layer computes in
float on float activations, as Ristretto's CPU does.

MINIFLOAT: the input, the weights, the bias and the output are trimmed with
Ristretto's Trim2MiniFloat (:mod:`dfxsdk.minifloat`): weights and bias are
stored trimmed (float32), the input and the output go through Minifloat
layers (``<layer>/trim_in``, ``<layer>/trim_out``); the layer computes in float.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from dfxsdk import fixedpoint, ops
from dfxsdk.errors import DfxImportError, DfxUnsupportedError
from dfxsdk.formats import FL_MAX, FL_MIN, DataType, QFormat, Rounding
from dfxsdk.graph import Model

from . import parse
from ._proto import caffe_pb2 as pb
from .build import Builder

#: Ristretto layer type -> the Caffe type it extends.
RISTRETTO_TYPES = {
    "ConvolutionRistretto": "Convolution",
    "FcRistretto": "InnerProduct",
    "DeconvolutionRistretto": "Deconvolution",
    "LRNRistretto": "LRN",
}
QP = pb.QuantizationParameter


@dataclass(frozen=True)
class Spec:
    """One Ristretto layer's three formats (input and output None: the layer stays float there)."""

    input: QFormat | None
    output: QFormat | None
    params: QFormat | None
    #: (exp_min, exp_max) of INTEGER_POWER_OF_2_WEIGHTS; the bias then stays float.
    power_of_two: tuple[int, int] | None = None
    #: The Minifloat operator of MINIFLOAT (params None: trimmed float constants).
    minifloat: ops.Minifloat | None = None

    def weight_codes(self, w: np.ndarray) -> np.ndarray:
        """The integer codes of weights ``w`` in :attr:`params`."""
        if self.power_of_two is None:
            return fixedpoint.quantize(w, self.params)
        return power_of_two_codes(w, *self.power_of_two)


def power_of_two_codes(w: np.ndarray, exp_min: int, exp_max: int) -> np.ndarray:
    """Ristretto's Trim2IntegerPowerOf2 (NEAREST) as codes ``sign * 2^(e - exp_min)`` (int64)."""
    w = np.asarray(w, np.float32)
    with np.errstate(divide="ignore"):
        e = np.log2(np.abs(w))  # float32, like log2f; log2(0) = -inf clamps to exp_min
    e = np.sign(e) * np.floor(np.abs(e) + np.float32(0.5))  # C round(): halves away from zero
    e = np.clip(np.nan_to_num(e, nan=exp_min, neginf=exp_min), exp_min, exp_max).astype(np.int64)
    sign = np.where(w >= 0, 1, -1).astype(np.int64)
    return sign << (e - exp_min)


def spec_for(lp: pb.LayerParameter) -> Spec:
    """The formats of Ristretto layer ``lp``; refuses what has no exact integer form."""
    if lp.type == "LRNRistretto":
        raise DfxUnsupportedError(
            "LRNRistretto is not supported: Ristretto implements it only in minifloat (and only on "
            "GPU), which has no exact dynamic fixed point equivalent; use a plain LRN layer",
            layer=lp.name)
    qp = lp.quantization_param
    if qp.rounding_scheme == QP.STOCHASTIC:
        raise DfxUnsupportedError(
            "rounding_scheme STOCHASTIC is not supported: it rounds at random on every forward pass, so "
            "no fixed integer weights reproduce it; set rounding_scheme: NEAREST",
            layer=lp.name, field="quantization_param.rounding_scheme")
    for bw_name, fl_name in (("bw_layer_in", "fl_layer_in"), ("bw_layer_out", "fl_layer_out"),
                             ("bw_params", "fl_params")):
        bw, fl = getattr(qp, bw_name), getattr(qp, fl_name)
        if not 1 <= bw <= 32:
            raise DfxImportError(f"bit width {bw} is outside 1..32", layer=lp.name,
                                 field=f"quantization_param.{bw_name}")
        if not FL_MIN <= fl <= FL_MAX:
            raise DfxImportError(f"fractional length {fl} is outside {FL_MIN}..{FL_MAX}", layer=lp.name,
                                 field=f"quantization_param.{fl_name}")
    r = Rounding.HALF_AWAY_FROM_ZERO
    if qp.precision == QP.INTEGER_POWER_OF_2_WEIGHTS:
        return _power_of_two_spec(lp, r)
    if qp.precision == QP.MINIFLOAT:
        op = ops.Minifloat(mant_bits=qp.mant_bits, exp_bits=qp.exp_bits)
        try:
            op.check()
        except ops.ShapeError as exc:
            raise DfxUnsupportedError(f"minifloat {exc}", layer=lp.name, field="quantization_param") from None
        return Spec(None, None, None, minifloat=op)
    return Spec(QFormat(qp.bw_layer_in, qp.fl_layer_in, r), QFormat(qp.bw_layer_out, qp.fl_layer_out, r),
                QFormat(qp.bw_params, qp.fl_params, r))


def _power_of_two_spec(lp: pb.LayerParameter, r: Rounding) -> Spec:
    qp = lp.quantization_param
    lo, hi = qp.exp_min, qp.exp_max
    if lo > hi:
        raise DfxImportError(f"exp_min {lo} is above exp_max {hi}", layer=lp.name, field="quantization_param.exp_min")
    bw, fl = hi - lo + 2, -lo
    if bw > 32 or not FL_MIN <= fl <= FL_MAX:
        raise DfxImportError(f"power-of-two exponents {lo}..{hi} need codes of {bw} bits with fl {fl}, beyond "
                             f"32 bits or fl {FL_MIN}..{FL_MAX}", layer=lp.name, field="quantization_param.exp_min")
    return Spec(None, None, QFormat(bw, fl, r), power_of_two=(lo, hi))


def trim(b: Builder, blob: str, op: ops.Minifloat, name: str, origin: str) -> str:
    """A Minifloat layer ``name`` writing the next value of ``blob`` from its current one."""
    t = b.current(blob, origin)
    rq = b.unique_layer(name)
    (out,) = b.append(rq, op, [t.name], [blob], shapes=[t.shape], origin=origin)
    return out


def same_format(a: QFormat | None, b: QFormat) -> bool:
    return a is not None and not a.per_channel and (a.bw, a.fl) == (b.bw, b.fl)


def quantize_input(b: Builder, blob: str, spec: Spec, layer: str) -> str:
    """The tensor a Ristretto layer reads for ``blob``, inserting a Requantize (Minifloat) if needed."""
    t = b.current(blob, layer)
    if spec.minifloat is not None:
        producer = b.model.producer(t.name)
        if producer is not None and producer.op == spec.minifloat:
            return t.name  # already trimmed to this format (trimming twice changes nothing)
        return trim(b, blob, spec.minifloat, f"{layer}/trim_in", layer)
    if spec.input is None or same_format(t.qformat, spec.input):
        return t.name
    rq = b.unique_layer(f"{layer}/quantize_in")
    (out,) = b.append(rq, ops.Requantize(), [t.name], [blob], formats=[spec.input], origin=layer)
    return out


# -- overlaying a Ristretto prototxt on a deploy net ---------------------------

def overlay(deploy: parse.NetFile, rist: parse.NetFile, weights) -> None:
    """Give ``deploy``'s layers the Ristretto types and quantization of ``rist``.

    Layers are matched by name. Every Ristretto layer must exist in the deploy
    net with the same base type and in the weights; otherwise DfxImportError.
    """
    wanted = [l for l in rist.net.layer if parse.in_test_phase(l) and l.type in RISTRETTO_TYPES]
    if not wanted:
        warnings.warn(f"{rist.path}: no Ristretto layer (ConvolutionRistretto, FcRistretto, ...) in "
                      f"the TEST phase; the model stays float", parse.CaffeWarning, stacklevel=3)
    by_name = {l.name: l for l in deploy.net.layer if parse.in_test_phase(l)}
    for rl in wanted:
        if weights is not None and weights.file is not None and rl.name not in weights:
            raise DfxImportError(f"is a Ristretto layer, but the weights ({weights.file.path}) have no "
                                 f"layer of this name", file=str(rist.path), layer=rl.name)
        dl = by_name.get(rl.name)
        if dl is None:
            raise DfxImportError(f"is a Ristretto layer, but {deploy.path} has no layer of this name",
                                 file=str(rist.path), layer=rl.name)
        base = RISTRETTO_TYPES[rl.type]
        if dl.type not in (base, rl.type):
            raise DfxImportError(f"is {rl.type} in {rist.path} but {dl.type} in {deploy.path}",
                                 file=str(rist.path), layer=rl.name)
        for pname in ("convolution_param", "inner_product_param"):
            if rl.HasField(pname) and getattr(rl, pname).num_output != getattr(dl, pname).num_output:
                raise DfxImportError(f"num_output differs: {getattr(rl, pname).num_output} in {rist.path}, "
                                     f"{getattr(dl, pname).num_output} in {deploy.path}",
                                     file=str(rist.path), layer=rl.name)
        dl.type = rl.type
        dl.quantization_param.CopyFrom(rl.quantization_param)
        if not rl.HasField("quantization_param"):
            dl.ClearField("quantization_param")
    quantized = {l.name for l in wanted}
    for dl in by_name.values():
        if dl.type in RISTRETTO_TYPES.values() and dl.type != "LRN" and dl.name not in quantized and wanted:
            warnings.warn(f"{deploy.path}: layer '{dl.name}' ({dl.type}) is not quantized in {rist.path}; "
                          f"it stays float", parse.CaffeWarning, stacklevel=3)


def check_legacy(weights_file: parse.NetFile | None, net: parse.NetFile) -> None:
    """Warn when a caffemodel's stored quantization_param disagrees with the prototxt's."""
    if weights_file is None:
        return
    stored = dict(weights_file.legacy_quantization)
    for l in weights_file.net.layer:
        if l.HasField("quantization_param"):
            stored[l.name] = l.quantization_param
    for l in net.net.layer:
        if l.type in RISTRETTO_TYPES and l.name in stored and \
                stored[l.name].SerializeToString(deterministic=True) != \
                l.quantization_param.SerializeToString(deterministic=True):
            warnings.warn(f"layer '{l.name}': the quantization_param stored in {weights_file.path} differs "
                          f"from {net.path}; the prototxt's is used", parse.CaffeWarning, stacklevel=3)


# -- average pools feeding Ristretto layers -----------------------------------

def absorb_pool_requantize(model: Model) -> None:
    """Give a float AVE pool the format its Ristretto consumers quantize to.

    When every reader of an average pool's float output is a Requantize that
    a Ristretto layer inserted, all to the same format, the pool writes that
    format directly (rounding its exact average once, as Ristretto does) and
    the Requantize layers disappear.
    """
    for pool in [l for l in model.layers if isinstance(l.op, ops.Pool2D) and l.op.type == ops.POOL_AVERAGE]:
        out = model.tensors[pool.outputs[0]]
        src = model.tensors[pool.inputs[0]]
        if out.qformat is not None or src.qformat is None or out.name in model.outputs:
            continue
        readers = model.consumers(out.name)
        if not readers or not all(isinstance(r.op, ops.Requantize) and r.origin for r in readers):
            continue
        fmts = {(model.tensors[r.outputs[0]].qformat.bw, model.tensors[r.outputs[0]].qformat.fl)
                for r in readers if model.tensors[r.outputs[0]].qformat is not None}
        if len(fmts) != 1 or any(model.tensors[r.outputs[0]].qformat is None for r in readers):
            continue
        fmt = model.tensors[readers[0].outputs[0]].qformat
        out.qformat, out.dtype = fmt, DataType.for_bw(fmt.bw)
        for r in readers:
            gone = r.outputs[0]
            model.layers.remove(r)
            for l in model.layers:
                l.inputs = [out.name if n == gone else n for n in l.inputs]
            model.outputs = [out.name if n == gone else n for n in model.outputs]
            del model.tensors[gone]
