"""The npzgraph importer: a JSON graph description + a NumPy .npz of named weights.

The format is documented in the package README. Everything here uses only
dfxsdk's public plugin API: the graph model (``dfxsdk.Model``, ``Tensor``,
``Model.append`` to add layers, ``Preprocessing``, ``dfxsdk.ops``), the formats (``QFormat``,
``DataType``), the quantization helper (``dfxsdk.fixedpoint.quantize``) and
the errors (``DfxImportError``, ``DfxUnsupportedError``).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dfxsdk import (DataType, DfxFormatError, DfxImportError, DfxUnsupportedError, Model, Preprocessing,
                    QFormat, Tensor, ops)
from dfxsdk.fixedpoint import quantize
from dfxsdk.providers import Claim, Importer

FORMAT_KEY = "npzgraph"
FORMAT_VERSION = 1
#: What claims() looks for in the first few KB of a .json file.
_SNIFF = re.compile(rb'"npzgraph"\s*:\s*\d')
_ZIP_MAGIC = b"PK\x03\x04"
_WEIGHTS_REF = re.compile(rb'"weights"\s*:\s*"([^"]+)"')
_CHANNEL_ORDERS = ("UNSPECIFIED", "RGB", "BGR", "GRAY")


class NpzGraphImporter(Importer):
    """Imports ``model.json`` (+ ``weights.npz``) into a dfxsdk model."""

    name = "npzgraph"
    description = "npzgraph 1: JSON graph + NumPy .npz weights, optional bw/fl per layer"
    extensions = (".json", ".npz")

    def claims(self, paths: Sequence[Path]) -> bool | Claim:
        graphs = [p for p in paths if p.suffix.lower() == ".json"]
        weights = [p for p in paths if p.suffix.lower() == ".npz"]
        if len(graphs) != 1 or len(weights) > 1 or len(graphs) + len(weights) != len(paths):
            return False
        head = self.head(graphs[0])
        if not _SNIFF.search(head):  # a .json, but not ours
            return False
        if weights:
            return self.head(weights[0], 4) == _ZIP_MAGIC
        ref = _WEIGHTS_REF.search(head)
        expected = graphs[0].parent / (ref.group(1).decode("utf-8", "replace") if ref else graphs[0].stem + ".npz")
        if not expected.is_file():  # our graph, but its weights are not there: say so
            return Claim(f"its weights file {expected} is missing (give the .npz after the graph)")
        return True

    def add_arguments(self, parser) -> None:
        parser.add_argument("--npzgraph-float", action="store_true",
                            help="ignore the layers' 'quant' entries and import a float model")

    def import_model(self, paths: Sequence[Path], options: dict[str, Any]) -> Model:
        graphs = [Path(p) for p in paths if Path(p).suffix.lower() == ".json"]
        if len(graphs) != 1:
            raise DfxImportError(f"expected one .json graph description among {[str(p) for p in paths]}")
        graph_path = graphs[0]
        doc = _read_json(graph_path)
        npz = [Path(p) for p in paths if Path(p).suffix.lower() == ".npz"]
        if npz:
            weights_path = npz[0]
        else:
            ref = doc.get("weights", graph_path.stem + ".npz")
            if not isinstance(ref, str) or not ref:
                raise DfxImportError("must be a file name", file=str(graph_path), field="weights")
            weights_path = graph_path.parent / ref
        arrays = _read_npz(weights_path)
        builder = _Builder(doc, arrays, graph_path, weights_path,
                           float_only=bool(options.get("npzgraph_float", False)),
                           input_shape=options.get("input_shape"))
        return builder.build()


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DfxImportError(f"cannot read: {exc}", file=str(path)) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DfxImportError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                             file=str(path)) from None
    if not isinstance(doc, dict) or FORMAT_KEY not in doc:
        raise DfxImportError(f"not an npzgraph description (no '{FORMAT_KEY}' key)", file=str(path))
    if doc[FORMAT_KEY] != FORMAT_VERSION:
        raise DfxUnsupportedError(f"npzgraph version {doc[FORMAT_KEY]!r} is not supported "
                                  f"(this plugin reads version {FORMAT_VERSION})",
                                  file=str(path), field=FORMAT_KEY)
    return doc


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if path.is_file() and Importer.head(path, 4) != _ZIP_MAGIC:
        raise DfxImportError("not a readable .npz archive (no zip header)", file=str(path))
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DfxImportError("weights file not found (give it on the command line, or set "
                             "'weights' in the JSON)", file=str(path)) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DfxImportError(f"not a readable .npz archive: {exc}", file=str(path)) from None
    for key, a in arrays.items():
        if a.dtype.kind not in "fiu":
            raise DfxImportError(f"array has dtype {a.dtype}; weights must be numeric",
                                 file=str(path), field=key)
    return arrays


class _Builder:
    """Builds the model layer by layer, inferring every activation's shape."""

    def __init__(self, doc: dict, arrays: dict[str, np.ndarray], graph_path: Path, weights_path: Path,
                 *, float_only: bool, input_shape: Sequence[int] | None) -> None:
        self.doc = doc
        self.arrays = arrays
        self.file = str(graph_path)
        self.weights_file = str(weights_path)
        self.float_only = float_only
        self.input_shape = tuple(input_shape) if input_shape else None
        self.used: set[str] = set()
        self.model = Model(name=str(doc.get("name") or graph_path.stem))
        self.model.metadata["npzgraph.source"] = graph_path.name

    # -- errors -------------------------------------------------------------
    def error(self, message: str, *, layer: str | None = None, field: str | None = None) -> DfxImportError:
        return DfxImportError(message, file=self.file, layer=layer, field=field)

    # -- the whole graph ------------------------------------------------------
    def build(self) -> Model:
        m = self.model
        inputs = self.doc.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise self.error("must be a non-empty list of inputs", field="inputs")
        for i, spec in enumerate(inputs):
            self.add_input(spec, i)
        layers = self.doc.get("layers")
        if not isinstance(layers, list) or not layers:
            raise self.error("must be a non-empty list of layers", field="layers")
        prev = m.inputs[0]
        for i, spec in enumerate(layers):
            if not isinstance(spec, dict):
                raise self.error(f"layer #{i} must be an object", field="layers")
            prev = self.add_layer(spec, prev)
        outputs = self.doc.get("outputs", [prev])
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise self.error("must be a list of tensor names", field="outputs")
        for name in outputs:
            if name not in m.tensors or m.tensors[name].is_constant or name in m.inputs:
                raise self.error(f"'{name}' is not computed by any layer", field="outputs")
        m.outputs = list(outputs)
        unused = sorted(set(self.arrays) - self.used)
        if unused:
            raise DfxImportError(f"arrays not used by any layer: {', '.join(unused)} "
                                 "(a misspelt layer name?)", file=self.weights_file)
        return m

    def add_input(self, spec: Any, index: int) -> None:
        field = f"inputs[{index}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise self.error("must be an object with a 'name'", field=field)
        shape = spec.get("shape")
        if index == 0 and self.input_shape is not None:
            shape = list(self.input_shape)
        if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            raise self.error(f"shape must be a list of positive ints, got {shape!r}", field=f"{field}.shape")
        name = spec["name"]
        self.model.add_tensor(Tensor(name, tuple(shape)))
        self.model.inputs.append(name)
        if any(k in spec for k in ("mean", "scale", "channel_order")):
            order = spec.get("channel_order", "UNSPECIFIED")
            if order not in _CHANNEL_ORDERS:
                raise self.error(f"must be one of {', '.join(_CHANNEL_ORDERS)}", field=f"{field}.channel_order")
            try:
                self.model.preprocessing[name] = Preprocessing(
                    [float(v) for v in spec.get("mean", [])], [float(v) for v in spec.get("scale", [])], order)
            except (TypeError, ValueError):
                raise self.error("mean and scale must be lists of numbers", field=field) from None

    # -- one layer ------------------------------------------------------------
    def add_layer(self, spec: dict, prev: str) -> str:
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise self.error(f"layer without a name: {spec!r}", field="layers")
        kind = spec.get("type")
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise DfxUnsupportedError(f"layer type {kind!r} is not supported (supported: "
                                      f"{', '.join(sorted(_HANDLERS))})", file=self.file, layer=name, field="type")
        src = spec.get("input", prev)
        if not isinstance(src, str) or src not in self.model.tensors or self.model.tensors[src].is_constant:
            raise self.error(f"input {src!r} is not a graph input or an earlier layer's output",
                             layer=name, field="input")
        out = spec.get("output", name)
        if not isinstance(out, str) or out in self.model.tensors:
            raise self.error(f"output {out!r} must be a new tensor name", layer=name, field="output")
        quant = None if self.float_only else self.quant(spec, name)
        handler(self, spec, name, src, out, quant)
        return out

    def quant(self, spec: dict, layer: str) -> dict[str, QFormat] | None:
        q = spec.get("quant")
        if q is None:
            return None
        if not isinstance(q, dict) or set(q) - {"in", "out", "params"}:
            raise self.error("must be an object with keys among 'in', 'out', 'params'", layer=layer, field="quant")
        result = {}
        for key, value in q.items():
            if (not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, int) for v in value)
                    or not 1 < value[0] <= 32):
                raise self.error(f"must be [bw, fl] with 2 <= bw <= 32, got {value!r}",
                                 layer=layer, field=f"quant.{key}")
            result[key] = QFormat(value[0], value[1])
        return result

    def weights(self, layer: str, role: str, rank: int, *, required: bool = True) -> np.ndarray | None:
        key = f"{layer}.{role}"
        if key not in self.arrays:
            if required:
                raise DfxImportError(f"no array '{key}' for layer '{layer}'", file=self.weights_file, field=key)
            return None
        a = self.arrays[key]
        if a.ndim != rank:
            raise DfxImportError(f"has shape {list(a.shape)}, layer '{layer}' needs rank {rank}",
                                 file=self.weights_file, field=key)
        self.used.add(key)
        return a.astype(np.float32)

    def constant(self, name: str, value: np.ndarray, fmt: QFormat | None) -> str:
        """A weight tensor: float32, or quantized to ``fmt`` (packed below 8 bits)."""
        if fmt is None:
            self.model.add_tensor(Tensor(name, value.shape)).data = value
        else:
            dtype = DataType.for_bw(fmt.bw, packed=True)       # INT4/INT2 are packed by dfxsdk.save
            tensor = self.model.add_tensor(Tensor(name, value.shape, dtype, fmt))
            tensor.data = quantize(value, fmt).astype(dtype.numpy_dtype)
        return name

    def quantized_input(self, src: str, fmt: QFormat, layer: str) -> str:
        """``src`` in format ``fmt``: itself, or a Requantize layer's output."""
        if self.model.tensors[src].qformat == fmt:
            return src
        added = self.model.append(ops.Requantize(), [src], name=f"{layer}/quantize_input",
                                  outputs=[f"{src}@{layer}"], qformats=fmt, origin=layer)
        return added.outputs[0]

    def emit(self, name: str, op: ops.Op, inputs: list[str | None], out: str, fmt: QFormat | None,
             shape: tuple[int, ...] | None = None) -> None:
        """Add the layer and its output tensor (dfxsdk's graph builder infers the shape unless given)."""
        try:
            self.model.append(op, inputs, name=name, outputs=[out], qformats=fmt,
                              shapes=None if shape is None else [shape])
        except DfxFormatError as exc:
            raise self.error(exc.message, layer=name, field="shape") from None

    def passthrough_format(self, src: str, quant: dict | None, layer: str, *, layout_only: bool) -> QFormat | None:
        """Output format of an integer-capable op: 'quant.out', else the input's format."""
        fin = self.model.tensors[src].qformat
        if quant and set(quant) - {"out"}:
            raise self.error("only 'out' is allowed here", layer=layer, field="quant")
        fout = quant.get("out") if quant else None
        if fin is None:
            if fout is not None:
                raise self.error("'quant.out' needs a quantized input", layer=layer, field="quant.out")
            return None
        if fout is not None and layout_only and fout != fin:
            raise self.error(f"this layer only moves values: 'out' must equal the input's "
                             f"{fin.bw}/{fin.fl}", layer=layer, field="quant.out")
        return fout or fin


