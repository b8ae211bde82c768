"""From parsed Caffe files to a :class:`~dfxsdk.graph.Model`.

The network is taken in its TEST phase. Data layers (Data, ImageData,
MemoryData, ...) become graph inputs, and their transform_param (scale,
mean_value) the input's preprocessing; loss, accuracy and silence layers are
dropped; every other layer goes through :data:`layers.CONVERTERS`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from dfxsdk.errors import DfxError, DfxImportError, DfxInputError
from dfxsdk.graph import Model, Preprocessing

from . import fold, layers, parse, ristretto
from ._proto import caffe_pb2 as pb
from .build import Builder, WeightSource

DATA_TYPES = frozenset({"Data", "ImageData", "MemoryData", "HDF5Data", "WindowData", "AnnotatedData",
                        "DummyData", "VideoData"})
DROPPED_TYPES = frozenset({"Accuracy", "Silence", "DetectionEvaluate", "HDF5Output"})
#: Every layer type the importer understands (for messages and the README).
SUPPORTED_TYPES = sorted(set(layers.CONVERTERS) | {"Input"} | DATA_TYPES | DROPPED_TYPES | {"*Loss"})


def _dropped(layer_type: str) -> bool:
    return layer_type in DROPPED_TYPES or layer_type.endswith("Loss")


def check_types(nf: parse.NetFile) -> None:
    """Raise DfxImportError naming the first layer whose type is unknown."""
    for i, lp in enumerate(nf.net.layer):
        if not parse.in_test_phase(lp):
            continue
        if lp.type in layers.CONVERTERS or lp.type == "Input" or lp.type in DATA_TYPES or _dropped(lp.type):
            continue
        listed = ", ".join(t for t in SUPPORTED_TYPES)
        raise DfxImportError(f"unknown layer type '{lp.type}' (supported: {listed})",
                             file=nf.layer_where(i), layer=lp.name)


def build_model(net: parse.NetFile, weights: WeightSource, *, input_shape: Sequence[int] | None = None,
                preprocess_from: parse.NetFile | None = None) -> Model:
    """Convert ``net`` (already overlaid with any Ristretto file) with ``weights``."""
    check_types(net)
    b = Builder(net.net.name or net.path.stem, weights)
    test_layers = [(i, lp) for i, lp in enumerate(net.net.layer) if parse.in_test_phase(lp)]
    sources = _input_sources(net, test_layers, weights)
    if input_shape is not None:
        if len(sources) != 1:
            names = ", ".join(s[0] for s in sources) or "none"
            raise DfxInputError(f"--input-shape needs a net with exactly one input; this one has {names}",
                                file=str(net.path))
        sources[0] = (sources[0][0], tuple(int(d) for d in input_shape), sources[0][2])
    pending = {blob: (shape, where) for blob, shape, where in sources}
    for blob, shape, where in sources:
        if where == "header":
            _add_input(b, blob, shape, net)
    for i, lp in test_layers:
        if lp.type == "Input" or lp.type in DATA_TYPES:
            for top in lp.top[: len(lp.top) if lp.type == "Input" else 1]:
                _add_input(b, top, pending[top][0], net, lp.name)
            continue
        if _dropped(lp.type):
            continue
        name = b.unique_layer(lp.name)
        b.extras = {(u.message, u.name): u.value or "" for u in net.unknown if u.layer == i}
        try:
            layers.CONVERTERS[lp.type](b, lp, name)
        except DfxError as exc:
            if exc.layer is None:
                exc.layer = lp.name
            exc.with_file(net.layer_where(i))
            raise
    model = b.model
    if not model.layers:
        raise DfxImportError("the network has no layers to convert (only inputs, or nothing in the TEST phase)",
                             file=str(net.path))
    ristretto.absorb_pool_requantize(model)
    fold.fold_scales(model)
    consumed = {n for l in model.layers for n in l.inputs if n is not None}
    model.outputs = [o for l in model.layers for o in l.outputs if o not in consumed]
    fold.prune(model)
    _preprocessing(model, net, preprocess_from)
    return model


def _add_input(b: Builder, blob: str, shape, net: parse.NetFile, layer: str | None = None) -> None:
    if shape is None or any(d is None for d in shape):
        raise DfxImportError(f"cannot tell the shape of input '{blob}' (a data layer without crop_size "
                             f"or channel count); give --input-shape N,C,H,W", file=str(net.path), layer=layer)
    if any(d < 1 for d in shape):
        raise DfxImportError(f"input '{blob}' has a non-positive dimension {tuple(shape)}", file=str(net.path))
    name = b.activation(blob, layer or blob, tuple(shape))
    b.model.inputs.append(name)


def _input_sources(net: parse.NetFile, test_layers, weights) -> list[tuple[str, tuple | None, str]]:
    """(blob, shape or None, 'header'|'layer') for every graph input, in order."""
    n = net.net
    out: list[tuple[str, tuple | None, str]] = []
    for k, blob in enumerate(n.input):
        if k < len(n.input_shape):
            shape = tuple(int(d) for d in n.input_shape[k].dim)
        elif len(n.input_dim) >= 4 * (k + 1):
            shape = tuple(int(d) for d in n.input_dim[4 * k: 4 * k + 4])
        else:
            shape = None
        out.append((blob, shape, "header"))
    for _, lp in test_layers:
        if lp.type == "Input":
            shapes = list(lp.input_param.shape)
            for k, top in enumerate(lp.top):
                s = shapes[k] if k < len(shapes) else (shapes[0] if len(shapes) == 1 else None)
                out.append((top, None if s is None else tuple(int(d) for d in s.dim), "layer"))
        elif lp.type in DATA_TYPES and lp.top:
            out.append((lp.top[0], _data_shape(lp, test_layers, weights), "layer"))
    return out


def _data_shape(lp: pb.LayerParameter, test_layers, weights) -> tuple | None:
    """Shape (batch 1) of a data layer's image top, when the file tells it."""
    if lp.type == "MemoryData":
        p = lp.memory_data_param
        return (1, p.channels, p.height, p.width) if p.channels and p.height and p.width else None
    tp = lp.transform_param
    if not tp.crop_size:
        return None
    channels = 3 if len(tp.mean_value) == 3 or tp.force_color else 1 if tp.force_gray else None
    if channels is None:
        channels = _channels_from_consumer(lp.top[0], test_layers, weights)
    return (1, channels, tp.crop_size, tp.crop_size) if channels else None


