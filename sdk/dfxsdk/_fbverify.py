"""A structural verifier for the graph FlatBuffer (the Python runtime has none).

It walks the buffer along the schema's layout (``LAYOUT``, checked against
the generated code by a test) and proves that every offset, vtable, vector,
string and union stays inside the buffer and is aligned, with limits on depth
and on the number of tables. Only then does the reader decode the buffer, so a
hostile file cannot cause an out-of-range read, a hang or a huge allocation.
"""

from __future__ import annotations

import struct

from .errors import DfxFormatError

_SCALAR = {"bool": 1, "u8": 1, "i8": 1, "u16": 2, "i16": 2, "u32": 4, "i32": 4,
           "f32": 4, "u64": 8, "i64": 8, "f64": 8}

# Field kinds, in slot order (a union takes two slots: type, then value).
#   ("s", scalar)          inline scalar
#   ("str",)               string          ("vstr",)   vector of strings
#   ("t", Table)           table           ("vt", Table) vector of tables
#   ("v", scalar)          vector of scalars
#   ("struct", size, align)
#   ("ut",) then ("u", {code: Table})      union type and value
_WINDOW = [("s", "i32")] * 8
LAYOUT: dict[str, list[tuple]] = {
    "Quantization": [("s", "u8"), ("s", "i8"), ("s", "i8"), ("v", "i8"), ("s", "i32")],
    "Tensor": [("str",), ("v", "i32"), ("s", "i8"), ("t", "Quantization"), ("struct", 24, 8)],
    "Conv2D": _WINDOW + [("s", "i32")] * 3,
    "Deconv2D": _WINDOW + [("s", "i32")] * 5,
    "FullyConnected": [("s", "i32")],
    "Pool2D": [("s", "i8")] + _WINDOW + [("s", "bool"), ("s", "bool"), ("s", "i8")],
    "Relu": [],
    "Clip": [("s", "f32"), ("s", "f32")],
    "PRelu": [],
    "Sigmoid": [],
    "Tanh": [],
    "Lrn": [("s", "i32"), ("s", "f32"), ("s", "f32"), ("s", "f32"), ("s", "i8")],
    "Concat": [("s", "i32")],
    "Eltwise": [("s", "i8"), ("v", "f32")],
    "Softmax": [("s", "i32")],
    "Scale": [("s", "i32"), ("s", "i32")],
    "Power": [("s", "f32")] * 3,
    "Flatten": [("s", "i32"), ("s", "i32")],
    "Reshape": [],
    "Permute": [("v", "i32")],
    "Slice": [("s", "i32"), ("v", "i32")],
    "Pad": [("v", "i32"), ("s", "f32")],
    "Upsample": [("s", "i32"), ("s", "i32")],
    "Normalize": [("s", "bool"), ("s", "bool"), ("s", "f32")],
    "PriorBox": [("v", "f32"), ("v", "f32"), ("v", "f32"), ("s", "bool"), ("s", "bool"),
                 ("v", "f32"), ("s", "i32"), ("s", "i32"), ("s", "f32"), ("s", "f32"), ("s", "f32")],
    "DetectionOutput": [("s", "i32"), ("s", "bool"), ("s", "i32"), ("s", "f32"), ("s", "i32"),
                        ("s", "f32"), ("s", "i32"), ("s", "f32"), ("s", "i8"), ("s", "bool"),
                        ("s", "bool")],
    "Requantize": [],
    "Custom": [("str",), ("s", "i32"), ("v", "u8")],
    "Exp": [],
    "Minifloat": [("s", "i32"), ("s", "i32")],
    "Layer": [("str",), ("ut",), ("u", None), ("v", "i32"), ("v", "i32"), ("str",), ("s", "u8")],
    "Preprocessing": [("s", "i32"), ("v", "f32"), ("v", "f32"), ("s", "i8")],
    "KeyValue": [("str",), ("str",)],
    "Model": [("str",), ("str",), ("str",), ("vt", "Tensor"), ("vt", "Layer"), ("v", "i32"),
              ("v", "i32"), ("vt", "Preprocessing"), ("vt", "KeyValue")],
}
_WINDOW_NAMES = ["kernel_h", "kernel_w", "stride_h", "stride_w", "pad_top", "pad_left",
                 "pad_bottom", "pad_right"]
