"""The objects plugins provide: importers, quantizers, backends, custom operators.

A plugin returns instances of these classes from the hooks in
:mod:`dfxsdk.hookspecs`. Subclass them and override what the docstrings say;
the class attributes (``name``, ``description``, ...) are read once, when the
plugin is registered, and checked then.

Stability: this module is part of the public plugin API. Within plugin API
1.x its classes, attributes and method signatures only grow (new optional
attributes and methods with defaults); nothing a 1.0 plugin relies on is
removed or changes meaning. See spec/plugins.md, "Versioning and stability".
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _registry

if TYPE_CHECKING:
    from .graph import Model

#: Entry of :attr:`Backend.supported_ops` meaning "any custom operator whose
#: reference kernel an installed plugin provides" (see :class:`CustomOperator`).
CUSTOM_BY_REFERENCE = "Custom"


class Importer(ABC):
    """Turns files of another framework into a :class:`~dfxsdk.graph.Model`."""

    #: Short unique name, used by ``dfxsdk convert --importer NAME``.
    name: str = ""
    #: One line for ``dfxsdk plugins``.
    description: str = ""
    #: File name endings this importer reads (lower case, with the dot).
    extensions: tuple[str, ...] = ()

    def claims(self, paths: Sequence[Path]) -> bool | Claim:
        """Whether this importer recognises ``paths`` (the convert arguments).

        ``dfxsdk convert`` asks every importer; exactly one must answer True
        (the user can still force one with ``--importer``). Instead of True an
        importer may return a :class:`Claim` with a problem: "these are my
        files, but they cannot be imported as given" (the weights file is
        missing); if it is the only claimer, the user gets that problem (exit
        code 2) instead of a failed import or "no importer recognises". The default
        accepts when every path ends in one of :attr:`extensions`. Override it
        to look at the content as well (see :meth:`head`) when the extension
        alone is ambiguous, e.g. ``.json`` or ``.npz``. Be cheap (read a few
        KB at most) and never raise: return False for anything you do not
        recognise, including files that cannot be read.
        """
        return bool(paths) and all(p.name.lower().endswith(self.extensions) for p in paths)

    @staticmethod
    def head(path: Path, size: int = 4096) -> bytes:
        """The first ``size`` bytes of ``path``; b"" if it cannot be read (for sniffing)."""
        try:
            with open(path, "rb") as f:
                return f.read(size)
        except OSError:
            return b""

    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:
        """Add this importer's own ``dfxsdk convert`` options to its argument group.

        Use long option names prefixed with the importer's name
        (``--caffe-ristretto``), so that importers never clash; the parsed
        values reach :meth:`import_model` in ``options`` under their ``dest``.
        """

    @abstractmethod
    def import_model(self, paths: Sequence[Path], options: dict[str, Any]) -> Model:
        """Read ``paths`` and return a new model.

        ``options`` holds the parsed values of the arguments this importer
        added, plus ``input_shape`` (a tuple of ints, or None when the user
        gave none). The result is validated and saved by the caller; the
        importer need not save anything.

        Raise :class:`~dfxsdk.errors.DfxImportError` for bad input, naming
        the file, layer and field (``DfxImportError("msg", file=..., layer=...,
        field=...)``), and :class:`~dfxsdk.errors.DfxUnsupportedError` for
        valid input that is not supported. Any other exception is a bug in the
        plugin: dfxsdk reports it as a :class:`~dfxsdk.errors.DfxPluginError`
        naming the plugin (exit code 4).
        """


@dataclass(frozen=True)
class Claim:
    """A richer answer of :meth:`Importer.claims`: "mine, but ...".

    True in a boolean context, so code that treats claims() as a bool keeps
    working. ``problem`` says, as one phrase, why the claimed files cannot be
    imported as given, e.g. ``"the weights file net.caffemodel is missing"``;
    None means the claim is plain (as True).
    """

    problem: str | None = None

    def __bool__(self) -> bool:
        return True


@dataclass
class CalibrationData:
    """Sample inputs for a quantizer: an iterable of ``{input name: batch}``.

    Batches are preprocessed (ready for the graph input). ``labels``, when the
    user gave them, holds one integer class per sample in batch order.
    ``batches`` may be a one-shot iterator: materialise it (``list(...)``) if
    you need several passes.
    """

    batches: Iterable[dict[str, np.ndarray]]
    labels: np.ndarray | None = None
    num_samples: int | None = None


class Quantizer(ABC):
    """Chooses integer formats for a float model (or refines a quantized one)."""

    #: Short unique name, used by ``dfxsdk quantize --quantizer NAME``.
    name: str = ""
    #: One line for ``dfxsdk plugins``.
    description: str = ""

    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:
        """Add this quantizer's own ``dfxsdk quantize`` options (prefixed long names)."""

    @abstractmethod
    def quantize(self, model: Model, data: CalibrationData, options: dict[str, Any]) -> Model:
        """Return a quantized copy of ``model``; never modify the argument.

        ``options`` holds the parsed values of this quantizer's arguments.
        Errors follow the same rules as :meth:`Importer.import_model`.
        """


