"""Conversion between the in-memory :class:`~dfxsdk.graph.Model` and the graph FlatBuffer.

Used by :mod:`dfxsdk.io`; exposed for tools that embed the graph elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flatbuffers
import numpy as np

from ._generated import dfx_generated as fb
from .errors import DfxFormatError
from .formats import CHANNEL_ORDERS, DataType, QFormat, Rounding
from .graph import Layer, Model, Preprocessing, Tensor
from .ops import OPS_BY_CODE, Op
from .validate import MAX_RANK


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _fb_attr(field_name: str) -> str:
    return "global_" if field_name == "global_" else _camel(field_name)


# -- Model -> FlatBuffer ------------------------------------------------------

def build_graph(model: Model, data_refs: dict[str, tuple[int, int, int]]) -> bytes:
    """Serialise ``model`` to FlatBuffer bytes; ``data_refs`` maps constant
    tensor names to (offset, length, crc32) in the data section."""
    index = {name: i for i, name in enumerate(model.tensors)}

    def idx(name: str | None) -> int:
        return -1 if name is None else index[name]

    root = fb.ModelT()
    root.producerName = model.producer_name
    root.producerVersion = model.producer_version
    root.name = model.name
    root.tensors = [_tensor_t(t, data_refs.get(t.name)) for t in model.tensors.values()]
    root.layers = [_layer_t(layer, idx) for layer in model.layers]
    root.inputs = [index[n] for n in model.inputs]
    root.outputs = [index[n] for n in model.outputs]
    root.preprocessing = []
    for name, pre in model.preprocessing.items():
        p = fb.PreprocessingT()
        p.input = index[name]
        p.mean = [float(v) for v in pre.mean]
        p.scale = [float(v) for v in pre.scale]
        p.channelOrder = CHANNEL_ORDERS.index(pre.channel_order)
        root.preprocessing.append(p)
    root.metadata = []
    for key in sorted(model.metadata):
        kv = fb.KeyValueT()
        kv.key, kv.value = key, model.metadata[key]
        root.metadata.append(kv)
    builder = flatbuffers.Builder(1024)
    builder.ForceDefaults(True)
    builder.Finish(root.Pack(builder), file_identifier=b"DFXG")
    return bytes(builder.Output())


def _tensor_t(t: Tensor, ref: tuple[int, int, int] | None) -> fb.TensorT:
    out = fb.TensorT()
    out.name = t.name
    out.shape = [int(d) for d in t.shape]
    out.type = int(t.dtype)
    if t.qformat is not None:
        q = fb.QuantizationT()
        q.bw = t.qformat.bw
        q.fl = 0 if t.qformat.per_channel else t.qformat.fl
        q.rounding = int(t.qformat.rounding)
        # A NumPy int8 array: flatc's Python object API writes a list of [byte]
        # with PrependByte (unsigned), which rejects negative fl values.
        q.channelFl = (np.array(t.qformat.channel_fl, dtype=np.int8)
                       if t.qformat.per_channel else None)
        q.channelAxis = t.qformat.channel_axis
        out.quantization = q
    if ref is not None:
        d = fb.DataRefT()
        d.offset, d.length, d.crc32 = ref
        out.data = d
    return out


def _layer_t(layer: Layer, idx: Callable[[str | None], int]) -> fb.LayerT:
    out = fb.LayerT()
    out.name = layer.name
    out.opType = layer.op.CODE
    out.op = _op_t(layer.op)
    out.inputs = [idx(n) for n in layer.inputs]
    out.outputs = [idx(n) for n in layer.outputs]
    out.origin = layer.origin
    out.version = layer.version
    return out


def _op_t(op: Op):
    obj = getattr(fb, op.TYPE + "T")()
    for f in dataclasses.fields(op):
        value = getattr(op, f.name)
        if isinstance(value, bytes):
            value = list(value)
        elif isinstance(value, list):
            value = list(value)
        setattr(obj, _fb_attr(f.name), value)
    return obj


# -- FlatBuffer -> Model ------------------------------------------------------

def _text(value, path: str | None = None, where: str = "string") -> str:
    """Decode a FlatBuffer string; invalid UTF-8 is a format error."""
    if not isinstance(value, bytes):
        return value or ""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DfxFormatError(f"string is not valid UTF-8 ({exc.reason} at byte {exc.start})",
                             file=path, field=where) from None
    if "\0" in text:
        raise DfxFormatError("string contains a NUL character", file=path, field=where)
    return text


def _ints(value) -> list[int]:
    return [] if value is None else [int(v) for v in value]


def _floats(value) -> list[float]:
    return [] if value is None else [float(v) for v in value]


def parse_graph(buf: bytes, path: str | None,
                make_tensor: Callable[[fb.TensorT, Tensor], None]) -> Model:
    """Decode a *verified* graph FlatBuffer into a Model.

    ``make_tensor(tensor_t, tensor)`` attaches constant data to each tensor
    that has a DataRef (the reader maps it from the data section).
    """
    root = fb.ModelT.InitFromPackedBuf(buf, 0)
    model = Model(name=_text(root.name, path, "name"),
                  producer_name=_text(root.producerName, path, "producer_name"),
                  producer_version=_text(root.producerVersion, path, "producer_version"),
                  source=path)
    names: list[str] = []
    for i, t in enumerate(root.tensors or []):
        name = _text(t.name, path, f"tensors[{i}].name")
        if t.shape is not None and len(t.shape) > MAX_RANK:
            # Before anything multiplies the dimensions (cost grows with the rank).
            raise DfxFormatError(f"shape has {len(t.shape)} dimensions, at most {MAX_RANK} "
                                 "are allowed", file=path, tensor=name, field="shape")
        if t.shape is not None and any(int(d) < 0 for d in t.shape):
            # Before the data is bound: NumPy reads a negative dimension as "infer".
            raise DfxFormatError(f"shape {_ints(t.shape)} has a negative dimension",
                                 file=path, tensor=name, field="shape")
        try:
            dtype = DataType(t.type)
        except ValueError:
            raise DfxFormatError(f"unknown data type {t.type}", file=path, tensor=name,
                                 field="type") from None
        qformat = None
        if t.quantization is not None:
            q = t.quantization
            try:
                rounding = Rounding(q.rounding)
            except ValueError:
                raise DfxFormatError(f"unknown rounding mode {q.rounding}", file=path, tensor=name,
                                     field="rounding") from None
            channel_fl = tuple(_ints(q.channelFl)) if q.channelFl is not None else None
            qformat = QFormat(int(q.bw), int(q.fl), rounding, channel_fl, int(q.channelAxis))
        tensor = Tensor(name, tuple(_ints(t.shape)), dtype, qformat)
        if t.data is not None:
            make_tensor(t, tensor)
        if name in model.tensors:
            raise DfxFormatError(f"duplicate tensor name (index {i})", file=path, tensor=name)
        model.tensors[name] = tensor
        names.append(name)

    def name_of(i: int, where: str, optional: bool = False) -> str | None:
        if optional and i == -1:
            return None
        if not 0 <= i < len(names):
            raise DfxFormatError(f"tensor index {i} out of range 0..{len(names) - 1}",
                                 file=path, field=where)
        return names[i]

    for k, lt in enumerate(root.layers or []):
        lname = _text(lt.name, path, f"layers[{k}].name")
        op_cls = OPS_BY_CODE.get(lt.opType)
        if op_cls is None:  # the verifier already refuses these
            raise DfxFormatError(f"unknown operator type {lt.opType}", file=path, layer=lname)
        op = _op_from_t(op_cls, lt.op, path, lname)
        inputs = [name_of(int(i), f"layers[{k}].inputs", optional=True) for i in _ints(lt.inputs)]
        outputs = [name_of(int(i), f"layers[{k}].outputs") for i in _ints(lt.outputs)]
        model.layers.append(Layer(lname, op, inputs, outputs,
                                  _text(lt.origin, path, f"layers[{k}].origin") or None,
                                  int(lt.version)))
    model.inputs = [name_of(int(i), "inputs") for i in _ints(root.inputs)]
    model.outputs = [name_of(int(i), "outputs") for i in _ints(root.outputs)]
    for p in root.preprocessing or []:
        target = name_of(int(p.input), "preprocessing.input")
        if target in model.preprocessing:
            raise DfxFormatError("two preprocessing entries for the same input", file=path,
                                 tensor=target, field="preprocessing.input")
        if not 0 <= p.channelOrder < len(CHANNEL_ORDERS):
            raise DfxFormatError(f"unknown channel order {p.channelOrder}", file=path,
                                 field="preprocessing.channel_order")
        model.preprocessing[target] = Preprocessing(_floats(p.mean), _floats(p.scale),
                                                    CHANNEL_ORDERS[p.channelOrder])
    prev_key: bytes | None = None
    for k, kv in enumerate(root.metadata or []):
        key = _text(kv.key, path, f"metadata[{k}].key")
        raw_key = key.encode("utf-8")
        if prev_key is not None and raw_key <= prev_key:
            raise DfxFormatError(f"metadata key '{key}' is not after '{prev_key.decode()}': keys "
                                 "must be unique and sorted", file=path, field=f"metadata[{k}].key")
        prev_key = raw_key
        model.metadata[key] = _text(kv.value, path, f"metadata[{k}].value")
    return model


def _op_from_t(op_cls: type[Op], obj, path: str | None = None, layer: str | None = None) -> Op:
    kwargs = {}
    for f in dataclasses.fields(op_cls):
        value = getattr(obj, _fb_attr(f.name))
        if isinstance(value, bytes) and f.type in ("str", str):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise DfxFormatError("string is not valid UTF-8", file=path, layer=layer,
                                     field=f.name) from None
        elif f.name == "options":
            value = bytes(_ints(value))
        elif isinstance(value, (list, np.ndarray)) or (value is None and "list" in str(f.type)):
            value = _floats(value) if "float" in str(f.type) else _ints(value)
        elif isinstance(value, (np.integer, np.floating, np.bool_)):
            value = value.item()
        kwargs[f.name] = value
    return op_cls(**kwargs)
