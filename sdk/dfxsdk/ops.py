"""Operators: one dataclass per member of the schema's ``Op`` union.

Field names and defaults mirror schema/dfx.fbs (in snake_case); the meaning of
every field is documented there, the arithmetic in spec/arithmetic.md. Each
operator knows its arity and infers its output shapes, which importers use to
build graphs and the validator uses to check them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

Shape = tuple[int, ...]


def as_float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (the precision the format stores)."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


class ShapeError(ValueError):
    """Input shapes that an operator cannot accept (message says why)."""


@dataclass
class Op:
    """Base of all operators."""

    #: Member name in the schema's ``Op`` union.
    TYPE: ClassVar[str] = ""
    #: Union discriminant (position in the union, starting at 1).
    CODE: ClassVar[int] = 0
    MIN_INPUTS: ClassVar[int] = 1
    #: None: any number of inputs.
    MAX_INPUTS: ClassVar[int | None] = 1
    #: None: any number of outputs (at least one).
    NUM_OUTPUTS: ClassVar[int | None] = 1
    #: True when spec/arithmetic.md defines an integer form of the operator.
    INTEGER: ClassVar[bool] = False
    #: True when values pass through unchanged (only moved): the output
    #: format must equal the input format.
    LAYOUT_ONLY: ClassVar[bool] = False
    #: The format minor version that introduced the operator (a file using it is at least 1.<this>).
    FORMAT_MINOR: ClassVar[int] = 0

    def __post_init__(self) -> None:
        # The format stores float options as float32: hold exactly those values.
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "float":
                setattr(self, f.name, as_float32(value))
            elif f.type == "list[float]":
                setattr(self, f.name, [as_float32(v) for v in value])

    def infer_shapes(self, inputs: list[Shape | None]) -> list[Shape | None]:
        """Output shapes from input shapes (None where not inferable)."""
        return [inputs[0]]

    def check(self) -> None:
        """Raise ShapeError for options that are invalid whatever the shapes."""

    def fields_dict(self) -> dict:
        """The options as a plain dict (for inspect and JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _need_rank(shape: Shape | None, rank: int, what: str) -> Shape:
    if shape is None or len(shape) != rank:
        raise ShapeError(f"{what} must have rank {rank}, got {shape}")
    return shape


def _positive(**values: int) -> None:
    for name, v in values.items():
        if v < 1:
            raise ShapeError(f"{name} must be >= 1, got {v}")


def _non_negative(**values: int) -> None:
    for name, v in values.items():
        if v < 0:
            raise ShapeError(f"{name} must be >= 0, got {v}")


def conv_out_size(size: int, k: int, stride: int, pad0: int, pad1: int, dilation: int) -> int:
    """Output length of a convolution along one axis (floor division)."""
    extent = dilation * (k - 1) + 1
    return (size + pad0 + pad1 - extent) // stride + 1


def pool_out_size(size: int, k: int, stride: int, pad0: int, pad1: int, ceil_mode: bool) -> int:
    """Output length of a pooling along one axis.

    In ceil mode the last window is dropped when it would start at or past
    ``size + pad0`` (in the end padding or beyond the input): Caffe's rule,
    which Caffe applies only when some padding is set, applied always (as ONNX
    does), so that no window is ever empty.
    """
    span = size + pad0 + pad1 - k
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad0:
        out -= 1
    return out


@dataclass
class _Window:
    kernel_h: int = 1
    kernel_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    pad_bottom: int = 0
    pad_right: int = 0

    def _check_window(self) -> None:
        _positive(kernel_h=self.kernel_h, kernel_w=self.kernel_w,
                  stride_h=self.stride_h, stride_w=self.stride_w)
        _non_negative(pad_top=self.pad_top, pad_left=self.pad_left,
                      pad_bottom=self.pad_bottom, pad_right=self.pad_right)


@dataclass
class Conv2D(_Window, Op):
    TYPE: ClassVar[str] = "Conv2D"
    CODE: ClassVar[int] = 1
    MIN_INPUTS: ClassVar[int] = 2
    MAX_INPUTS: ClassVar[int | None] = 3
    INTEGER: ClassVar[bool] = True
    dilation_h: int = 1
    dilation_w: int = 1
    group: int = 1

    def check(self) -> None:
        self._check_window()
        _positive(dilation_h=self.dilation_h, dilation_w=self.dilation_w, group=self.group)

    def infer_shapes(self, inputs):
        n, c, h, w = _need_rank(inputs[0], 4, "input")
        o, ci, kh, kw = _need_rank(inputs[1], 4, "weights")
        if (kh, kw) != (self.kernel_h, self.kernel_w):
            raise ShapeError(f"weights kernel {kh}x{kw} != options {self.kernel_h}x{self.kernel_w}")
        if c % self.group or o % self.group or ci * self.group != c:
            raise ShapeError(f"weights {inputs[1]} do not fit {c} input channels in {self.group} groups")
        _check_bias(inputs, o)
        oh = conv_out_size(h, kh, self.stride_h, self.pad_top, self.pad_bottom, self.dilation_h)
        ow = conv_out_size(w, kw, self.stride_w, self.pad_left, self.pad_right, self.dilation_w)
        if oh < 1 or ow < 1:
            raise ShapeError(f"input {h}x{w} is smaller than the kernel extent")
        return [(n, o, oh, ow)]


def _check_bias(inputs: list, channels: int) -> None:
    if len(inputs) > 2 and inputs[2] is not None and math.prod(inputs[2]) != channels:
        raise ShapeError(f"bias {inputs[2]} does not have {channels} elements")


@dataclass
class Deconv2D(_Window, Op):
    TYPE: ClassVar[str] = "Deconv2D"
    CODE: ClassVar[int] = 2
    MIN_INPUTS: ClassVar[int] = 2
    MAX_INPUTS: ClassVar[int | None] = 3
    INTEGER: ClassVar[bool] = True
    dilation_h: int = 1
    dilation_w: int = 1
    group: int = 1
    output_pad_h: int = 0
    output_pad_w: int = 0

    def check(self) -> None:
        self._check_window()
        _positive(dilation_h=self.dilation_h, dilation_w=self.dilation_w, group=self.group)
        _non_negative(output_pad_h=self.output_pad_h, output_pad_w=self.output_pad_w)

    def infer_shapes(self, inputs):
        n, c, h, w = _need_rank(inputs[0], 4, "input")
        ci, og, kh, kw = _need_rank(inputs[1], 4, "weights")
        if (kh, kw) != (self.kernel_h, self.kernel_w) or ci != c or c % self.group:
            raise ShapeError(f"weights {inputs[1]} do not fit input {inputs[0]} and the options")
        o = og * self.group
        _check_bias(inputs, o)
        oh = (self.stride_h * (h - 1) + self.dilation_h * (kh - 1) + 1
              - self.pad_top - self.pad_bottom + self.output_pad_h)
        ow = (self.stride_w * (w - 1) + self.dilation_w * (kw - 1) + 1
              - self.pad_left - self.pad_right + self.output_pad_w)
        if oh < 1 or ow < 1:
            raise ShapeError("padding leaves an empty output")
        return [(n, o, oh, ow)]


@dataclass
class FullyConnected(Op):
    TYPE: ClassVar[str] = "FullyConnected"
    CODE: ClassVar[int] = 3
    MIN_INPUTS: ClassVar[int] = 2
    MAX_INPUTS: ClassVar[int | None] = 3
    INTEGER: ClassVar[bool] = True
    axis: int = 1

    def infer_shapes(self, inputs):
        x = inputs[0]
        if x is None or not 1 <= self.axis <= len(x):
            raise ShapeError(f"axis {self.axis} out of range for input {x}")
        out, k = _need_rank(inputs[1], 2, "weights")
        if math.prod(x[self.axis:]) != k:
            raise ShapeError(f"input {x} flattens to {math.prod(x[self.axis:])} values, weights expect {k}")
        _check_bias(inputs, out)
        return [tuple(x[: self.axis]) + (out,)]


POOL_MAX, POOL_AVERAGE = 0, 1
DIVISOR_PADDED_WINDOW, DIVISOR_VALID_ONLY = 0, 1


@dataclass
class Pool2D(_Window, Op):
    TYPE: ClassVar[str] = "Pool2D"
    CODE: ClassVar[int] = 4
    INTEGER: ClassVar[bool] = True
    type: int = POOL_MAX
    global_: bool = False
    ceil_mode: bool = True
    divisor: int = DIVISOR_PADDED_WINDOW

    def check(self) -> None:
        self._check_window()
        if self.type not in (POOL_MAX, POOL_AVERAGE):
            raise ShapeError(f"unknown pool type {self.type}")
        if self.divisor not in (DIVISOR_PADDED_WINDOW, DIVISOR_VALID_ONLY):
            raise ShapeError(f"unknown divisor rule {self.divisor}")
        if self.pad_top >= self.kernel_h or self.pad_left >= self.kernel_w \
                or self.pad_bottom >= self.kernel_h or self.pad_right >= self.kernel_w:
            raise ShapeError("padding must be smaller than the kernel")

    def window(self, h: int, w: int) -> tuple[int, int, int, int, int, int, int, int]:
        """(kh, kw, sh, sw, pt, pl, pb, pr) after resolving ``global_``."""
        if self.global_:
            return (h, w, 1, 1, 0, 0, 0, 0)
        return (self.kernel_h, self.kernel_w, self.stride_h, self.stride_w,
                self.pad_top, self.pad_left, self.pad_bottom, self.pad_right)

    def infer_shapes(self, inputs):
        n, c, h, w = _need_rank(inputs[0], 4, "input")
        kh, kw, sh, sw, pt, pl, pb, pr = self.window(h, w)
        oh = pool_out_size(h, kh, sh, pt, pb, self.ceil_mode)
        ow = pool_out_size(w, kw, sw, pl, pr, self.ceil_mode)
        if oh < 1 or ow < 1:
            raise ShapeError(f"input {h}x{w} is smaller than the window {kh}x{kw}")
        return [(n, c, oh, ow)]


@dataclass
class Relu(Op):
    TYPE: ClassVar[str] = "Relu"
    CODE: ClassVar[int] = 5
    INTEGER: ClassVar[bool] = True


@dataclass
class Clip(Op):
    TYPE: ClassVar[str] = "Clip"
    CODE: ClassVar[int] = 6
    INTEGER: ClassVar[bool] = True
    min: float = 0.0
    max: float = 0.0

    def check(self) -> None:
        if not self.min <= self.max:
            raise ShapeError(f"min {self.min} > max {self.max}")


@dataclass
class PRelu(Op):
    TYPE: ClassVar[str] = "PRelu"
    CODE: ClassVar[int] = 7
    MIN_INPUTS: ClassVar[int] = 2
    MAX_INPUTS: ClassVar[int | None] = 2
    INTEGER: ClassVar[bool] = True

    def infer_shapes(self, inputs):
        x, slope = inputs[0], inputs[1]
        n = math.prod(slope) if slope is not None else -1
        if x is None or len(x) < 2 or n not in (1, x[1]):
            raise ShapeError(f"slope {slope} must have 1 or C elements for input {x}")
        return [x]


@dataclass
class Sigmoid(Op):
    TYPE: ClassVar[str] = "Sigmoid"
    CODE: ClassVar[int] = 8


@dataclass
class Tanh(Op):
    TYPE: ClassVar[str] = "Tanh"
    CODE: ClassVar[int] = 9


LRN_ACROSS_CHANNELS, LRN_WITHIN_CHANNEL = 0, 1


@dataclass
class Lrn(Op):
    TYPE: ClassVar[str] = "Lrn"
    CODE: ClassVar[int] = 10
    local_size: int = 5
    alpha: float = 1.0
    beta: float = 0.75
    k: float = 1.0
    region: int = LRN_ACROSS_CHANNELS

    def check(self) -> None:
        if self.local_size < 1 or self.local_size % 2 == 0:
            raise ShapeError(f"local_size must be odd and >= 1, got {self.local_size}")
        if self.region not in (LRN_ACROSS_CHANNELS, LRN_WITHIN_CHANNEL):
            raise ShapeError(f"unknown LRN region {self.region}")

    def infer_shapes(self, inputs):
        return [_need_rank(inputs[0], 4, "input")]


def _axis(axis: int, rank: int) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise ShapeError(f"axis {axis} out of range for rank {rank}")
    return a


@dataclass
class Concat(Op):
    TYPE: ClassVar[str] = "Concat"
    CODE: ClassVar[int] = 11
    MAX_INPUTS: ClassVar[int | None] = None
    INTEGER: ClassVar[bool] = True
    axis: int = 1

    def infer_shapes(self, inputs):
        first = inputs[0]
        a = _axis(self.axis, len(first))
        total = 0
        for s in inputs:
            if s is None or len(s) != len(first) or any(
                    s[i] != first[i] for i in range(len(first)) if i != a):
                raise ShapeError(f"inputs {inputs} differ outside axis {self.axis}")
            total += s[a]
        return [tuple(first[:a]) + (total,) + tuple(first[a + 1:])]


ELTWISE_SUM, ELTWISE_PROD, ELTWISE_MAX = 0, 1, 2


@dataclass
class Eltwise(Op):
    TYPE: ClassVar[str] = "Eltwise"
    CODE: ClassVar[int] = 12
    MAX_INPUTS: ClassVar[int | None] = None
    INTEGER: ClassVar[bool] = True
    operation: int = ELTWISE_SUM
    coefficients: list[float] = field(default_factory=list)

    def check(self) -> None:
        if self.operation not in (ELTWISE_SUM, ELTWISE_PROD, ELTWISE_MAX):
            raise ShapeError(f"unknown eltwise operation {self.operation}")
        if self.coefficients and self.operation != ELTWISE_SUM:
            raise ShapeError("coefficients are only allowed with SUM")

    def infer_shapes(self, inputs):
        if self.coefficients and len(self.coefficients) != len(inputs):
            raise ShapeError(f"{len(self.coefficients)} coefficients for {len(inputs)} inputs")
        try:
            return [broadcast_shapes(*inputs)]
        except ValueError as exc:
            raise ShapeError(f"inputs {inputs} do not broadcast") from exc


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting of shapes (ValueError if they do not broadcast)."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0} - {1}
        if len(dims) > 1:
            raise ValueError(shapes)
        out.append(dims.pop() if dims else 1)
    return tuple(out)


@dataclass
class Softmax(Op):
    TYPE: ClassVar[str] = "Softmax"
    CODE: ClassVar[int] = 13
    axis: int = 1

    def infer_shapes(self, inputs):
        _axis(self.axis, len(inputs[0]))
        return [inputs[0]]


@dataclass
class Scale(Op):
    TYPE: ClassVar[str] = "Scale"
    CODE: ClassVar[int] = 14
    MIN_INPUTS: ClassVar[int] = 2
    MAX_INPUTS: ClassVar[int | None] = 3
    INTEGER: ClassVar[bool] = True
    axis: int = 1
    num_axes: int = 1

    def infer_shapes(self, inputs):
        x = inputs[0]
        a = _axis(self.axis, len(x))
        if not 0 <= self.num_axes <= len(x) - a:
            raise ShapeError(f"num_axes {self.num_axes} not supported for rank {len(x)} and axis {self.axis}")
        want = math.prod(x[a:a + self.num_axes])
        for s in inputs[1:]:
            if s is not None and math.prod(s) != want:
                raise ShapeError(f"scale/bias {s} must have {want} elements for input {x}")
        return [x]


@dataclass
class Power(Op):
    TYPE: ClassVar[str] = "Power"
    CODE: ClassVar[int] = 15
    power: float = 1.0
    scale: float = 1.0
    shift: float = 0.0


@dataclass
class Flatten(Op):
    TYPE: ClassVar[str] = "Flatten"
    CODE: ClassVar[int] = 16
    INTEGER: ClassVar[bool] = True
    LAYOUT_ONLY: ClassVar[bool] = True
    axis: int = 1
    end_axis: int = -1

    def infer_shapes(self, inputs):
        x = inputs[0]
        a, e = _axis(self.axis, len(x)), _axis(self.end_axis, len(x))
        if e < a:
            raise ShapeError(f"end_axis {self.end_axis} before axis {self.axis}")
        return [tuple(x[:a]) + (math.prod(x[a:e + 1]),) + tuple(x[e + 1:])]


@dataclass
class Reshape(Op):
    TYPE: ClassVar[str] = "Reshape"
    CODE: ClassVar[int] = 17
    INTEGER: ClassVar[bool] = True
    LAYOUT_ONLY: ClassVar[bool] = True

    def infer_shapes(self, inputs):
        return [None]  # the output tensor's declared shape is the target


@dataclass
class Permute(Op):
    TYPE: ClassVar[str] = "Permute"
    CODE: ClassVar[int] = 18
    INTEGER: ClassVar[bool] = True
    LAYOUT_ONLY: ClassVar[bool] = True
    order: list[int] = field(default_factory=list)

    def infer_shapes(self, inputs):
        x = inputs[0]
        if sorted(self.order) != list(range(len(x))):
            raise ShapeError(f"order {self.order} is not a permutation of {len(x)} axes")
        if self.order[0] != 0:
            raise ShapeError("the batch axis (0) must stay first")
        return [tuple(x[i] for i in self.order)]


@dataclass
class Slice(Op):
    TYPE: ClassVar[str] = "Slice"
    CODE: ClassVar[int] = 19
    INTEGER: ClassVar[bool] = True
    LAYOUT_ONLY: ClassVar[bool] = True
    NUM_OUTPUTS: ClassVar[int | None] = None
    axis: int = 1
    points: list[int] = field(default_factory=list)

    def infer_shapes(self, inputs):
        x = inputs[0]
        a = _axis(self.axis, len(x))
        bounds = [0, *self.points, x[a]]
        if any(b1 <= b0 for b0, b1 in zip(bounds, bounds[1:])):
            raise ShapeError(f"slice points {self.points} are not increasing inside 0..{x[a]}")
        return [tuple(x[:a]) + (b1 - b0,) + tuple(x[a + 1:]) for b0, b1 in zip(bounds, bounds[1:])]


@dataclass
class Pad(Op):
    TYPE: ClassVar[str] = "Pad"
    CODE: ClassVar[int] = 20
    INTEGER: ClassVar[bool] = True
    pads: list[int] = field(default_factory=list)
    value: float = 0.0

    def infer_shapes(self, inputs):
        x = inputs[0]
        if len(self.pads) != 2 * len(x) or any(p < 0 for p in self.pads):
            raise ShapeError(f"pads {self.pads} must be 2*{len(x)} non-negative values")
        if self.pads[0] or self.pads[len(x)]:
            raise ShapeError("the batch axis cannot be padded")
        r = len(x)
        return [tuple(d + self.pads[i] + self.pads[r + i] for i, d in enumerate(x))]


@dataclass
class Upsample(Op):
    TYPE: ClassVar[str] = "Upsample"
    CODE: ClassVar[int] = 21
    INTEGER: ClassVar[bool] = True
    LAYOUT_ONLY: ClassVar[bool] = True
    scale_h: int = 1
    scale_w: int = 1

    def check(self) -> None:
        _positive(scale_h=self.scale_h, scale_w=self.scale_w)

    def infer_shapes(self, inputs):
        n, c, h, w = _need_rank(inputs[0], 4, "input")
        return [(n, c, h * self.scale_h, w * self.scale_w)]


@dataclass
class Normalize(Op):
    TYPE: ClassVar[str] = "Normalize"
    CODE: ClassVar[int] = 22
    MIN_INPUTS: ClassVar[int] = 1
    MAX_INPUTS: ClassVar[int | None] = 2
    across_spatial: bool = True
    channel_shared: bool = True
    eps: float = 1e-10

    def infer_shapes(self, inputs):
        x = _need_rank(inputs[0], 4, "input")
        if len(inputs) > 1 and inputs[1] is not None:
            want = 1 if self.channel_shared else x[1]
            if math.prod(inputs[1]) != want:
                raise ShapeError(f"scale {inputs[1]} must have {want} elements")
        return [x]


def _bucket(value: float) -> float | int:
    """Index of the 1e-6-wide interval holding ``value`` (the value itself if not finite)."""
    scaled = value * 1e6
    return math.floor(scaled) if math.isfinite(scaled) else scaled


@dataclass
class PriorBox(Op):
    TYPE: ClassVar[str] = "PriorBox"
    CODE: ClassVar[int] = 23
    MIN_INPUTS: ClassVar[int] = 2
    MAX_INPUTS: ClassVar[int | None] = 2
    min_sizes: list[float] = field(default_factory=list)
    max_sizes: list[float] = field(default_factory=list)
    aspect_ratios: list[float] = field(default_factory=list)
    flip: bool = True
    clip: bool = False
    variances: list[float] = field(default_factory=list)
    img_h: int = 0
    img_w: int = 0
    step_h: float = 0.0
    step_w: float = 0.0
    offset: float = 0.5

    def check(self) -> None:
        if not self.min_sizes or any(s <= 0 for s in self.min_sizes):
            raise ShapeError("min_sizes must be non-empty and positive")
        if self.max_sizes and len(self.max_sizes) != len(self.min_sizes):
            raise ShapeError("max_sizes must be empty or as long as min_sizes")
        if any(not s > 0 for s in self.max_sizes):
            raise ShapeError("max_sizes must be positive")
        if len(self.aspect_ratios) > MAX_ASPECT_RATIOS or any(
                not 0 < r < math.inf for r in self.aspect_ratios):
            raise ShapeError(f"aspect_ratios must be at most {MAX_ASPECT_RATIOS} positive finite values")
        if len(self.variances) not in (0, 1, 4):
            raise ShapeError("variances must have 0, 1 or 4 values")

    def expanded_aspect_ratios(self) -> list[float]:
        """Caffe-SSD's list: 1, then each new ratio and (with flip) its inverse."""
        ratios = [1.0]
        # Values by 1e-6-wide bucket: a value within 1e-6 of r lies in a bucket
        # next to r's, so each test is O(1) (a file may hold many ratios).
        buckets: dict[float | int, list[float]] = {_bucket(1.0): [1.0]}
        for ar in self.aspect_ratios:
            for r in ([ar, 1.0 / ar] if self.flip else [ar]):
                key = _bucket(r)
                keys = range(key - 2, key + 3) if isinstance(key, int) else (key,)
                near = [x for k in keys for x in buckets.get(k, ())]
                if r == r and all(abs(r - x) >= 1e-6 for x in near):
                    ratios.append(r)
                    buckets.setdefault(key, []).append(r)
        return ratios

    def num_priors(self) -> int:
        return len(self.expanded_aspect_ratios()) * len(self.min_sizes) + len(self.max_sizes)

    def infer_shapes(self, inputs):
        _, _, h, w = _need_rank(inputs[0], 4, "feature map")
        _need_rank(inputs[1], 4, "image")
        return [(1, 2, h * w * self.num_priors() * 4)]


CODE_CORNER, CODE_CENTER_SIZE, CODE_CORNER_SIZE = 1, 2, 3


#: PriorBox: at most this many aspect ratios (so at most 63 expanded ones).
MAX_ASPECT_RATIOS = 31


@dataclass
class DetectionOutput(Op):
    TYPE: ClassVar[str] = "DetectionOutput"
    CODE: ClassVar[int] = 24
    MIN_INPUTS: ClassVar[int] = 3
    MAX_INPUTS: ClassVar[int | None] = 3
    num_classes: int = 0
    share_location: bool = True
    background_label_id: int = 0
    nms_threshold: float = 0.3
    top_k: int = -1
    eta: float = 1.0
    keep_top_k: int = -1
    confidence_threshold: float = 0.0
    code_type: int = CODE_CORNER
    variance_encoded_in_target: bool = False
    clip: bool = False

    def check(self) -> None:
        _positive(num_classes=self.num_classes)
        if self.code_type not in (CODE_CORNER, CODE_CENTER_SIZE, CODE_CORNER_SIZE):
            raise ShapeError(f"unknown code_type {self.code_type}")

    def capacity(self, num_priors: int) -> int:
        """Rows of the output: keep_top_k, else every candidate that could survive."""
        if self.keep_top_k > 0:
            return self.keep_top_k
        per_class = num_priors if self.top_k <= 0 else min(self.top_k, num_priors)
        return per_class * self.num_classes

    def infer_shapes(self, inputs):
        loc, conf, priors = inputs
        num_priors = priors[-1] // 4
        if math.prod(conf[1:]) != num_priors * self.num_classes:
            raise ShapeError(f"conf {conf} does not hold {num_priors} priors x {self.num_classes} classes")
        loc_classes = 1 if self.share_location else self.num_classes
        if math.prod(loc[1:]) != num_priors * 4 * loc_classes:
            raise ShapeError(f"loc {loc} does not hold {num_priors} priors x 4 coordinates")
        return [(loc[0], 1, self.capacity(num_priors), 7)]


@dataclass
class Requantize(Op):
    TYPE: ClassVar[str] = "Requantize"
    CODE: ClassVar[int] = 25
    INTEGER: ClassVar[bool] = True


@dataclass
class Custom(Op):
    TYPE: ClassVar[str] = "Custom"
    CODE: ClassVar[int] = 26
    MIN_INPUTS: ClassVar[int] = 0
    MAX_INPUTS: ClassVar[int | None] = None
    NUM_OUTPUTS: ClassVar[int | None] = None
    name: str = ""
    version: int = 1
    options: bytes = b""

    def check(self) -> None:
        if not self.name:
            raise ShapeError("custom operator needs a name")

    def infer_shapes(self, inputs):
        return [None]


@dataclass
class Exp(Op):
    TYPE: ClassVar[str] = "Exp"
    CODE: ClassVar[int] = 27
    FORMAT_MINOR: ClassVar[int] = 1


@dataclass
class Minifloat(Op):
    """Ristretto's Trim2MiniFloat on a float tensor (spec/arithmetic.md)."""

    TYPE: ClassVar[str] = "Minifloat"
    CODE: ClassVar[int] = 28
    FORMAT_MINOR: ClassVar[int] = 1
    mant_bits: int = 23
    exp_bits: int = 8

    def check(self) -> None:
        if not 0 <= self.mant_bits <= 23:
            raise ShapeError(f"mant_bits must be in 0..23, got {self.mant_bits}")
        if not 1 <= self.exp_bits <= 8:
            raise ShapeError(f"exp_bits must be in 1..8, got {self.exp_bits}")


#: Every operator class by its schema name, in union order.
OPS: dict[str, type[Op]] = {cls.TYPE: cls for cls in sorted(
    (c for c in list(globals().values()) if isinstance(c, type) and issubclass(c, Op) and c.TYPE),
    key=lambda c: c.CODE)}
#: Every operator class by its union discriminant.
OPS_BY_CODE: dict[int, type[Op]] = {cls.CODE: cls for cls in OPS.values()}
