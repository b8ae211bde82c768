"""The in-memory graph that importers build, quantizers rewrite and backends run.

A :class:`Model` holds named :class:`Tensor` objects and an ordered list of
:class:`Layer` objects that refer to tensors by name. It maps one to one onto
the .dfx schema (indices become names); :func:`dfxsdk.save` and
:func:`dfxsdk.load` convert between the two.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _registry
from ._version import __version__
from .errors import DfxFormatError
from .formats import DataType, QFormat
from .ops import Custom, Op, ShapeError, as_float32
from .packing import unpack


@dataclass
class Tensor:
    """A named tensor: a constant when it has data, otherwise an activation.

    ``data`` holds the element values in ``shape``: float32 for FLOAT32,
    int8/int16/int32 for the integer types (int8 for the packed INT4/INT2).
    For a loaded model it is a read-only view into the file mapping (unpacked
    on first access for packed types).
    """

    name: str
    shape: tuple[int, ...]
    dtype: DataType = DataType.FLOAT32
    qformat: QFormat | None = None
    _data: np.ndarray | None = field(default=None, repr=False)
    #: Stored bytes for a loaded constant (a view of the file mapping).
    raw: memoryview | np.ndarray | None = field(default=None, repr=False, compare=False)
    #: CRC-32 of the stored bytes, as recorded in the file (loaded models).
    crc32: int | None = field(default=None, repr=False, compare=False)
    _loader: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.shape = tuple(int(d) for d in self.shape)
        self.dtype = DataType(self.dtype)

    @classmethod
    def constant(cls, name: str, data: np.ndarray, qformat: QFormat | None = None,
                 dtype: DataType | None = None) -> Tensor:
        """A constant tensor holding ``data`` (its shape is the array's).

        Without ``qformat`` the data is stored as FLOAT32; with one, as integer
        codes in ``dtype`` (default: the smallest type for ``qformat.bw``,
        packed below 8 bits).
        """
        data = np.asarray(data)
        if qformat is None:
            return cls(name, data.shape, DataType.FLOAT32, None, _data=data.astype(np.float32))
        dtype = DataType.for_bw(qformat.bw, packed=True) if dtype is None else DataType(dtype)
        return cls(name, data.shape, dtype, qformat, _data=data.astype(dtype.numpy_dtype))

    @property
    def data(self) -> np.ndarray | None:
        """Element values (None for activations)."""
        if self._data is None and self._loader is not None:
            self._data = self._loader()
            self._loader = None
        return self._data

    @data.setter
    def data(self, value: np.ndarray | None) -> None:
        self._data = value
        self._loader = None
        self.raw = None
        self.crc32 = None

    @property
    def is_constant(self) -> bool:
        return self._data is not None or self._loader is not None

    @property
    def is_quantized(self) -> bool:
        return self.qformat is not None

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes in storage (packed size for sub-byte types)."""
        return self.dtype.storage_size(self.size)

    def real(self) -> np.ndarray:
        """The real values this constant stands for (dequantized), as float64."""
        from .fixedpoint import dequantize

        data = self.data
        if data is None:
            raise ValueError(f"tensor '{self.name}' is an activation and has no data")
        if self.qformat is None:
            return np.asarray(data, dtype=np.float64)
        return dequantize(data, self.qformat, dtype=np.float64)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tensor):
            return NotImplemented
        if (self.name, self.shape, self.dtype, self.qformat, self.is_constant) != (
                other.name, other.shape, other.dtype, other.qformat, other.is_constant):
            return False
        return not self.is_constant or np.array_equal(self.data, other.data)

    __hash__ = None  # type: ignore[assignment]