def _pair(spec: dict, key: str, default: int, layer: str, b: _Builder) -> tuple[int, int]:
    v = spec.get(key, default)
    if isinstance(v, int):
        return v, v
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return v[0], v[1]
    raise b.error(f"must be an int or [h, w], got {v!r}", layer=layer, field=key)


def _pads(spec: dict, layer: str, b: _Builder) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from an int, [h, w] or [top, left, bottom, right]."""
    v = spec.get("pad", 0)
    if isinstance(v, list) and len(v) == 4 and all(isinstance(x, int) for x in v):
        return tuple(v)  # type: ignore[return-value]
    h, w = _pair(spec, "pad", 0, layer, b)
    return h, w, h, w


def _conv(b: _Builder, spec: dict, name: str, src: str, out: str, quant: dict | None) -> None:
    w = b.weights(name, "weight", 4)
    bias = b.weights(name, "bias", 1, required=False)
    _check_quant_keys(b, quant, name)
    sh, sw = _pair(spec, "stride", 1, name, b)
    dh, dw = _pair(spec, "dilation", 1, name, b)
    pt, pl, pb, pr = _pads(spec, name, b)
    group = spec.get("group", 1)
    if not isinstance(group, int):
        raise b.error("must be an int", layer=name, field="group")
    op = ops.Conv2D(kernel_h=w.shape[2], kernel_w=w.shape[3], stride_h=sh, stride_w=sw, pad_top=pt,
                    pad_left=pl, pad_bottom=pb, pad_right=pr, dilation_h=dh, dilation_w=dw, group=group)
    _weighted(b, op, name, src, out, w, bias, quant)


def _dense(b: _Builder, spec: dict, name: str, src: str, out: str, quant: dict | None) -> None:
    w = b.weights(name, "weight", 2)
    bias = b.weights(name, "bias", 1, required=False)
    _check_quant_keys(b, quant, name)
    _weighted(b, ops.FullyConnected(axis=1), name, src, out, w, bias, quant)


def _check_quant_keys(b: _Builder, quant: dict | None, name: str) -> None:
    if quant is not None and set(quant) != {"in", "out", "params"}:
        raise b.error("needs 'in', 'out' and 'params' ([bw, fl] each)", layer=name, field="quant")


def _weighted(b: _Builder, op: ops.Op, name: str, src: str, out: str, w: np.ndarray,
              bias: np.ndarray | None, quant: dict | None) -> None:
    """Conv2D / FullyConnected: integer when 'quant' is given (Ristretto's in/out/params)."""
    params = quant["params"] if quant else None
    x = b.quantized_input(src, quant["in"], name) if quant else src
    inputs = [x, b.constant(f"{name}/weights", w, params)]
    if bias is not None:
        inputs.append(b.constant(f"{name}/bias", bias, params))
    b.emit(name, op, inputs, out, quant["out"] if quant else None)


def _relu(b, spec, name, src, out, quant) -> None:
    b.emit(name, ops.Relu(), [src], out, b.passthrough_format(src, quant, name, layout_only=False))


def _pool(kind: int) -> Callable:
    def handler(b: _Builder, spec: dict, name: str, src: str, out: str, quant: dict | None) -> None:
        is_global = bool(spec.get("global", False))
        kh, kw = _pair(spec, "kernel", 1, name, b)
        sh, sw = _pair(spec, "stride", 1, name, b) if "stride" in spec else (kh, kw)
        pt, pl, pb, pr = _pads(spec, name, b)
        op = ops.Pool2D(type=kind, global_=is_global, kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw,
                        pad_top=pt, pad_left=pl, pad_bottom=pb, pad_right=pr,
                        ceil_mode=bool(spec.get("ceil", False)))
        b.emit(name, op, [src], out, b.passthrough_format(src, quant, name, layout_only=False))
    return handler


def _flatten(b, spec, name, src, out, quant) -> None:
    b.emit(name, ops.Flatten(axis=1), [src], out, b.passthrough_format(src, quant, name, layout_only=True))


def _reshape(b, spec, name, src, out, quant) -> None:
    target = spec.get("shape")
    if not isinstance(target, list) or not all(isinstance(d, int) and (d > 0 or d == -1) for d in target) \
            or target.count(-1) > 1:
        raise b.error("must list the dimensions after the batch (positive ints, at most one -1)",
                      layer=name, field="shape")
    in_shape = b.model.tensors[src].shape
    rest = int(np.prod(in_shape[1:]))
    known = int(np.prod([d for d in target if d != -1]))
    if -1 in target:
        if known == 0 or rest % known:
            raise b.error(f"cannot reshape {list(in_shape)} to [N, {', '.join(map(str, target))}]",
                          layer=name, field="shape")
        target = [rest // known if d == -1 else d for d in target]
    if int(np.prod(target)) != rest:
        raise b.error(f"cannot reshape {list(in_shape)} to [N, {', '.join(map(str, target))}]",
                      layer=name, field="shape")
    fmt = b.passthrough_format(src, quant, name, layout_only=True)
    b.emit(name, ops.Reshape(), [src], out, fmt, shape=(in_shape[0], *target))


def _softmax(b, spec, name, src, out, quant) -> None:
    if quant:
        raise b.error("softmax runs in float; remove 'quant'", layer=name, field="quant")
    axis = spec.get("axis", 1)
    if not isinstance(axis, int):
        raise b.error("must be an int", layer=name, field="axis")
    b.emit(name, ops.Softmax(axis=axis), [src], out, None)


_HANDLERS: dict[str, Callable] = {
    "conv": _conv, "dense": _dense, "relu": _relu, "maxpool": _pool(ops.POOL_MAX),
    "avgpool": _pool(ops.POOL_AVERAGE), "flatten": _flatten, "reshape": _reshape, "softmax": _softmax,
}
