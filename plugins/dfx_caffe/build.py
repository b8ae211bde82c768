"""The graph builder: Caffe blobs become dfxsdk tensors, layers become layers.

Tensor naming (deterministic, documented in README.md):

- the first value of a Caffe blob is the tensor named like the blob;
- every later value of the same blob (written by an in-place layer such as
  ReLU, or by a Requantize the importer inserts) is ``<blob>@<layer>``, where
  ``<layer>`` is the layer that wrote it;
- constants are ``<layer>/<role>`` (``conv1/weights``, ``conv1/bias``,
  ``relu1/slope``, ``mbox_priorbox`` for folded prior boxes: the blob name).

Names that would collide get a ``#2``, ``#3`` ... suffix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dfxsdk import ops
from dfxsdk.errors import DfxFormatError, DfxImportError
from dfxsdk.formats import DataType, QFormat
from dfxsdk.graph import Model, Tensor

from . import parse
from ._proto import caffe_pb2 as pb

Shape = tuple[int, ...]


@dataclass
class BlobSpec:
    """One parameter blob a layer expects: its role and shape."""

    role: str
    shape: Shape


class WeightSource:
    """Parameter blobs by layer name, from a .caffemodel (or synthesised)."""

    def __init__(self, nf: parse.NetFile | None) -> None:
        self.file = nf
        self._layers = {l.name: l for l in nf.net.layer} if nf is not None else {}

    def __contains__(self, name: str) -> bool:
        return name in self._layers

    def names(self) -> list[str]:
        return list(self._layers)

    def blobs(self, layer: str, expected: Sequence[BlobSpec]) -> list[np.ndarray]:
        """Arrays for ``layer`` in the expected shapes; DfxImportError on any mismatch."""
        if self.file is None:
            raise DfxImportError("needs weights, but no .caffemodel was given", layer=layer)
        where = str(self.file.path)
        src = self._layers.get(layer)
        if src is None:
            raise DfxImportError(f"no layer of this name in the weights ({where})", layer=layer)
        roles = ", ".join(b.role for b in expected)
        if len(src.blobs) != len(expected):
            raise DfxImportError(f"the weights ({where}) hold {len(src.blobs)} blobs for this layer, "
                                 f"it needs {len(expected)} ({roles})", layer=layer)
        out = []
        for i, (blob, spec) in enumerate(zip(src.blobs, expected)):
            shape, legacy = parse.blob_shape(blob)
            want = tuple(spec.shape)
            padded = (1,) * (4 - len(want)) + want if len(want) <= 4 else want
            if shape != want and not (legacy and shape == padded) and not (shape == () and want == (1,)):
                raise DfxImportError(f"blob {i} ({spec.role}) has shape {shape} in the weights ({where}), "
                                     f"the layer needs {want}", layer=layer)
            arr = parse.blob_array(blob)
            if arr.size != int(np.prod(want, dtype=np.int64)):
                raise DfxImportError(f"blob {i} ({spec.role}) holds {arr.size} values, its shape {shape} "
                                     f"needs {int(np.prod(shape, dtype=np.int64))}", layer=layer)
            out.append(arr.reshape(want))
        return out


class RandomWeights(WeightSource):
    """Synthetic weights of the expected shapes (tests, benchmarks, dry runs)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(None)
        self.rng = np.random.default_rng(seed)
        self.made: dict[str, list[np.ndarray]] = {}

    def __contains__(self, name: str) -> bool:
        return True

    def blobs(self, layer: str, expected: Sequence[BlobSpec]) -> list[np.ndarray]:
        arrays = []
        for spec in expected:
            if spec.role == "variance":
                a = self.rng.uniform(0.5, 2.0, spec.shape)
            elif spec.role == "scale_factor":
                a = np.ones(spec.shape)
            elif spec.role in ("scale", "slope"):
                a = self.rng.uniform(0.5, 1.5, spec.shape)
            else:
                fan_in = int(np.prod(spec.shape[1:])) if len(spec.shape) > 1 else 1
                a = self.rng.normal(0.0, 1.0 / np.sqrt(max(fan_in, 1)), spec.shape)
            arrays.append(a.astype(np.float32))
        self.made[layer] = list(arrays)
        return arrays


