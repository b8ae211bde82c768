"""The objects plugins provide: importers, quantizers, backends, custom operators.

A plugin returns instances of these classes from the hooks in
:mod:`dfxsdk.hookspecs`. Subclass them; override what the docstrings say.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .graph import Model


class Importer(ABC):
    """Turns files of another framework into a :class:`~dfxsdk.graph.Model`."""

    #: Short unique name, used by ``dfxsdk convert --importer NAME``.
    name: str = ""
    #: One line for ``dfxsdk plugins``.
    description: str = ""
    #: File name endings this importer reads (lower case, with the dot).
    extensions: tuple[str, ...] = ()

    def claims(self, paths: Sequence[Path]) -> bool:
        """Whether this importer recognises ``paths`` (the convert arguments).

        The default accepts when every path ends in one of ``extensions``.
        Override to sniff content as well; never raise here, return False.
        """
        return bool(paths) and all(p.name.lower().endswith(self.extensions) for p in paths)

    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:
        """Add this importer's own ``dfxsdk convert`` options (prefer long names)."""

    @abstractmethod
    def import_model(self, paths: Sequence[Path], options: dict[str, Any]) -> Model:
        """Read ``paths`` and return a model.

        ``options`` holds the parsed values of the arguments this importer added,
        plus ``input_shape`` (a tuple or None). Raise
        :class:`~dfxsdk.errors.DfxImportError` naming the file, layer and field
        for bad input, :class:`~dfxsdk.errors.DfxUnsupportedError` for valid
        input that is not supported.
        """


@dataclass
class CalibrationData:
    """Sample inputs for a quantizer: an iterable of ``{input name: batch}``.

    Batches are preprocessed (ready for the graph input). ``labels``, when the
    user gave them, holds one integer class per sample in batch order.
    """

    batches: Iterable[dict[str, np.ndarray]]
    labels: np.ndarray | None = None
    num_samples: int | None = None


class Quantizer(ABC):
    """Chooses integer formats for a float model (or refines a quantized one)."""

    name: str = ""
    description: str = ""

    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:
        """Add this quantizer's own ``dfxsdk quantize`` options."""

    @abstractmethod
    def quantize(self, model: Model, data: CalibrationData, options: dict[str, Any]) -> Model:
        """Return a quantized copy of ``model``; never modify the argument."""


class Backend(ABC):
    """Runs models."""

    name: str = ""
    description: str = ""
    #: Execution modes this backend offers; the first is the default.
    #: "integer": the integer graph as spec/arithmetic.md defines it;
    #: "float": every tensor in float32, weights dequantized;
    #: "simulate": Ristretto's quantize-dequantize simulation in float64.
    modes: tuple[str, ...] = ("integer",)

    def unsupported(self, model: Model) -> list[str]:
        """Names of the layers this backend cannot run ('layer (Type)'); empty if all."""
        return []

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

        Returns the graph outputs, or the tensors named in ``outputs`` (any
        tensor of the graph). Quantized tensors are returned as their integer
        codes (int32/int64 arrays); use :func:`dfxsdk.fixedpoint.dequantize`
        for real values. Raise :class:`~dfxsdk.errors.DfxUnsupportedError`
        for an operator or mode it lacks.
        """


class CustomOperator(ABC):
    """The reference semantics of a ``Custom`` operator a plugin defines."""

    #: The name stored in the schema's Custom.name ("package.Operator").
    name: str = ""
    #: Versions of the semantics this implementation understands.
    versions: tuple[int, ...] = (1,)

    @abstractmethod
    def infer_shapes(self, input_shapes: list[tuple[int, ...]], options: bytes) -> list[tuple[int, ...]]:
        """Output shapes for the given input shapes and opaque options."""

    @abstractmethod
    def reference(self, inputs: list[np.ndarray], options: bytes) -> list[np.ndarray]:
        """Compute the outputs in float32 from float32 inputs."""


@dataclass
class PluginInfo:
    """What a plugin says about itself (``dfxsdk_plugin_info``)."""

    name: str
    version: str
    #: The plugin API version (major, minor) the plugin was written for.
    api_version: tuple[int, int]
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)
