"""The NumPy reference backend: a graph executor with three modes.

``integer`` (default)
    spec/arithmetic.md literally. Integer tensors hold int64 codes; a layer
    runs in integer form when its operator has one and all its activation
    inputs and outputs are integer, otherwise in float form (inputs
    dequantized to float32, float32 kernel, integer outputs quantized).
    Returned integer tensors are int32 codes, float tensors float32.

Inputs are preprocessed float arrays (quantized with the input tensor's
format when it is integer); an *integer* array given for an integer input
tensor is taken as its codes (range-checked, not rounded).
``float``
    Every integer format is ignored: constants dequantized to float32, every
    layer in float32, nothing quantized. Returns float32.
``simulate``
    Ristretto's method: real values in float64; after every layer, outputs
    that are integer tensors are quantized to their grid (quantize, then
    dequantize). Returns the real values, float64, for every tensor.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from dfxsdk import ops, validate
from dfxsdk.errors import DfxError, DfxFormatError, DfxInputError, DfxUnsupportedError
from dfxsdk.fixedpoint import dequantize, quantize
from dfxsdk.graph import Layer, Model, Tensor
from dfxsdk.providers import Backend, check_inputs

from . import float_ops, int_ops

MODES = ("integer", "float", "simulate")


def integer_form(model: Model, layer: Layer) -> bool:
    """Whether ``layer`` runs in integer form (spec/arithmetic.md, "Forms").

    The operator has an integer form and every input (activations and
    constants) and every output is an integer tensor; the validator uses the
    same rule.
    """
    return validate.integer_form(model, layer.op, layer.inputs, layer.outputs)


class Executor:
    """Runs one model in one mode; caches the converted constants."""

    def __init__(self, model: Model, mode: str) -> None:
        if mode not in MODES:
            raise DfxUnsupportedError(f"unknown mode '{mode}' (numpy backend modes: {', '.join(MODES)})")
        self.model = model
        self.mode = mode
        self._const: dict[str, np.ndarray] = {}
        self._plan = [(layer, integer_form(model, layer)) for layer in model.layers]

    # -- tensors ------------------------------------------------------------------
    def constant(self, t: Tensor, as_int: bool) -> np.ndarray:
        key = f"{t.name}\0{as_int}"
        if key not in self._const:
            validate.check_values(t, self.model.source)  # codes outside bw: refused, like the native backend
            data = t.data
            if as_int:
                v = np.asarray(data, np.int64)
            elif t.qformat is None:
                v = np.asarray(data, self.float_dtype)
            else:
                v = dequantize(data, t.qformat, dtype=self.float_dtype)
            self._const[key] = v
        return self._const[key]

    @property
    def float_dtype(self) -> np.dtype:
        return np.dtype(np.float64 if self.mode == "simulate" else np.float32)

    def _as_real(self, t: Tensor, v: np.ndarray) -> np.ndarray:
        """A value held in the integer mode's representation, as float32 reals."""
        if self.mode == "integer" and t.qformat is not None:
            return dequantize(v, t.qformat, dtype=np.float32)
        return v

    def _store(self, t: Tensor, real: np.ndarray) -> np.ndarray:
        """Convert a float kernel's result into the representation of tensor ``t``."""
        if self.mode == "float" or t.qformat is None:
            return np.asarray(real, self.float_dtype)
        q = quantize(real, t.qformat)
        if self.mode == "integer":
            return q
        return dequantize(q, t.qformat, dtype=np.float64)

    # -- running ------------------------------------------------------------------
    def run(self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        model = self.model
        wanted = list(outputs) if outputs is not None else list(model.outputs)
        for name in wanted:
            if name not in model.tensors:
                raise DfxInputError(f"no tensor named '{name}' in the model", file=model.source)
        values: dict[str, np.ndarray] = {}
        batch = self._bind_inputs(inputs, values)
        self._check_memory(batch)
        needed = self._last_use(wanted)
        for i, (layer, as_int) in enumerate(self._plan):
            try:
                self._run_layer(layer, as_int, values, batch)
            except MemoryError:
                raise DfxUnsupportedError("the NumPy backend ran out of memory (its codes are int64)",
                                          file=model.source, layer=layer.name) from None
            except DfxError as exc:
                if exc.layer is None:
                    exc.layer = layer.name
                    exc.args = (str(exc),)
                raise exc.with_file(model.source) if model.source else exc
            for name in list(values):
                if needed.get(name, -1) < i and name not in wanted:
                    del values[name]
        return {name: self._result(model.tensors[name], self._value(name, values)) for name in wanted}

    def _check_memory(self, batch: int) -> None:
        """Refuse, before running, a model with one activation larger than half the machine's memory."""
        try:
            limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
        except (ValueError, OSError, AttributeError):
            return
        for t in self.model.tensors.values():
            if t.is_constant or not t.shape:
                continue
            need = math.prod(t.shape[1:]) * batch * 8
            if need > limit:
                raise DfxUnsupportedError(f"needs {need / 2**30:.1f} GiB as int64 codes, more than half of this "
                                          f"machine's memory: use the native backend", file=self.model.source,
                                          tensor=t.name)

    def _bind_inputs(self, inputs: dict[str, np.ndarray], values: dict) -> int:
        model = self.model
        batch = check_inputs(model, inputs)
        for name in model.inputs:
            t = model.tensors[name]
            x = np.asarray(inputs[name])
            if t.qformat is not None and x.dtype.kind in "iu":
                values[name] = self._bind_codes(t, x)
            else:
                values[name] = self._store(t, np.asarray(x, np.float64 if self.mode == "simulate" else np.float32))
        return batch

    def _bind_codes(self, t: Tensor, x: np.ndarray) -> np.ndarray:
        """An integer array given for an integer input: its codes, used as they are."""
        q = t.qformat
        if x.size and (int(x.min()) < q.qmin or int(x.max()) > q.qmax):
            raise DfxInputError(f"integer codes for input '{t.name}' exceed its {q.bw}-bit range",
                                file=self.model.source)
        x = np.asarray(x, np.int64)
        if self.mode == "integer":
            return x
        return dequantize(x, q, dtype=self.float_dtype)

    def _last_use(self, wanted: list[str]) -> dict[str, int]:
        last: dict[str, int] = {}
        for i, layer in enumerate(self.model.layers):
            for n in layer.inputs:
                if n is not None:
                    last[n] = i
        return last

    def _value(self, name: str, values: dict) -> np.ndarray:
        if name in values:
            return values[name]
        t = self.model.tensors[name]
        if t.is_constant:
            return self.constant(t, self.mode == "integer" and t.qformat is not None)
        raise DfxInputError(f"tensor '{name}' was not computed", file=self.model.source)

    def _run_layer(self, layer: Layer, as_int: bool, values: dict, batch: int) -> None:
        model = self.model
        tin = [None if n is None else model.tensors[n] for n in layer.inputs]
        tout = [model.tensors[n] for n in layer.outputs]
        out_shapes = [(batch,) + t.shape[1:] if t.shape else t.shape for t in tout]
        ins = [None if t is None else self._input(t, values) for t in tin]
        while ins and ins[-1] is None:
            ins.pop()
        if self.mode == "integer" and as_int:
            outs = int_ops.run(layer.op, ins, [None if t is None else t.qformat for t in tin],
                               [t.qformat for t in tout], layer.name, out_shapes)
        else:
            real = [None if t is None or v is None else self._as_real(t, v) for t, v in zip(tin, ins)]
            ctx = float_ops.Ctx(layer.name, self.float_dtype if self.mode != "integer" else np.dtype(np.float32),
                                out_shapes)
            outs = [self._store(t, y) for t, y in zip(tout, float_ops.run(layer.op, real, ctx))]
        if len(outs) != len(tout):
            raise DfxFormatError(f"{layer.type} produced {len(outs)} outputs, the layer lists {len(tout)}",
                                 layer=layer.name)
        for t, y in zip(tout, outs):
            values[t.name] = y

    def _input(self, t: Tensor, values: dict) -> np.ndarray:
        if t.is_constant:
            return self.constant(t, self.mode == "integer" and t.qformat is not None)
        if t.name not in values:
            raise DfxFormatError("is read before any layer writes it", tensor=t.name)
        return values[t.name]

    def _result(self, t: Tensor, v: np.ndarray) -> np.ndarray:
        if self.mode == "integer" and t.qformat is not None:
            return np.asarray(v, np.int32)
        return np.array(v, copy=True) if not v.flags.writeable else v


class NumpyBackend(Backend):
    """The reference backend (see the module docstring for the three modes)."""

    name = "numpy"
    description = "NumPy reference: exact integer arithmetic, float and Ristretto-simulation modes"
    modes = MODES
    supported_ops = frozenset(float_ops.KERNELS)

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Model, dict[str, Executor]]] = {}

    def unsupported(self, model: Model) -> list[str]:
        from dfxsdk.plugins import get_manager

        bad = []
        customs = None
        for layer in model.layers:
            if layer.type == "Custom":
                customs = get_manager().custom_operators() if customs is None else customs
                if layer.op.name not in customs:
                    bad.append(f"{layer.name} (Custom {layer.op.name})")
            elif layer.type not in float_ops.KERNELS:
                bad.append(f"{layer.name} ({layer.type})")
        return bad

    def executor(self, model: Model, mode: str) -> Executor:
        """The (cached) executor of ``model`` in ``mode``."""
        entry = self._cache.get(id(model))
        if entry is None or entry[0] is not model:
            entry = (model, {})
            self._cache = {id(model): entry}
        if mode not in entry[1]:
            entry[1][mode] = Executor(model, mode)
        return entry[1][mode]

    def run(self, model: Model, inputs: dict[str, np.ndarray], *, mode: str | None = None,
            outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        return self.executor(model, mode or MODES[0]).run(inputs, outputs)


__all__ = ["NumpyBackend", "Executor", "integer_form", "MODES", "ops"]
