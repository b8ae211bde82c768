"""Semantic validation of a model: every rule of spec/format.md, "Validity".

Run on every model that is loaded (after the structural FlatBuffer check) and
on every model before it is saved. Each failure raises DfxFormatError naming
the tensor or layer and the field.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import TYPE_CHECKING

import numpy as np

from . import bounds
from .bounds import ACC_LIMIT_BITS, Operand
from .container import FORMAT_VERSION
from .errors import DfxFormatError
from .fixedpoint import dyadic
from .formats import CHANNEL_ORDERS, FL_MAX, FL_MIN, DataType, QFormat
from .ops import ELTWISE_PROD, ELTWISE_SUM, OPS, POOL_AVERAGE, Custom, Eltwise, Op, ShapeError

if TYPE_CHECKING:  # graph imports this module (Model.validate): no import back at run time
    from .graph import Model, Tensor

MAX_RANK = 8
#: Largest number of inputs, and of outputs, of one layer.
MAX_LAYER_IO = 64
#: Largest element count of one tensor (2**40: larger than any real network).
MAX_ELEMENTS = 1 << 40


def integer_form(model: Model, op: Op, inputs: list[str | None], outputs: list[str]) -> bool:
    """True when the layer runs in integer form (spec/arithmetic.md, "Forms")."""
    if not op.INTEGER:
        return False
    names = [n for n in inputs if n is not None] + list(outputs)
    return all(model.tensors[n].qformat is not None for n in names)


def validate_model(model: Model) -> None:
    """Raise DfxFormatError unless ``model`` satisfies every validity rule."""
    src = model.source
    _check_writable(model)
    for index, (name, tensor) in enumerate(model.tensors.items()):
        if name != tensor.name:
            raise DfxFormatError(f"stored under the name '{name}'", file=src, tensor=tensor.name)
        if not name:
            raise DfxFormatError(f"tensor #{index} has an empty name", file=src, field="name")
        _check_tensor(tensor, src)
    produced: dict[str, str] = {}
    graph_inputs = set(model.inputs)
    available = set(graph_inputs) | {t.name for t in model.constants()}
    for name in model.inputs:
        t = model.tensors.get(name)
        if t is None:
            raise DfxFormatError(f"graph input '{name}' is not a tensor", file=src, field="inputs")
        if t.is_constant:
            raise DfxFormatError("graph input is a constant", file=src, tensor=name, field="inputs")
    if len(graph_inputs) != len(model.inputs):
        raise DfxFormatError("a graph input is listed twice", file=src, field="inputs")
    _check_input_batch(model)
    seen_layers: set[str] = set()
    for index, layer in enumerate(model.layers):
        where = dict(file=src, layer=layer.name)
        if not layer.name:
            raise DfxFormatError(f"layer #{index} has an empty name", file=src, field="name")
        if layer.name in seen_layers:
            raise DfxFormatError("duplicate layer name", **where)
        seen_layers.add(layer.name)
        if layer.version != 1:
            raise DfxFormatError(f"{layer.type} version {layer.version} is not implemented "
                                 "(this reader knows version 1)", **where, field="version")
        op = layer.op
        n_in, n_out = len(layer.inputs), len(layer.outputs)
        if n_in < op.MIN_INPUTS or (op.MAX_INPUTS is not None and n_in > op.MAX_INPUTS):
            raise DfxFormatError(f"{op.TYPE} takes {op.MIN_INPUTS}..{op.MAX_INPUTS or 'any'} "
                                 f"inputs, got {n_in}", **where, field="inputs")
        if n_in > MAX_LAYER_IO or n_out > MAX_LAYER_IO:
            raise DfxFormatError(f"{n_in} inputs and {n_out} outputs: a layer has at most "
                                 f"{MAX_LAYER_IO} of each", **where, field="inputs" if n_in > MAX_LAYER_IO
                                 else "outputs")
        if n_out < 1 or (op.NUM_OUTPUTS is not None and n_out != op.NUM_OUTPUTS):
            raise DfxFormatError(f"{op.TYPE} has {op.NUM_OUTPUTS or 'one or more'} outputs, "
                                 f"got {n_out}", **where, field="outputs")
        for pos, name in enumerate(layer.inputs):
            if name is None:
                if pos < op.MIN_INPUTS:
                    raise DfxFormatError(f"input {pos} is required", **where, field="inputs")
                continue
            if name not in model.tensors:
                raise DfxFormatError(f"input '{name}' is not a tensor", **where, field="inputs")
            if name not in available:
                raise DfxFormatError(f"input '{name}' is not computed before this layer",
                                     **where, field="inputs")
        for name in layer.outputs:
            t = model.tensors.get(name)
            if t is None:
                raise DfxFormatError(f"output '{name}' is not a tensor", **where, field="outputs")
            if t.is_constant or name in graph_inputs:
                raise DfxFormatError(f"output '{name}' is a constant or graph input",
                                     **where, field="outputs")
            if name in produced:
                raise DfxFormatError(f"output '{name}' is also written by layer "
                                     f"'{produced[name]}'", **where, field="outputs")
            produced[name] = layer.name
            available.add(name)
        _check_layer(model, layer, where)
    for name in model.outputs:
        if name not in available:
            raise DfxFormatError(f"graph output '{name}' is never computed", file=src, field="outputs")
    for t in model.tensors.values():
        if not t.is_constant and t.name not in available:
            raise DfxFormatError("activation is neither a graph input nor written by a layer",
                                 file=src, tensor=t.name)
    for name, pre in model.preprocessing.items():
        if name not in graph_inputs:
            raise DfxFormatError(f"preprocessing for '{name}', which is not a graph input",
                                 file=src, field="preprocessing")
        shape = model.tensors[name].shape
        channels = shape[1] if len(shape) > 1 else 1
        for fld, values in (("mean", pre.mean), ("scale", pre.scale)):
            if len(values) not in (0, 1, channels):
                raise DfxFormatError(f"{len(values)} values for {channels} channels",
                                     file=src, tensor=name, field=f"preprocessing.{fld}")


def _check_input_batch(model: Model) -> None:
    """Every graph input of rank >= 1 stores the same batch (dimension 0)."""
    batches = {model.tensors[n].shape[0]: n for n in model.inputs if model.tensors[n].shape}
    if len(batches) > 1:
        raise DfxFormatError(f"graph inputs store different batch sizes {sorted(batches)}",
                             file=model.source, tensor=max(batches.values()), field="shape")


def _check_tensor(t: Tensor, src: str | None) -> None:
    where = dict(file=src, tensor=t.name)
    if not t.name:
        raise DfxFormatError("tensor with an empty name", file=src)
    if len(t.shape) > MAX_RANK or any(d < 0 for d in t.shape):
        raise DfxFormatError(f"shape {list(t.shape)} must have at most {MAX_RANK} dimensions, "
                             "each >= 0", **where, field="shape")
    if math.prod(t.shape) > MAX_ELEMENTS:
        raise DfxFormatError(f"shape {list(t.shape)} has more than 2**40 elements", **where,
                             field="shape")
    q = t.qformat
    if t.dtype is DataType.FLOAT32:
        if q is not None:
            raise DfxFormatError("FLOAT32 tensor has a quantization", **where, field="quantization")
    else:
        if q is None:
            raise DfxFormatError(f"{t.dtype.name} tensor has no quantization", **where,
                                 field="quantization")
        _check_qformat(q, t, where)
    if q is not None and q.per_channel and not t.is_constant:
        raise DfxFormatError("per-channel fl is only allowed for constants", **where,
                             field="quantization.channel_fl")
    if t.dtype.is_packed and not t.is_constant:
        raise DfxFormatError(f"{t.dtype.name} is only allowed for constants", **where, field="type")
    data = t._data
    if data is not None and t.raw is None:
        if tuple(data.shape) != t.shape:
            raise DfxFormatError(f"data has shape {list(data.shape)}, tensor says {list(t.shape)}",
                                 **where, field="data")
        if t.dtype is DataType.FLOAT32 and data.dtype != np.float32:
            raise DfxFormatError(f"FLOAT32 tensor holds {data.dtype} data", **where, field="data")
        if t.dtype.is_integer and data.dtype.kind not in "iu":
            raise DfxFormatError(f"{t.dtype.name} tensor holds {data.dtype} data", **where, field="data")


def _check_qformat(q: QFormat, t: Tensor, where: dict) -> None:
    if not 1 <= q.bw <= t.dtype.bits:
        raise DfxFormatError(f"bw {q.bw} does not fit {t.dtype.name} (1..{t.dtype.bits})",
                             **where, field="quantization.bw")
    fls = q.channel_fl if q.per_channel else (q.fl,)
    bad = [v for v in fls if not FL_MIN <= v <= FL_MAX]
    if bad:
        raise DfxFormatError(f"fl {bad[0]} outside {FL_MIN}..{FL_MAX}", **where,
                             field="quantization.fl")
    if q.per_channel:
        if not 0 <= q.channel_axis < len(t.shape):
            raise DfxFormatError(f"channel_axis {q.channel_axis} out of range for rank "
                                 f"{len(t.shape)}", **where, field="quantization.channel_axis")
        if len(q.channel_fl) != t.shape[q.channel_axis]:
            raise DfxFormatError(f"{len(q.channel_fl)} channel fl values for "
                                 f"{t.shape[q.channel_axis]} channels", **where,
                                 field="quantization.channel_fl")


def check_values(t: Tensor, src: str | None) -> None:
    """Raise unless every integer element of constant ``t`` lies in its bw range."""
    if t.qformat is None or not t.is_constant:
        return
    data = t.data
    if data.size and (int(data.min()) < t.qformat.qmin or int(data.max()) > t.qformat.qmax):
        raise DfxFormatError(f"values [{int(data.min())}, {int(data.max())}] exceed bw "
                             f"{t.qformat.bw} range [{t.qformat.qmin}, {t.qformat.qmax}]",
                             file=src, tensor=t.name, field="data")


def _check_layer(model: Model, layer, where: dict) -> None:
    op = layer.op
    tensors = model.tensors
    for f in fields(op):
        value = getattr(op, f.name)
        if isinstance(value, float) and math.isnan(value) or (
                isinstance(value, list) and any(isinstance(v, float) and math.isnan(v) for v in value)):
            raise DfxFormatError(f"option {f.name} is NaN", **where, field=f.name)
    try:
        op.check()
        in_shapes = [None if n is None else tensors[n].shape for n in layer.inputs]
        inferred = op.infer_shapes(in_shapes)
    except ShapeError as exc:
        raise DfxFormatError(str(exc), **where, field="options") from None
    except (TypeError, IndexError, ValueError, ZeroDivisionError) as exc:
        raise DfxFormatError(f"inconsistent shapes or options ({exc})", **where, field="options") from None
    if op.NUM_OUTPUTS is None and len(inferred) > 1 and len(inferred) != len(layer.outputs):
        raise DfxFormatError(f"{len(layer.outputs)} outputs, options give {len(inferred)}",
                             **where, field="outputs")
    for name, shape in zip(layer.outputs, inferred * (len(layer.outputs) if len(inferred) == 1 else 1)):
        declared = tensors[name].shape
        if shape is not None and tuple(shape) != declared:
            raise DfxFormatError(f"output shape {list(declared)} != {list(shape)} computed from "
                                 "the inputs and options", **where, tensor=name, field="shape")
    if op.TYPE == "Reshape":
        src_shape, dst_shape = tensors[layer.inputs[0]].shape, tensors[layer.outputs[0]].shape
        if math.prod(src_shape) != math.prod(dst_shape) or src_shape[:1] != dst_shape[:1]:
            raise DfxFormatError(f"cannot reshape {list(src_shape)} to {list(dst_shape)} "
                                 "(element count and batch must match)", **where, field="shape")
    if op.LAYOUT_ONLY:
        fin = tensors[layer.inputs[0]].qformat
        for name in layer.outputs:
            if tensors[name].qformat != fin or tensors[name].dtype != tensors[layer.inputs[0]].dtype:
                raise DfxFormatError(f"{op.TYPE} only moves values: output format must equal "
                                     "the input format", **where, tensor=name, field="quantization")
    if integer_form(model, op, layer.inputs, layer.outputs):
        _check_integer_layer(model, layer, where)


def _bits(t: Tensor) -> int:
    """Bits a value of ``t`` can occupy (storage bits for constants, bw otherwise)."""
    return t.dtype.bits if t.is_constant else t.qformat.bw


def _fl_range(q: QFormat) -> tuple[int, int]:
    fls = q.channel_fl if q.per_channel else (q.fl,)
    return min(fls), max(fls)


def _check_integer_layer(model: Model, layer, where: dict) -> None:
    op = layer.op
    if isinstance(op, Eltwise) and op.coefficients:
        for c in op.coefficients:
            if dyadic(c) is None:
                raise DfxFormatError(f"coefficient {c} is not m*2^-e (|m| < 2^15, e <= 15), as the "
                                     "integer form needs; give the layer a float output",
                                     **where, field="coefficients")
    _check_integer_bounds(model, layer, where)


# -- integer width bounds (spec/arithmetic.md, section 3.4; mirrored in kernels/src/validate.c) --

#: Integer-form operators whose data input (input 0) may have per-channel fl.
_PER_CHANNEL_DATA_OK = ("Concat", "Eltwise")


def _operand(t: Tensor) -> Operand:
    lo, hi = _fl_range(t.qformat)
    return Operand(_bits(t), lo, hi)


def integer_bits(model: Model, layer) -> int:
    """Width bound of ``layer``'s integer form (bounds.py); 0 for layers that need none."""
    op, tensors = layer.op, model.tensors
    ins = [None if n is None else tensors[n] for n in layer.inputs]
    if op.TYPE in ("Conv2D", "Deconv2D", "FullyConnected"):
        x, w, b = (ins + [None])[:3]
        if op.TYPE == "FullyConnected":
            k, out_axis = w.shape[1], 0
        elif op.TYPE == "Conv2D":
            k, out_axis = w.shape[1] * w.shape[2] * w.shape[3], 0
        else:
            k, out_axis = w.shape[0] // op.group * w.shape[2] * w.shape[3], 1
        wq = w.qformat
        w_shift = wq.per_channel and wq.channel_axis != out_axis and _fl_range(wq)[1] - _fl_range(wq)[0]
        return bounds.linear_bits(_operand(x), _operand(w), b and _operand(b), k, int(w_shift))
    if op.TYPE == "Scale":
        x, s, b = (ins + [None])[:3]
        return bounds.linear_bits(_operand(x), _operand(s), b and _operand(b), 1, 0)
    if op.TYPE == "PRelu":
        return bounds.prelu_bits(_operand(ins[0]), _operand(ins[1]))
    if op.TYPE == "Pool2D" and op.type == POOL_AVERAGE:
        x = ins[0]
        kh, kw = op.window(x.shape[2], x.shape[3])[:2]
        return bounds.pool_average_bits(_operand(x), kh * kw)
    if isinstance(op, Eltwise):
        operands = [_operand(t) for t in ins]
        if op.operation == ELTWISE_SUM:
            coeffs = [dyadic(c) for c in op.coefficients] if op.coefficients else [(1, 0)] * len(ins)
            return bounds.eltwise_sum_bits(operands, coeffs)
        if op.operation == ELTWISE_PROD:
            return bounds.eltwise_prod_bits(operands)
        return bounds.eltwise_max_bits(operands)
    return 0