#: Schema field names of each table, one per slot of LAYOUT (for messages;
#: checked against the generated code by a test).
FIELD_NAMES: dict[str, list[str]] = {
    "Quantization": ["bw", "fl", "rounding", "channel_fl", "channel_axis"],
    "Tensor": ["name", "shape", "type", "quantization", "data"],
    "Conv2D": _WINDOW_NAMES + ["dilation_h", "dilation_w", "group"],
    "Deconv2D": _WINDOW_NAMES + ["dilation_h", "dilation_w", "group", "output_pad_h",
                                 "output_pad_w"],
    "FullyConnected": ["axis"],
    "Pool2D": ["type"] + _WINDOW_NAMES + ["global", "ceil_mode", "divisor"],
    "Relu": [],
    "Clip": ["min", "max"],
    "PRelu": [],
    "Sigmoid": [],
    "Tanh": [],
    "Lrn": ["local_size", "alpha", "beta", "k", "region"],
    "Concat": ["axis"],
    "Eltwise": ["operation", "coefficients"],
    "Softmax": ["axis"],
    "Scale": ["axis", "num_axes"],
    "Power": ["power", "scale", "shift"],
    "Flatten": ["axis", "end_axis"],
    "Reshape": [],
    "Permute": ["order"],
    "Slice": ["axis", "points"],
    "Pad": ["pads", "value"],
    "Upsample": ["scale_h", "scale_w"],
    "Normalize": ["across_spatial", "channel_shared", "eps"],
    "PriorBox": ["min_sizes", "max_sizes", "aspect_ratios", "flip", "clip", "variances",
                 "img_h", "img_w", "step_h", "step_w", "offset"],
    "DetectionOutput": ["num_classes", "share_location", "background_label_id",
                        "nms_threshold", "top_k", "eta", "keep_top_k", "confidence_threshold",
                        "code_type", "variance_encoded_in_target", "clip"],
    "Requantize": [],
    "Custom": ["name", "version", "options"],
    "Exp": [],
    "Minifloat": ["mant_bits", "exp_bits"],
    "Layer": ["name", "op_type", "op", "inputs", "outputs", "origin", "version"],
    "Preprocessing": ["input", "mean", "scale", "channel_order"],
    "KeyValue": ["key", "value"],
    "Model": ["producer_name", "producer_version", "name", "tensors", "layers", "inputs",
              "outputs", "preprocessing", "metadata"],
}
#: Union members of Layer.op, by discriminant (1-based, schema order).
OP_TABLES = ["Conv2D", "Deconv2D", "FullyConnected", "Pool2D", "Relu", "Clip", "PRelu",
             "Sigmoid", "Tanh", "Lrn", "Concat", "Eltwise", "Softmax", "Scale", "Power",
             "Flatten", "Reshape", "Permute", "Slice", "Pad", "Upsample", "Normalize",
             "PriorBox", "DetectionOutput", "Requantize", "Custom", "Exp", "Minifloat"]
#: Fields marked (required) in the schema: table -> slot indices.
REQUIRED = {"Tensor": [0], "Layer": [0, 2], "Custom": [0], "KeyValue": [0]}
IDENTIFIER = b"DFXG"
MAX_DEPTH = 16
MAX_TABLES = 1_000_000


