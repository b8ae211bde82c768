"""Reading Caffe files: text prototxt and binary caffemodel, V1 upgrade, phases.

Both readers return a :class:`NetFile` whose ``net.layer`` holds V2
``LayerParameter`` messages (V1 ``layers`` are upgraded). Unknown fields are
never fatal: they are skipped and reported with :func:`warnings.warn`
(category :class:`CaffeWarning`), naming the file, line (text), layer and
field. Syntax errors raise :class:`~dfxsdk.errors.DfxImportError` with the
line and column.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf import message as pb_message, text_format, unknown_fields

from dfxsdk.atomic import check_input_file
from dfxsdk.errors import DfxImportError, DfxInputError, DfxUnsupportedError

from ._proto import caffe_pb2 as pb

#: LayerParameter numbers older Ristretto builds gave quantization_param.
#: Largest .caffemodel: protobuf cannot parse a message of 2 GiB or more.
MAX_BINARY_BYTES = 2**31 - 1
#: Largest prototxt (text); real ones are a few hundred KB.
MAX_TEXT_BYTES = 2**27
#: Deepest nesting of messages in a prototxt (a Caffe net needs fewer than 8 levels).
MAX_TEXT_DEPTH = 100
RISTRETTO_V1_FIELD = 145
RISTRETTO_ALT_FIELDS = (147, 148)
#: Extensions of other forks that the importer understands although the
#: schema (which follows caffe-ssd) lacks them: (message, field) -> origin.
KNOWN_EXTENSIONS = {("DetectionOutputParameter", "clip"): "OpenCV"}


class CaffeWarning(UserWarning):
    """Something in a Caffe file was skipped or interpreted leniently."""


@dataclass
class UnknownField:
    """A field the schema does not declare, skipped while reading."""

    message: str           # message type, e.g. "DetectionOutputParameter"
    name: str              # field name (text) or number (binary)
    layer: int | None      # index into NetFile.net.layer, if inside a layer
    line: int | None = None
    value: str | None = None


@dataclass
class NetFile:
    """A parsed Caffe file."""

    path: Path
    net: pb.NetParameter
    binary: bool
    unknown: list[UnknownField] = field(default_factory=list)
    #: Ristretto quantization_param found in a binary file under an old
    #: field number (145, 147, 148), by layer name.
    legacy_quantization: dict[str, pb.QuantizationParameter] = field(default_factory=dict)
    #: First line of each layer (text files), by layer index.
    layer_lines: dict[int, int] = field(default_factory=dict)

    def extension(self, layer_index: int, message: str, name: str) -> str | None:
        """The raw value of a known fork extension inside a layer, if present."""
        for u in self.unknown:
            if u.layer == layer_index and u.message == message and u.name == name:
                return u.value
        return None

    def layer_where(self, index: int) -> str:
        """'file:line' of a layer for messages (file only for binary files)."""
        line = self.layer_lines.get(index)
        return f"{self.path}:{line}" if line else str(self.path)


# -- text ------------------------------------------------------------------

def read_text(path: Path) -> NetFile:
    """Parse a prototxt (V1 or V2); unknown fields warn, syntax errors raise."""
    raw = _read_bytes(path, MAX_TEXT_BYTES, "a prototxt")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DfxImportError(f"not a text prototxt (byte {exc.start} is not UTF-8)", file=str(path)) from None
    if "\0" in text:
        raise DfxImportError("not a text prototxt (contains NUL bytes; is it a .caffemodel?)", file=str(path))
    _check_depth(text, path)
    net = pb.NetParameter()
    try:
        text_format.Parse(text, net, allow_unknown_field=True)
    except RecursionError:
        raise DfxImportError(f"messages are nested too deeply (limit {MAX_TEXT_DEPTH})", file=str(path)) from None
    except text_format.ParseError as exc:
        line, col = exc.GetLine(), exc.GetColumn()
        msg = str(exc)
        if line is not None and msg.startswith(f"{line}:"):
            msg = msg.split(" : ", 1)[-1]
        where = f"line {line}" + (f", column {col}" if col else "") if line else "unknown line"
        raise DfxImportError(f"syntax error at {where}: {msg}", file=str(path)) from None
    nf = NetFile(Path(path), net, binary=False)
    nf.unknown, nf.layer_lines = _scan_text(text, "layers" if net.layers and not net.layer else "layer")
    _upgrade(nf)
    for u in nf.unknown:
        _warn_unknown(nf, u)
    return nf


def _check_depth(text: str, path: Path) -> None:
    """Refuse a prototxt whose messages nest deeper than MAX_TEXT_DEPTH (the parsers recurse)."""
    depth, quote, comment, escape = 0, "", False, False
    for line_no, line in enumerate(text.split("\n"), 1):
        comment = False
        for ch in line:
            if quote:
                if escape:
                    escape = False
                elif ch == "\\":
                    escape = True
                elif ch == quote:
                    quote = ""
            elif comment:
                break
            elif ch == "#":
                comment = True
            elif ch in "\"'":
                quote = ch
            elif ch in "{<":
                depth += 1
                if depth > MAX_TEXT_DEPTH:
                    raise DfxImportError(f"messages are nested more than {MAX_TEXT_DEPTH} deep (line {line_no})",
                                         file=str(path))
            elif ch in "}>":
                depth -= 1
        quote = ""  # protobuf text strings end at the line end


def _scan_text(text: str, layer_field: str) -> tuple[list[UnknownField], dict[int, int]]:
    """Walk the token stream alongside the schema, listing undeclared fields."""
    tok = text_format.Tokenizer(text.splitlines())
    found: list[UnknownField] = []
    lines: dict[int, int] = {}
    root = pb.NetParameter.DESCRIPTOR

    def line() -> int:
        return tok.ParseError("").GetLine()

    def skip_value() -> str:
        first = tok.token
        if first[:1] in ("'", '"'):
            while tok.token[:1] in ("'", '"'):
                tok.NextToken()
        else:
            tok.NextToken()
        return first

    def walk(desc, layer: int | None, end: str | None) -> None:
        counts: dict[str, int] = {}
        while not tok.AtEnd():
            if end is not None and tok.TryConsume(end):
                return
            at = line()
            name = tok.ConsumeIdentifierOrNumber()
            fd = desc.fields_by_name.get(name) if desc is not None else None
            sub = fd.message_type if fd is not None else None
            idx = counts.get(name, 0)
            counts[name] = idx + 1
            child_layer = layer
            if desc is root and name == layer_field:
                child_layer = idx
                lines[idx] = at
            record = None
            if fd is None and desc is not None and desc.name != "Ignored":
                record = UnknownField(desc.name, name, layer, at)
                found.append(record)
            tok.TryConsume(":")
            if tok.TryConsume("["):
                while not tok.TryConsume("]"):
                    value(sub, child_layer, record)
                    tok.TryConsume(",")
            else:
                value(sub, child_layer, record)
            if not tok.TryConsume(","):
                tok.TryConsume(";")
        if end is not None:
            raise text_format.ParseError(f"missing '{end}'")

    def value(sub, layer: int | None, record: UnknownField | None) -> None:
        for opening, closing in (("{", "}"), ("<", ">")):
            if tok.TryConsume(opening):
                walk(sub, layer, closing)
                return
        v = skip_value()
        if record is not None:
            record.value = v

    walk(root, None, None)
    return found, lines


def _warn_unknown(nf: NetFile, u: UnknownField) -> None:
    where = f"{nf.path}:{u.line}" if u.line else str(nf.path)
    layer = ""
    if u.layer is not None and u.layer < len(nf.net.layer):
        layer = f" in layer '{nf.net.layer[u.layer].name}'"
    ext = KNOWN_EXTENSIONS.get((u.message, u.name))
    if ext:
        msg = (f"{where}: field '{u.name}' of {u.message}{layer} is an {ext} extension "
               f"that caffe-ssd lacks; it is honoured")
    else:
        kind = "field number" if nf.binary else "field"
        msg = f"{where}: unknown {kind} '{u.name}' of {u.message}{layer} skipped"
    warnings.warn(msg, CaffeWarning, stacklevel=3)


# -- binary ----------------------------------------------------------------

def read_binary(path: Path) -> NetFile:
    """Parse a binary .caffemodel (V1 or V2 layers)."""
    raw = _read_bytes(path, MAX_BINARY_BYTES, "a .caffemodel")
    net = pb.NetParameter()
    try:
        net.ParseFromString(raw)
    except (pb_message.DecodeError, RuntimeError, ValueError) as exc:
        raise DfxImportError(f"not a valid .caffemodel (truncated or corrupt: {exc})", file=str(path)) from None
    if not net.layer and not net.layers:
        raise DfxImportError("the .caffemodel holds no layers (empty, truncated or not a caffemodel)",
                             file=str(path))
    nf = NetFile(Path(path), net, binary=True)
    layers = net.layer if net.layer else net.layers
    for i, layer in enumerate(layers):
        for f in unknown_fields.UnknownFieldSet(layer):
            qp = _legacy_quantization(layer, f) if not net.layers else None
            if qp is not None:
                nf.legacy_quantization[layer.name] = qp
                continue
            nf.unknown.append(UnknownField(layer.DESCRIPTOR.name, str(f.field_number), i))
    _upgrade(nf)
    seen: set[tuple[str, str]] = set()
    for u in nf.unknown:   # one warning per (field, message): caffemodels repeat them per layer
        if (u.message, u.name) not in seen:
            seen.add((u.message, u.name))
            _warn_unknown(nf, u)
    return nf


def _legacy_quantization(layer, f) -> pb.QuantizationParameter | None:
    """Decode an old Ristretto quantization_param stored under 145, 147 or 148."""
    if f.wire_type != 2 or "Ristretto" not in layer.type:
        return None
    try:
        if f.field_number == RISTRETTO_V1_FIELD:
            v1 = pb.QuantizationParameterV1.FromString(f.data)
            qp = pb.QuantizationParameter()
            for fd, val in v1.ListFields():
                setattr(qp, fd.name, val)
            return qp
        if f.field_number in RISTRETTO_ALT_FIELDS:
            return pb.QuantizationParameter.FromString(f.data)
    except pb_message.DecodeError:
        return None
    return None


def _read_bytes(path: Path, limit: int, expected: str) -> bytes:
    """The bytes of regular file ``path``, refused (before reading) when larger than ``limit``."""
    try:
        check_input_file(path, expected)
        size = os.stat(path).st_size
        if size > limit:
            raise DfxImportError(f"{size} bytes is larger than {expected} can be ({limit} bytes)", file=str(path))
        return Path(path).read_bytes()
    except DfxInputError as exc:
        raise DfxImportError(exc.message, file=str(path)) from None
    except OSError as exc:
        raise DfxImportError(f"cannot read: {exc.strerror}", file=str(path)) from None


# -- V1 upgrade --------------------------------------------------------------

_V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}


def _upgrade(nf: NetFile) -> None:
    """Replace V1 ``layers`` by equivalent V2 ``layer`` messages in place."""
    net = nf.net
    if not net.layers:
        return
    if net.layer:
        raise DfxImportError("the net mixes V1 'layers' and V2 'layer' entries", file=str(nf.path))
    v2_fields = pb.LayerParameter.DESCRIPTOR.fields_by_name
    upgraded = []
    for v1 in net.layers:
        if v1.HasField("layer"):
            raise DfxUnsupportedError("the V0 layer format (Caffe before 2014) is not supported; "
                                      "upgrade the file with Caffe's upgrade_net_proto_text tool",
                                      file=str(nf.path), layer=v1.name)
        layer = pb.LayerParameter(name=v1.name, type=_v1_type(v1))
        for fd, val in v1.ListFields():
            target = v2_fields.get(fd.name)
            if fd.name in ("name", "type") or target is None:
                continue
            if target.message_type is not None and fd.message_type is not None and \
                    target.message_type.full_name == fd.message_type.full_name:
                if target.is_repeated:
                    getattr(layer, fd.name).extend(val)
                else:
                    getattr(layer, fd.name).CopyFrom(val)
            elif target.message_type is None and fd.message_type is None and fd.is_repeated == target.is_repeated:
                if fd.is_repeated:
                    getattr(layer, fd.name).extend(val)
                else:
                    setattr(layer, fd.name, val)
        upgraded.append(layer)
    del net.layers[:]
    net.layer.extend(upgraded)


def _v1_type(v1) -> str:
    name = pb.V1LayerParameter.LayerType.Name(v1.type)
    return _V1_TYPES.get(name, name)


# -- phases and blobs ----------------------------------------------------------

def in_test_phase(layer: pb.LayerParameter) -> bool:
    """Whether Caffe would instantiate ``layer`` in a TEST-phase net (level 0, no stages)."""
    if layer.include:
        return any(_meets(rule) for rule in layer.include)
    return not any(_meets(rule) for rule in layer.exclude)


def _meets(rule: pb.NetStateRule) -> bool:
    if rule.HasField("phase") and rule.phase != pb.TEST:
        return False
    if rule.HasField("min_level") and 0 < rule.min_level:
        return False
    if rule.HasField("max_level") and 0 > rule.max_level:
        return False
    return not rule.stage  # no stage is ever set; not_stage is always met


def blob_shape(blob: pb.BlobProto) -> tuple[tuple[int, ...], bool]:
    """(shape, legacy): the blob's shape, and whether it is the legacy 4-D form."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim), False
    return (blob.num, blob.channels, blob.height, blob.width), True


def blob_array(blob: pb.BlobProto) -> np.ndarray:
    """The blob's values as a flat float32 array (double_data converted)."""
    if len(blob.data):
        return np.array(blob.data, dtype=np.float32)
    if len(blob.double_data):
        return np.array(blob.double_data, dtype=np.float64).astype(np.float32)
    return np.zeros(0, np.float32)