def _check_integer_bounds(model: Model, layer, where: dict) -> None:
    x = model.tensors[layer.inputs[0]] if layer.inputs and layer.inputs[0] else None
    if x is not None and x.qformat.per_channel and layer.op.TYPE not in _PER_CHANNEL_DATA_OK:
        raise DfxFormatError(f"input 0 of an integer-form {layer.op.TYPE} cannot have per-channel fl",
                             **where, tensor=x.name, field="quantization.channel_fl")
    total = integer_bits(model, layer)
    if total > ACC_LIMIT_BITS:
        raise DfxFormatError(f"accumulator may need {total} bits (limit {ACC_LIMIT_BITS}): "
                             "reduce bit widths or the fl gaps between operands",
                             **where, field="quantization")


# -- what save() can write: types of names, strings, operators, the format version ----------

def _check_writable(model: Model) -> None:
    """Refuse what :func:`dfxsdk.save` could not write or would silently drop, naming the field."""
    src = model.source
    for fld in ("name", "producer_name", "producer_version"):
        if not isinstance(getattr(model, fld), str):
            raise DfxFormatError(f"model {fld} must be a string, got {type(getattr(model, fld)).__name__}",
                                 file=src, field=fld)
    if not isinstance(model.metadata, dict):
        raise DfxFormatError(f"metadata must be a dict of strings, got {type(model.metadata).__name__}",
                             file=src, field="metadata")
    for key, value in model.metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise DfxFormatError(f"metadata entries must be strings, got {key!r}: {type(value).__name__} "
                                 f"{value!r:.40}", file=src, field=f"metadata[{key!r}]")
    version = model.format_version
    if version is not None:
        ok = (isinstance(version, tuple) and len(version) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in version))
        major, minor = FORMAT_VERSION
        if not ok or version[0] != major or not 0 <= version[1] <= minor:
            raise DfxFormatError(f"format_version {version!r} cannot be written: save() writes format "
                                 f"{major}.{minor} (set format_version to None, or to ({major}, n) with "
                                 f"n <= {minor})", file=src, field="format_version")
    for name, tensor in model.tensors.items():
        if not isinstance(name, str) or not isinstance(tensor.name, str):
            raise DfxFormatError(f"tensor names must be strings, got {name!r}", file=src, field="name")
    for fld in ("inputs", "outputs"):
        for name in getattr(model, fld):
            if not isinstance(name, str):
                raise DfxFormatError(f"graph {fld} must be tensor names, got {name!r}", file=src, field=fld)
    for name, pre in model.preprocessing.items():
        if pre.channel_order not in CHANNEL_ORDERS:
            raise DfxFormatError(f"channel order {pre.channel_order!r} is not one of {', '.join(CHANNEL_ORDERS)}",
                                 file=src, tensor=str(name), field="preprocessing.channel_order")
    for index, layer in enumerate(model.layers):
        _check_layer_writable(layer, index, src)