class _Verifier:
    def __init__(self, buf: bytes, path: str | None) -> None:
        self.buf = buf
        self.n = len(buf)
        self.path = path
        self.tables = 0

    def fail(self, msg: str, layer: str | None = None) -> DfxFormatError:
        return DfxFormatError(f"graph FlatBuffer is malformed: {msg}", file=self.path,
                              layer=layer, field="graph")

    def need(self, pos: int, size: int, align: int, what: str) -> None:
        if pos < 0 or size < 0 or pos > self.n or size > self.n - pos:
            raise self.fail(f"{what} at byte {pos} (+{size}) lies outside the {self.n}-byte buffer")
        if align > 1 and pos % align:
            raise self.fail(f"{what} at byte {pos} is not {align}-byte aligned")

    def u32(self, pos: int, what: str) -> int:
        self.need(pos, 4, 4, what)
        return struct.unpack_from("<I", self.buf, pos)[0]

    def deref(self, pos: int, what: str) -> int:
        off = self.u32(pos, what)
        if off == 0:
            raise self.fail(f"{what} at byte {pos} has a zero offset")
        return pos + off

    def vector(self, pos: int, elem: int, what: str) -> tuple[int, int]:
        start = self.deref(pos, what)
        count = self.u32(start, what + " length")
        self.need(start + 4, count * elem, min(elem, 8), what + " elements")
        return start + 4, count

    def string(self, pos: int, what: str) -> str:
        """Check a string; return its first 200 bytes, decoded leniently (for messages)."""
        start, count = self.vector(pos, 1, what)
        self.need(start + count, 1, 1, what + " terminator")
        if self.buf[start + count] != 0:
            raise self.fail(f"{what} at byte {start} is not zero-terminated")
        return bytes(self.buf[start: start + min(count, 200)]).decode("utf-8", "replace")

    def table(self, pos: int, name: str, depth: int, where: str = "model") -> None:
        if depth > MAX_DEPTH:
            raise self.fail(f"tables nested deeper than {MAX_DEPTH}")
        self.tables += 1
        if self.tables > MAX_TABLES:
            raise self.fail(f"more than {MAX_TABLES} tables")
        self.need(pos, 4, 4, f"{name} table")
        vt = pos - struct.unpack_from("<i", self.buf, pos)[0]
        self.need(vt, 4, 2, f"{name} vtable")
        vt_size, tbl_size = struct.unpack_from("<HH", self.buf, vt)
        if vt_size < 4 or vt_size % 2:
            raise self.fail(f"{name} vtable at byte {vt} has size {vt_size}")
        self.need(vt, vt_size, 2, f"{name} vtable")
        self.need(pos, tbl_size, 1, f"{name} table body")
        fields = LAYOUT[name]
        slots = (vt_size - 4) // 2
        offsets = [struct.unpack_from("<H", self.buf, vt + 4 + 2 * i)[0] if i < slots else 0
                   for i in range(len(fields))]
        for i in REQUIRED.get(name, []):
            if offsets[i] == 0:
                raise self.fail(f"{where} ({name} table at byte {pos}) lacks the required field "
                                f"'{FIELD_NAMES[name][i]}'")
        union_type = 0
        label = None  # the layer's name, for messages
        for i, (kind, *arg) in enumerate(fields):
            off = offsets[i]
            if off == 0:
                continue
            what = f"{where}.{FIELD_NAMES[name][i]}"
            fpos = pos + off
            if kind in ("s", "ut"):
                size = _SCALAR[arg[0]] if kind == "s" else 1
                if off + size > tbl_size:
                    raise self.fail(f"{what} runs past its table")
                self.need(fpos, size, size, what)
                if kind == "ut":
                    union_type = self.buf[fpos]
                continue
            if kind == "struct":
                size, align = arg
                if off + size > tbl_size:
                    raise self.fail(f"{what} runs past its table")
                self.need(fpos, size, align, what)
                continue
            if off + 4 > tbl_size:
                raise self.fail(f"{what} runs past its table")
            if kind == "str":
                text = self.string(fpos, what)
                if name == "Layer" and i == 0:
                    label = text
            elif kind == "v":
                self.vector(fpos, _SCALAR[arg[0]], what)
            elif kind == "t":
                self.table(self.deref(fpos, what), arg[0], depth + 1, what)
            elif kind == "vt":
                start, count = self.vector(fpos, 4, what)
                for k in range(count):
                    self.table(self.deref(start + 4 * k, f"{what}[{k}]"), arg[0], depth + 1,
                               f"{where}.{FIELD_NAMES[name][i]}[{k}]".removeprefix("model."))
            elif kind == "u":
                if union_type == 0:
                    raise DfxFormatError(f"{what}: the operator has no type (NONE)", file=self.path,
                                         layer=label, field="op_type")
                if union_type > len(OP_TABLES):
                    raise DfxFormatError(
                        f"unknown operator type {union_type} in {what} (this dfxsdk knows "
                        f"1..{len(OP_TABLES)}: {OP_TABLES[0]}..{OP_TABLES[-1]}); the file may "
                        "need a newer dfxsdk", file=self.path, layer=label, field="op_type")
                self.table(self.deref(fpos, what), OP_TABLES[union_type - 1], depth + 1, what)


def verify_graph(buf: bytes, path: str | None = None) -> None:
    """Raise DfxFormatError unless ``buf`` is a structurally sound dfx.Model FlatBuffer."""
    v = _Verifier(buf, path)
    if len(buf) < 8:
        raise v.fail("shorter than 8 bytes")
    if buf[4:8] != IDENTIFIER:
        raise v.fail(f"file identifier is {bytes(buf[4:8])!r}, expected {IDENTIFIER!r}")
    v.table(v.deref(0, "root offset"), "Model", 0)