class Backend(ABC):
    """Runs models."""

    #: Short unique name, used by ``--backend NAME`` and ``Model.run(backend=NAME)``.
    name: str = ""
    #: One line for ``dfxsdk plugins``.
    description: str = ""
    #: Execution modes this backend offers; the first is the default.
    #: "integer": the integer graph as spec/arithmetic.md defines it;
    #: "float": every tensor in float32, weights dequantized;
    #: "simulate": Ristretto's quantize-dequantize simulation in float64.
    modes: tuple[str, ...] = ("integer",)
    #: Operators this backend runs: operator type names (``ops.OPS`` keys,
    #: e.g. "Conv2D"), plus custom operator names ("pkg.Op") it has its own
    #: kernels for. The entry ``"Custom"`` (:data:`CUSTOM_BY_REFERENCE`)
    #: means it runs any custom operator through the providing plugin's
    #: :meth:`CustomOperator.reference`.
    supported_ops: frozenset[str] = frozenset()

    def unsupported(self, model: Model) -> list[str]:
        """The layers this backend cannot run, as ``'layer (Type)'``; empty if all.

        The default checks every layer against :attr:`supported_ops`; a
        ``Custom`` layer is supported when its name is listed, or when
        ``"Custom"`` is listed and an installed plugin provides the operator.
        Override for finer rules (data types, options).
        """
        bad: list[str] = []
        customs: dict[str, CustomOperator] | None = None
        for layer in model.layers:
            if layer.type == CUSTOM_BY_REFERENCE:
                op_name = getattr(layer.op, "name", "")
                if op_name in self.supported_ops:
                    continue
                if CUSTOM_BY_REFERENCE in self.supported_ops:
                    if customs is None:
                        customs = _registry.registry().custom_operators()
                    if op_name in customs:
                        continue
                bad.append(f"{layer.name} (Custom {op_name})")
            elif layer.type not in self.supported_ops:
                bad.append(f"{layer.name} ({layer.type})")
        return bad

    @abstractmethod
    def run(
        self,
        model: Model,
        inputs: dict[str, np.ndarray],
        *,
        mode: str | None = None,
        outputs: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``model`` on preprocessed float inputs (any batch size).

        Returns a dict with the graph outputs, or the tensors named in
        ``outputs`` (any tensor of the graph): one NumPy array per name, of
        shape ``(N,) + shape[1:]`` for an activation (N: the inputs' batch)
        and the tensor's own shape for a constant, of the dtype
        :func:`result_dtype` gives for the mode: in ``integer`` mode int32
        codes for quantized tensors (:func:`dfxsdk.fixedpoint.dequantize`
        gives real values) and float32 for float tensors; float32 for every
        tensor in ``float`` mode; float64 in ``simulate`` mode. dfxsdk checks
        this (:func:`result_problems`) and reports a broken result as a
        plugin failure. Raise :class:`~dfxsdk.errors.DfxUnsupportedError`
        for an operator or mode it lacks, :class:`~dfxsdk.errors.DfxInputError`
        for inputs of the wrong names or shapes.
        """


#: The result dtype of each standard mode; ``integer`` mode: int32 for quantized tensors.
MODE_DTYPES: dict[str, np.dtype] = {"integer": np.dtype(np.float32), "float": np.dtype(np.float32),
                                    "simulate": np.dtype(np.float64)}


def result_dtype(model: Model, name: str, mode: str) -> np.dtype | None:
    """The dtype :meth:`Backend.run` returns for tensor ``name`` in ``mode`` (None: a mode of its own)."""
    if mode == "integer" and model.tensors[name].qformat is not None:
        return np.dtype(np.int32)
    return MODE_DTYPES.get(mode)


def result_problems(model: Model, result: object, wanted: Sequence[str], mode: str, batch: int) -> list[str]:
    """What is wrong with a :meth:`Backend.run` result (empty when it keeps the contract).

    ``result`` must be a mapping with an array for every name in ``wanted``,
    of the shape and dtype :meth:`Backend.run` documents for ``mode`` and a
    batch of ``batch`` samples. Backend authors can call it in their tests.
    """
    from collections.abc import Mapping

    if not isinstance(result, Mapping):
        return [f"returned {type(result).__name__}, not a dict of arrays"]
    problems = []
    missing = [n for n in wanted if n not in result]
    if missing:
        problems.append(f"returned no array for {', '.join(map(repr, missing))}")
    for name in wanted:
        if name not in result:
            continue
        value = result[name]
        if not isinstance(value, np.ndarray):
            problems.append(f"'{name}' is a {type(value).__name__}, not a numpy array")
            continue
        t = model.tensors[name]
        shape = t.shape if t.is_constant or not t.shape else (batch,) + t.shape[1:]
        if tuple(value.shape) != tuple(shape):
            problems.append(f"'{name}' has shape {tuple(value.shape)}, expected {tuple(shape)}")
        dtype = result_dtype(model, name, mode)
        if dtype is not None and value.dtype != dtype:
            problems.append(f"'{name}' is {value.dtype}, expected {dtype} in {mode} mode")
    return problems


def check_inputs(model: Model, inputs: dict[str, np.ndarray]) -> int:
    """Check ``inputs`` against the model's graph inputs; return the batch size.

    Every graph input must be given with the declared shape except for
    dimension 0 (the batch), which must be the same for all inputs. Raises
    :class:`~dfxsdk.errors.DfxInputError` naming the input otherwise. Backends
    call this before running.
    """
    from .errors import DfxInputError

    missing = [n for n in model.inputs if n not in inputs]
    if missing:
        raise DfxInputError(f"missing input(s) {missing}; the model's inputs are {model.inputs}",
                            file=model.source)
    batch = None
    for name in model.inputs:
        shape = model.tensors[name].shape
        x = np.asarray(inputs[name])
        if len(shape) and (x.ndim != len(shape) or tuple(x.shape[1:]) != tuple(shape[1:])):
            raise DfxInputError(f"input '{name}' has shape {x.shape}, the model expects "
                                f"{('N',) + shape[1:]}", file=model.source)
        if x.ndim:
            if batch is not None and x.shape[0] != batch:
                raise DfxInputError("inputs have different batch sizes", file=model.source)
            batch = x.shape[0]
    return 1 if batch is None else batch


class CustomOperator(ABC):
    """The semantics of a ``Custom`` operator a plugin defines, with its reference kernel.

    A model stores a custom layer as ``ops.Custom(name=..., version=...,
    options=b"...")``; the options are opaque bytes only this class
    interprets. The operator runs in float form: a backend that lists
    ``"Custom"`` in :attr:`Backend.supported_ops` (the numpy backend does)
    dequantizes the layer's inputs to float32, calls :meth:`reference`, and
    quantizes the outputs to the formats of the layer's output tensors.
    """

    #: The name stored in the schema's Custom.name: "package.Operator", globally unique.
    name: str = ""
    #: One line for ``dfxsdk plugins``.
    description: str = ""
    #: Versions of the semantics this implementation understands.
    versions: tuple[int, ...] = (1,)

    @abstractmethod
    def infer_shapes(self, input_shapes: list[tuple[int, ...]], options: bytes) -> list[tuple[int, ...]]:
        """Output shapes for the given input shapes and opaque options.

        Importers call it to declare the layer's output tensors (the file
        stores those shapes; the format itself cannot infer them).
        """

    @abstractmethod
    def reference(self, inputs: list[np.ndarray], options: bytes) -> list[np.ndarray]:
        """Compute the outputs in float32 from float32 inputs (one array per output).

        The leading axis is the batch, which may differ from the shapes in
        the file. Raise :class:`~dfxsdk.errors.DfxInputError` for inputs it
        cannot accept, :class:`~dfxsdk.errors.DfxFormatError` for bad options.
        """


@dataclass
class PluginInfo:
    """What a plugin says about itself (``dfxsdk_plugin_info``)."""

    #: The plugin's name, as ``dfxsdk plugins`` shows it.
    name: str
    #: The plugin's own version (usually its package version).
    version: str
    #: The plugin API version (major, minor) the plugin was written for;
    #: normally :data:`dfxsdk.hookspecs.PLUGIN_API_VERSION` at the time of writing.
    api_version: tuple[int, int]
    #: One line for ``dfxsdk plugins``.
    description: str = ""
    #: Free-form facts shown by ``dfxsdk plugins --json`` (homepage, license...).
    extra: dict[str, str] = field(default_factory=dict)