def _check_layer_writable(layer, index: int, src: str | None) -> None:
    if not isinstance(layer.name, str):
        raise DfxFormatError(f"layer #{index} name must be a string, got {layer.name!r}", file=src, field="name")
    where = dict(file=src, layer=layer.name)
    op = layer.op
    cls = type(op)
    if not isinstance(op, Op) or OPS.get(getattr(op, "TYPE", "")) is not cls:
        raise DfxFormatError(f"op is a {cls.__module__}.{cls.__qualname__}, not one of the operator classes "
                             "of dfxsdk.ops; an operator of a plugin is stored as ops.Custom(name=..., "
                             "options=...) with a CustomOperator provider", **where, field="op")
    if isinstance(op, Custom) and not (isinstance(op.name, str) and isinstance(op.options, bytes)
                                       and isinstance(op.version, int)):
        raise DfxFormatError("Custom needs name: str, version: int, options: bytes", **where, field="op")
    if layer.origin is not None and not isinstance(layer.origin, str):
        raise DfxFormatError(f"origin must be a string or None, got {layer.origin!r}", **where, field="origin")
    for fld in ("inputs", "outputs"):
        names = getattr(layer, fld)
        if not isinstance(names, list) or not all(n is None or isinstance(n, str) for n in names):
            raise DfxFormatError(f"{fld} must be a list of tensor names, got {names!r}", **where, field=fld)