def _channels_from_consumer(blob: str, test_layers, weights) -> int | None:
    """Input channels of the first convolution reading ``blob``, from its weights."""
    src = getattr(weights, "file", None)
    if src is None:
        return None
    stored = {l.name: l for l in src.net.layer}
    for _, lp in test_layers:
        if blob in lp.bottom and lp.HasField("convolution_param") and lp.name in stored and stored[lp.name].blobs:
            shape, _ = parse.blob_shape(stored[lp.name].blobs[0])
            if len(shape) == 4:
                return shape[1] * max(1, lp.convolution_param.group)
    return None


def _preprocessing(model: Model, net: parse.NetFile, other: parse.NetFile | None) -> None:
    """Preprocessing from the TEST data layer of ``net`` (or of ``other``, e.g. the Ristretto net)."""
    for nf in (net, other):
        if nf is None:
            continue
        for lp in nf.net.layer:
            if lp.type not in DATA_TYPES or not parse.in_test_phase(lp) or not lp.top:
                continue
            target = lp.top[0] if lp.top[0] in model.inputs else (model.inputs[0] if len(model.inputs) == 1 else None)
            if target is None or target in model.preprocessing:
                continue
            tp = lp.transform_param
            if tp.mean_file:
                warnings.warn(f"{nf.path}: layer '{lp.name}': mean_file '{tp.mean_file}' is not embedded; "
                              f"the model's preprocessing has no mean", parse.CaffeWarning, stacklevel=2)
            channels = model.tensors[target].shape[1] if len(model.tensors[target].shape) > 1 else 0
            order = {3: "BGR", 1: "GRAY"}.get(channels, "UNSPECIFIED")
            model.preprocessing[target] = Preprocessing(
                mean=[float(v) for v in tp.mean_value],
                scale=[float(tp.scale)] if tp.HasField("scale") and tp.scale != 1 else [],
                channel_order=order)