def lazy_unpacked(tensor_dtype: DataType, raw, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    """A loader that unpacks sub-byte ``raw`` bytes into a read-only int8 array."""

    def load() -> np.ndarray:
        arr = unpack(raw, tensor_dtype, math.prod(shape)).reshape(shape)
        arr.flags.writeable = False
        return arr

    return load


@dataclass
class Layer:
    """One operator application; inputs/outputs are tensor names (None: omitted)."""

    name: str
    op: Op
    inputs: list[str | None]
    outputs: list[str]
    #: The source-framework layer this one came from, if it was rewritten.
    origin: str | None = None
    version: int = 1

    @property
    def type(self) -> str:
        return self.op.TYPE


@dataclass
class Preprocessing:
    """raw -> (raw[c] - mean[c]) * scale[c] for one graph input."""

    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    channel_order: str = "UNSPECIFIED"  # one of formats.CHANNEL_ORDERS: UNSPECIFIED, RGB, BGR or GRAY

    def __post_init__(self) -> None:
        self.mean = [as_float32(v) for v in self.mean]
        self.scale = [as_float32(v) for v in self.scale]

    def apply(self, raw: np.ndarray, channel_axis: int = 1) -> np.ndarray:
        """Apply to a raw N,C,... array, returning float32."""
        x = np.asarray(raw, dtype=np.float32)
        shape = [1] * x.ndim
        if x.ndim > channel_axis:
            shape[channel_axis] = -1
        if self.mean:
            x = x - np.asarray(self.mean, np.float32).reshape(shape if len(self.mean) > 1 else [1])
        if self.scale:
            x = x * np.asarray(self.scale, np.float32).reshape(shape if len(self.scale) > 1 else [1])
        return x.astype(np.float32)


@dataclass
class RistrettoView:
    """Ristretto's per-layer quantization (bw/fl of input, output, params)."""

    bw_layer_in: int
    fl_layer_in: int
    bw_layer_out: int
    fl_layer_out: int
    bw_params: int
    fl_params: int


@dataclass
class Model:
    """A whole network: tensors by name, layers in execution order, metadata."""

    name: str = ""
    tensors: dict[str, Tensor] = field(default_factory=dict)
    layers: list[Layer] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    preprocessing: dict[str, Preprocessing] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    producer_name: str = "dfxsdk"
    producer_version: str = __version__
    #: Path the model was loaded from, if any (for messages).
    source: str | None = field(default=None, compare=False)
    #: (major, minor) format version of the file it was loaded from (None for a new model).
    #: :func:`dfxsdk.save` always writes the version this dfxsdk implements; ``validate()``
    #: refuses a value it cannot honour (another major, or a newer minor).
    format_version: tuple[int, int] | None = field(default=None, compare=False)

    # -- building ---------------------------------------------------------
    def add_tensor(self, tensor: Tensor) -> Tensor:
        """Add a tensor; its name must be new."""
        if tensor.name in self.tensors:
            raise DfxFormatError(f"duplicate tensor name '{tensor.name}'", tensor=tensor.name)
        self.tensors[tensor.name] = tensor
        return tensor

    def add_layer(self, layer: Layer) -> Layer:
        """Append a layer (after every layer it depends on); see :meth:`append` to build one."""
        self.layers.append(layer)
        return layer

    def output_shapes(self, op: Op, inputs: Sequence[str | None], *,
                      custom_operator: Any = None) -> list[tuple[int, ...] | None]:
        """The output shapes of ``op`` applied to the tensors ``inputs`` (None: omitted input).

        Built-in operators infer them themselves (an entry may be None when the
        operator cannot); a ``Custom`` operator through its provider's
        :meth:`~dfxsdk.providers.CustomOperator.infer_shapes`: ``custom_operator``,
        or the installed plugin that provides ``op.name``. Raises DfxFormatError
        (field ``options``) for inconsistent shapes or options, naming the input shapes.
        """
        for n in inputs:
            if n is not None and n not in self.tensors:
                raise DfxFormatError(f"input '{n}' is not a tensor of the model", file=self.source,
                                     field="inputs")
        shapes = [None if n is None else self.tensors[n].shape for n in inputs]
        try:
            op.check()
            if isinstance(op, Custom):
                provider = custom_operator or _registry.registry().custom_operators().get(op.name)
                if provider is None:
                    raise DfxFormatError(f"no installed plugin provides the custom operator '{op.name}', so "
                                         "its output shapes are unknown; pass custom_operator= or shapes=",
                                         file=self.source, field="op")
                result = provider.infer_shapes([s for s in shapes if s is not None], op.options)
                return [tuple(int(d) for d in s) for s in result]
            return [None if s is None else tuple(int(d) for d in s) for s in op.infer_shapes(shapes)]
        except ShapeError as exc:
            shown = ", ".join(str(None if s is None else list(s)) for s in shapes)
            raise DfxFormatError(f"{exc} (input shapes {shown})", file=self.source, field="options") from None

    def append(self, op: Op, inputs: Sequence[str | None], *, name: str | None = None,
               outputs: Sequence[str] | None = None,
               qformats: QFormat | Sequence[QFormat | None] | None = None,
               shapes: Sequence[tuple[int, ...]] | None = None, origin: str | None = None,
               custom_operator: Any = None) -> Layer:
        """Add a layer applying ``op`` to the tensors ``inputs``, with new output tensors.

        The graph builder importers use: the output shapes come from
        :meth:`output_shapes` (for a ``Custom`` operator, from its provider)
        unless ``shapes`` gives them; the output tensors are created, in the
        integer type of ``qformats`` (one format for every output, or one per
        output; None: float32), and the layer is appended. ``name`` defaults to
        a new ``type_N`` name; ``outputs`` (the new tensors' names) to
        ``[name]``, or ``name:K`` for operators with several outputs. Returns
        the layer (its output names are ``layer.outputs``). Raises
        DfxFormatError naming the layer for shapes it cannot infer, a name
        already used, or inconsistent options; the model is unchanged then.
        """
        if name is None:
            taken = {layer.name for layer in self.layers}
            k = len(self.layers)
            while f"{op.TYPE.lower()}_{k}" in taken:
                k += 1
            name = f"{op.TYPE.lower()}_{k}"
        where = dict(file=self.source, layer=name)
        if any(layer.name == name for layer in self.layers):
            raise DfxFormatError("a layer of this name exists already", **where, field="name")
        try:
            inferred = list(shapes) if shapes is not None else self.output_shapes(
                op, inputs, custom_operator=custom_operator)
        except DfxFormatError as exc:
            exc.layer = name
            exc.args = (str(exc),)
            raise
        if outputs is None:
            outputs = [name] if len(inferred) == 1 else [f"{name}:{k}" for k in range(len(inferred))]
        outputs = list(outputs)
        if len(inferred) == 1 and len(outputs) > 1:
            inferred = inferred * len(outputs)
        if len(inferred) != len(outputs):
            raise DfxFormatError(f"{len(outputs)} output names for {len(inferred)} outputs", **where,
                                 field="outputs")
        fmts = list(qformats) if isinstance(qformats, (list, tuple)) else [qformats] * len(outputs)
        if len(fmts) != len(outputs):
            raise DfxFormatError(f"{len(fmts)} formats for {len(outputs)} outputs", **where, field="qformats")
        for out, shape in zip(outputs, inferred):
            if out in self.tensors or outputs.count(out) > 1:
                raise DfxFormatError(f"output tensor '{out}' exists already", **where, field="outputs")
            if shape is None:
                raise DfxFormatError(f"cannot infer the shape of output '{out}' of {op.TYPE}; pass shapes=",
                                     **where, field="shapes")
        for out, shape, fmt in zip(outputs, inferred, fmts):
            dtype = DataType.FLOAT32 if fmt is None else DataType.for_bw(fmt.bw)
            self.add_tensor(Tensor(out, tuple(shape), dtype, fmt))
        return self.add_layer(Layer(name, op, list(inputs), outputs, origin=origin))

    # -- queries ----------------------------------------------------------
    def tensor(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise DfxFormatError(f"no tensor named '{name}'", file=self.source) from None

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise DfxFormatError(f"no layer named '{name}'", file=self.source)

    def producer(self, tensor_name: str) -> Layer | None:
        """The layer that writes ``tensor_name`` (None for inputs and constants)."""
        for layer in self.layers:
            if tensor_name in layer.outputs:
                return layer
        return None

    def consumers(self, tensor_name: str) -> list[Layer]:
        """Layers that read ``tensor_name``, in execution order."""
        return [layer for layer in self.layers if tensor_name in layer.inputs]

    def constants(self) -> Iterator[Tensor]:
        return (t for t in self.tensors.values() if t.is_constant)

    @property
    def is_quantized(self) -> bool:
        """True when any layer computes on integer activations."""
        return any(t.is_quantized and not t.is_constant for t in self.tensors.values())

    def ristretto_view(self, layer: Layer) -> RistrettoView | None:
        """Ristretto's bw/fl triple for a convolution or fully connected layer.

        Derived from the layer's tensors: input activation, output activation
        and weights (the bias shares the weights' format in Ristretto). None
        for other operators and for float or per-channel layers.
        """
        if layer.type not in ("Conv2D", "Deconv2D", "FullyConnected"):
            return None
        fmts = [self.tensors[n].qformat for n in (layer.inputs[0], layer.outputs[0], layer.inputs[1])]
        if any(f is None or f.per_channel for f in fmts):
            return None
        fin, fout, fpar = fmts
        return RistrettoView(fin.bw, fin.fl, fout.bw, fout.fl, fpar.bw, fpar.fl)

    def run(self, inputs: dict[str, np.ndarray], *, backend: str = "numpy", **options) -> dict[str, np.ndarray]:
        """Run the model on already preprocessed inputs with a backend plugin.

        ``options`` go to the backend (``mode="float"``, ``outputs=[...]``).
        The backend contract is checked (spec/plugins.md, "Backend"): layers
        the backend lacks raise DfxUnsupportedError naming them; a result
        that is not a mapping of every requested tensor with the right shape
        and dtype raises DfxPluginError naming the plugin.
        """
        return _registry.registry().run_model(self, inputs, backend=backend, **options)

    def validate(self) -> None:
        """Raise DfxFormatError if the model breaks any rule of spec/format.md or holds anything
        :func:`dfxsdk.save` cannot write (a foreign ``ops.Op`` subclass, non-string metadata,
        a ``format_version`` it does not write), naming the layer, tensor and field."""
        from .validate import validate_model

        validate_model(self)