class Builder:
    """Accumulates a :class:`~dfxsdk.graph.Model` while Caffe layers are converted."""

    def __init__(self, name: str, weights: WeightSource) -> None:
        self.model = Model(name=name)
        self.weights = weights
        self.bound: dict[str, str] = {}        # Caffe blob -> current tensor
        self.seen: set[str] = set()            # blobs that had a value
        self.layer_names: set[str] = set()
        self.caffe_types: dict[str, str] = {}  # dfx layer name -> Caffe type
        #: Known fork extensions of the layer being converted: (message, field) -> raw value.
        self.extras: dict[tuple[str, str], str] = {}

    # -- names ---------------------------------------------------------------
    def unique_tensor(self, name: str) -> str:
        if name not in self.model.tensors:
            return name
        k = 2
        while f"{name}#{k}" in self.model.tensors:
            k += 1
        return f"{name}#{k}"

    def unique_layer(self, name: str) -> str:
        base, k = name or "layer", 2
        name = base
        while name in self.layer_names:
            name = f"{base}#{k}"
            k += 1
        self.layer_names.add(name)
        return name

    # -- tensors -------------------------------------------------------------
    def current(self, blob: str, layer: str) -> Tensor:
        """The tensor holding the current value of ``blob``."""
        name = self.bound.get(blob)
        if name is None:
            raise DfxImportError(f"reads blob '{blob}', which no earlier layer produces", layer=layer)
        return self.model.tensors[name]

    def bind(self, blob: str, tensor: str) -> None:
        self.bound[blob] = tensor
        self.seen.add(blob)

    def tensor_name(self, blob: str, writer: str) -> str:
        """A new tensor name for a value of ``blob`` written by layer ``writer``."""
        return self.unique_tensor(blob if blob not in self.seen else f"{blob}@{writer}")

    def activation(self, blob: str, writer: str, shape: Shape | None, qformat: QFormat | None = None) -> str:
        """A new activation tensor (a graph input) for ``blob``; bound."""
        name = self.tensor_name(blob, writer)
        if shape is None:
            raise DfxImportError(f"cannot infer the shape of blob '{blob}'", layer=writer)
        dtype = DataType.FLOAT32 if qformat is None else DataType.for_bw(qformat.bw)
        self.model.add_tensor(Tensor(name, tuple(shape), dtype, qformat))
        self.bind(blob, name)
        return name

    def constant(self, name: str, array: np.ndarray, qformat: QFormat | None = None, *,
                 codes: np.ndarray | None = None) -> str:
        """A constant: float32 ``array``, or integer ``codes`` in ``qformat`` (packed below 8 bits)."""
        name = self.unique_tensor(name)
        if qformat is None:
            t = Tensor(name, tuple(array.shape), DataType.FLOAT32, None,
                       _data=np.ascontiguousarray(array, dtype=np.float32))
        else:
            dtype = DataType.for_bw(qformat.bw, packed=True)
            data = np.ascontiguousarray(codes).astype(dtype.numpy_dtype)
            t = Tensor(name, tuple(data.shape), dtype, qformat, _data=data)
        self.model.add_tensor(t)
        return name

    def shapes(self, inputs: Sequence[str | None]) -> list[Shape | None]:
        return [None if n is None else self.model.tensors[n].shape for n in inputs]

    # -- layers --------------------------------------------------------------
    def infer(self, op: ops.Op, inputs: Sequence[str | None], layer: str) -> list[Shape | None]:
        """Output shapes of ``op`` on ``inputs`` (:meth:`dfxsdk.Model.output_shapes`)."""
        try:
            return self.model.output_shapes(op, inputs)
        except DfxFormatError as exc:
            raise DfxImportError(exc.message, layer=layer) from None

    def append(self, name: str, op: ops.Op, inputs: Sequence[str | None], tops: Sequence[str], *,
               shapes: Sequence[Shape | None] | None = None, formats: Sequence[QFormat | None] | None = None,
               origin: str | None = None, caffe_type: str | None = None) -> list[str]:
        """Add layer ``name`` with :meth:`dfxsdk.Model.append` and bind ``tops`` to its new outputs."""
        outs = [self.tensor_name(top, name) for top in tops]
        for top, shape in zip(tops, shapes or []):
            if shape is None:
                raise DfxImportError(f"cannot infer the shape of blob '{top}'", layer=name)
        try:
            self.model.append(op, inputs, name=name, outputs=outs, shapes=shapes, origin=origin,
                              qformats=None if formats is None else list(formats))
        except DfxFormatError as exc:
            raise DfxImportError(exc.message, layer=name, field=exc.field) from None
        for top, out in zip(tops, outs):
            self.bind(top, out)
        if caffe_type:
            self.caffe_types[name] = caffe_type
        return outs

    def params(self, layer: str, expected: Sequence[BlobSpec]) -> list[np.ndarray]:
        return self.weights.blobs(layer, expected)


#: A per-type converter: (builder, caffe layer, dfx layer name) -> None.
Converter = Callable[[Builder, pb.LayerParameter, str], None]
