"""From an ``onnx.ModelProto`` to a :class:`~dfxsdk.graph.Model`.

The converter walks the graph's nodes in their (topological) order, keeping
for every ONNX value either a :class:`Const` (initializers, Constant nodes,
anything computed from constants and static shapes only) or an :class:`Act`
(a dfx activation tensor). Nodes whose inputs are all constant are folded
with ONNX's own reference evaluator (:mod:`.fold`); every other node goes
through :data:`.layers.CONVERTERS`, one handler per operator. :mod:`.parse`
reads attributes and upgrades old opsets; :mod:`.values` holds the two kinds of
value. This module holds the driver, the graph inputs and outputs, and the
layer-building and QDQ helpers the handlers use. See README.md for the
operator mapping and the refusals.

Before anything is converted, every node that would need a converter and has
none is collected, and one :class:`DfxUnsupportedError` lists them all.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from dfxsdk import fixedpoint, ops, propagate
from dfxsdk.errors import DfxFormatError, DfxImportError, DfxUnsupportedError
from dfxsdk.formats import FL_MAX, FL_MIN, DataType, QFormat, Rounding
from dfxsdk.graph import Layer, Model, Tensor

from . import __version__
from .fold import fold
from .layers import CONVERTERS
from .parse import MIN_OPSET, attrs, node_label, upgrade
from .values import Act, Const, Shape, Value

#: Ops of ONNX's quantized-operator format (QOperator), named in the refusal.
QOPERATOR_TYPES = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
                             "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul", "QLinearConcat",
                             "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid",
                             "QLinearLeakyRelu", "QGemm"})
#: ONNX element types that become signed dfx integers, with their bit widths.
SIGNED_INT_BITS = {onnx.TensorProto.INT8: 8, onnx.TensorProto.INT16: 16, onnx.TensorProto.INT32: 32}
UNSIGNED_TYPES = {onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32}
#: Ops computed from the static shape of an activation, never from its values.
SHAPE_OPS = frozenset({"Shape", "Size"})


def convert(proto: onnx.ModelProto, *, input_shape: Sequence[int] | None = None,
            source: str | None = None) -> Model:
    """Convert ``proto`` (see the module docstring); opsets before 7 are upgraded to 7 first."""
    opset = next((d.version for d in proto.opset_import if d.domain in ("", "ai.onnx")), 0)
    if 0 < opset < MIN_OPSET:
        proto = upgrade(proto, opset)
    conv = Converter(proto, input_shape=input_shape, source=source)
    conv.legacy_opset = 0 < opset < MIN_OPSET
    return conv.run()


class Converter:
    """One conversion (see the module docstring)."""

    def __init__(self, proto: onnx.ModelProto, *, input_shape: Sequence[int] | None,
                 source: str | None) -> None:
        self.proto = proto
        self.graph = proto.graph
        self.input_shape = tuple(int(d) for d in input_shape) if input_shape else None
        self.source = source
        self.opsets = {("" if d.domain in ("", "ai.onnx") else d.domain): int(d.version)
                       for d in proto.opset_import}
        self.opset = self.opsets.get("", 0)
        self.model = Model(name=self.graph.name or "onnx")
        self.values: dict[str, Value] = {}
        self.uses: Counter[str] = Counter()       # dfx activation tensor -> remaining ONNX reads
        self.value_uses: Counter[str] = Counter()  # ONNX value -> consumers (+1 per graph output)
        self.layer_names: set[str] = set()
        self.qdq_issues: list[str] = []
        #: The file's opset was older than 7 and upgraded (tolerate old exporters' habits).
        self.legacy_opset = False
        self.node: onnx.NodeProto | None = None
        self.label = ""
        #: Set when --input-shape overrides the file's fixed input dimensions (named in errors).
        self.resized: str | None = None

    # -- driver ---------------------------------------------------------------
    def run(self) -> Model:
        if not self.graph.node and not self.graph.output:
            raise DfxImportError("the ONNX file holds no graph")
        if 0 < self.opset < MIN_OPSET:
            raise DfxUnsupportedError(f"opset {self.opset} is older than {MIN_OPSET}; convert the model "
                                      "with onnx.version_converter first")
        for init in self.graph.initializer:
            self.values[init.name] = Const(self._array(init))
        self._inputs()
        nodes = self._needed_nodes()
        for _, node in nodes:
            for name in node.input:
                if name:
                    self.value_uses[name] += 1
        for out in self.graph.output:
            self.value_uses[out.name] += 1
        self._check_supported(nodes)
        for index, node in nodes:
            self.node, self.label = node, node_label(node, index)
            try:
                self._convert_node(node)
            except (DfxImportError, DfxUnsupportedError) as exc:
                if exc.layer is None:
                    exc.layer = self.label
                    exc.message = f"{exc.message} ({node.op_type}, opset {self._node_opset(node)})"
                    if self.resized:
                        exc.message += f"; {self.resized}, which this network may not allow"
                    exc.args = (str(exc),)
                raise
        if self.qdq_issues:
            lines = "\n  ".join(self.qdq_issues[:20])
            more = f"\n  ... and {len(self.qdq_issues) - 20} more" if len(self.qdq_issues) > 20 else ""
            raise DfxUnsupportedError(
                "this quantized ONNX model cannot be imported as dynamic fixed point, which stores "
                "a value as q * 2^-fl: every QuantizeLinear/DequantizeLinear needs a scale that is "
                "exactly a power of two, a zero point of 0 and a signed int8/int16/int32 type "
                f"({len(self.qdq_issues)} problem(s)):\n  {lines}{more}")
        self._outputs()
        self.model.metadata.update(self._metadata())
        return self.model

    def _metadata(self) -> dict[str, str]:
        p = self.proto
        meta = {"source.framework": "onnx",
                "source.onnx.opset": str(self.opset),
                "source.onnx.ir_version": str(p.ir_version),
                "source.importer": f"dfx_onnx {__version__}"}
        if p.producer_name:
            meta["source.onnx.producer"] = f"{p.producer_name} {p.producer_version}".strip()
        if self.source:
            meta["source.files"] = self.source.replace("\\", "/").rsplit("/", 1)[-1]
        if self.model.is_quantized or any(t.qformat for t in self.model.constants()):
            meta["source.quantization"] = "onnx QDQ, power-of-two scales (QuantizeLinear rounds half to even)"
        return meta

    def _node_opset(self, node: onnx.NodeProto) -> int:
        return self.opsets.get("" if node.domain in ("", "ai.onnx") else node.domain, 0)

    def _array(self, t: onnx.TensorProto) -> np.ndarray:
        if t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data:
            raise DfxImportError(f"initializer '{t.name}' is stored as external data that was not loaded; "
                                 "keep the data file next to the model")
        return numpy_helper.to_array(t)

    # -- inputs and outputs ----------------------------------------------------
    def _inputs(self) -> None:
        real = [i for i in self.graph.input if i.name not in self.values]
        if self.input_shape is not None and len(real) != 1:
            names = ", ".join(i.name for i in real) or "none"
            raise DfxImportError(f"--input-shape needs a model with exactly one input; this one has {names}")
        for vi in real:
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                raise DfxUnsupportedError(f"graph input '{vi.name}' is not a tensor (sequences, maps and "
                                          "optionals are not supported)")
            if tt.elem_type != onnx.TensorProto.FLOAT:
                raise DfxUnsupportedError(f"graph input '{vi.name}' has element type "
                                          f"{onnx.TensorProto.DataType.Name(tt.elem_type)}; only float32 "
                                          "inputs are supported")
            shape = self._input_dims(vi)
            name = self._unique_tensor(vi.name)
            self.model.add_tensor(Tensor(name, shape))
            self.model.inputs.append(name)
            self.values[vi.name] = Act(name)

    def _input_dims(self, vi: onnx.ValueInfoProto) -> Shape:
        tt = vi.type.tensor_type
        dims: list[int | None] = []
        if tt.HasField("shape"):
            for d in tt.shape.dim:
                if d.HasField("dim_value") and d.dim_value == 0:
                    raise DfxUnsupportedError(f"graph input '{vi.name}' has an empty dimension "
                                              f"{self._dims_text(vi)}; empty tensors are not supported")
                dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None)
        else:
            dims = None  # type: ignore[assignment]
        if self.input_shape is not None:
            if dims is not None and len(dims) != len(self.input_shape):
                raise DfxImportError(f"--input-shape {list(self.input_shape)} has rank {len(self.input_shape)}, "
                                     f"input '{vi.name}' has rank {len(dims)}")
            if any(f is not None and f != g for f, g in zip(dims or (), self.input_shape)):
                # honoured where the network allows it: every node's shape follows from the new input
                self.resized = f"--input-shape {list(self.input_shape)} replaces input '{vi.name}' " \
                               f"{self._dims_text(vi)}"
            return self.input_shape
        if dims is None:
            raise DfxImportError(f"graph input '{vi.name}' has no shape; give --input-shape N,C,H,W")
        if any(d is None for d in dims[1:]):
            raise DfxImportError(f"graph input '{vi.name}' has symbolic dimensions {self._dims_text(vi)}; "
                                 "give --input-shape (the batch dimension alone may stay symbolic)")
        if dims and dims[0] is None:
            dims[0] = 1  # a symbolic batch: the file stores 1, a runtime may use any batch
        return tuple(int(d) for d in dims)  # type: ignore[arg-type]

    @staticmethod
    def _dims_text(vi: onnx.ValueInfoProto) -> str:
        dims = vi.type.tensor_type.shape.dim
        return "(" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + ")"

    def _outputs(self) -> None:
        for out in self.graph.output:
            v = self.values.get(out.name)
            if v is None:
                raise DfxImportError(f"graph output '{out.name}' is never computed")
            if isinstance(v, Const):
                raise DfxUnsupportedError(f"graph output '{out.name}' is a constant (it depends on no "
                                          "input); dfx graph outputs must be computed")
            tensor = v.tensor
            if tensor in self.model.inputs or tensor in self.model.outputs:
                # dfx graph outputs are written by layers, each once: copy with an identity Reshape
                self.label = self._unique_layer(f"{out.name}/identity")
                self.layer_names.discard(self.label)
                tensor = self.emit(ops.Reshape(), [tensor], None, shape=self.shape(tensor), suffix=None)
            self.model.outputs.append(tensor)

    # -- the node list ---------------------------------------------------------
    def _needed_nodes(self) -> list[tuple[int, onnx.NodeProto]]:
        """The nodes the graph outputs depend on, in file order (with their index)."""
        producer = {}
        for i, node in enumerate(self.graph.node):
            for o in node.output:
                if o:
                    producer[o] = i
        needed: set[int] = set()
        stack = [o.name for o in self.graph.output]
        while stack:
            i = producer.get(stack.pop())
            if i is None or i in needed:
                continue
            needed.add(i)
            stack.extend(n for n in self.graph.node[i].input if n)
        return [(i, n) for i, n in enumerate(self.graph.node) if i in needed]

    def _check_supported(self, nodes: list[tuple[int, onnx.NodeProto]]) -> None:
        """Raise one DfxUnsupportedError naming every node no converter handles."""
        const = {n for n, v in self.values.items() if isinstance(v, Const)}
        bad = []
        for index, node in nodes:
            ins = [n for n in node.input if n]
            foreign = node.domain not in ("", "ai.onnx")
            if not foreign and (node.op_type in SHAPE_OPS or all(n in const for n in ins)) \
                    and not node.op_type.startswith("QLinear"):
                const.update(o for o in node.output if o)
                continue
            if foreign or node.op_type not in CONVERTERS:
                domain = f"{node.domain}." if foreign else ""
                bad.append(f"{node_label(node, index)} ({domain}{node.op_type}, opset {self._node_opset(node)})")
        if not bad:
            return
        kinds = {b.rsplit("(", 1)[1].split(",")[0] for b in bad}
        hint = ""
        if kinds & QOPERATOR_TYPES:
            hint = ("\nThe model uses ONNX's QOperator quantization (QLinearConv, ConvInteger, ...), whose "
                    "scales and zero points dfx cannot represent in general; export it in QDQ form "
                    "(QuantizeLinear/DequantizeLinear) with power-of-two scales and zero points of 0, or "
                    "import the float model and quantize it with 'dfxsdk quantize'.")
        listed = "\n  ".join(bad)
        raise DfxUnsupportedError(f"{len(bad)} node(s) use operators the ONNX importer does not support "
                                  f"(supported: {', '.join(sorted(CONVERTERS))}; constant subgraphs of any "
                                  f"operator are folded):\n  {listed}{hint}")

    def _convert_node(self, node: onnx.NodeProto) -> None:
        ins: list[Value | None] = []
        for name in node.input:
            if not name:
                ins.append(None)
                continue
            v = self.values.get(name)
            if v is None:
                raise DfxImportError(f"reads '{name}', which no earlier node produces (the graph must be "
                                     "topologically sorted)")
            ins.append(v)
        present = [v for v in ins if v is not None]
        if node.op_type == "DequantizeLinear":
            self.dequantize_linear(node, attrs(node), ins)
        elif node.op_type in SHAPE_OPS and present and isinstance(present[0], Act):
            self.uses[present[0].tensor] -= 1   # reads the static shape, not the values
            shape = np.array(self.shape(present[0].tensor), dtype=np.int64)
            if node.op_type == "Size":
                self.bind_const(node.output[0], np.array(shape.prod(), dtype=np.int64))
            else:
                a = attrs(node)
                r = len(shape)
                start, end = a.get("start", 0), a.get("end", r)
                self.bind_const(node.output[0], shape[slice(start, end)])
        elif all(isinstance(v, Const) for v in present) and not node.op_type.startswith("QLinear"):
            fold(self, node, ins)
        else:
            for v in present:
                if isinstance(v, Act):
                    self.uses[v.tensor] -= 1
            CONVERTERS[node.op_type](self, node, attrs(node), ins)

    # -- values -----------------------------------------------------------------
    def bind(self, name: str, value: Value) -> None:
        self.values[name] = value
        if isinstance(value, Act):
            self.uses[value.tensor] += self.value_uses[name]

    def bind_const(self, name: str, array: np.ndarray) -> None:
        self.bind(name, Const(np.asarray(array)))

    def shape(self, tensor: str) -> Shape:
        return self.model.tensors[tensor].shape

    def fmt(self, tensor: str | None) -> QFormat | None:
        return None if tensor is None else self.model.tensors[tensor].qformat

    def _unique_tensor(self, name: str) -> str:
        name = name or "t"
        if name not in self.model.tensors:
            return name
        k = 2
        while f"{name}#{k}" in self.model.tensors:
            k += 1
        return f"{name}#{k}"

    def _unique_layer(self, name: str) -> str:
        base, k = name or "layer", 2
        while name in self.layer_names:
            name = f"{base}#{k}"
            k += 1
        self.layer_names.add(name)
        return name

    def tensor_of(self, v: Value, role: str = "const") -> str:
        """The dfx tensor of ``v``, materialising a constant (float32, or integer codes) once."""
        if isinstance(v, Act):
            return v.tensor
        if v.tensor is None:
            name = self._unique_tensor(f"{self.label}/{role}")
            self.model.add_tensor(self._const_tensor(name, v))
            v.tensor = name
        return v.tensor

    def new_const(self, role: str, array: np.ndarray) -> str:
        """A new float32 constant tensor for the current node."""
        return self.tensor_of(Const(np.asarray(array, np.float32)), role)

    @staticmethod
    def _const_tensor(name: str, v: Const) -> Tensor:
        if v.qformat is None:
            if v.value.dtype.kind not in "fiub":
                raise DfxUnsupportedError(f"constant '{name}' has element type {v.value.dtype}")
            return Tensor(name, v.value.shape, DataType.FLOAT32, None,
                          _data=np.array(v.value, dtype=np.float32, order="C"))
        dtype = DataType.for_bw(v.qformat.bw)
        data = np.array(v.codes, dtype=dtype.numpy_dtype, order="C")
        return Tensor(name, data.shape, dtype, v.qformat, _data=data)

    def act(self, v: Value | None, what: str = "input") -> str:
        """The activation tensor of ``v``; refuse a constant where a run-time value is needed."""
        if isinstance(v, Act):
            return v.tensor
        raise DfxUnsupportedError(f"the {what} must be computed from the graph input (it is "
                                  f"{'missing' if v is None else 'a constant'} here)")

    def const(self, ins: list[Value | None], index: int, what: str, *, required: bool = True) -> Const | None:
        """Input ``index`` as a constant; DfxUnsupportedError when it is computed at run time."""
        v = ins[index] if index < len(ins) else None
        if v is None:
            if required:
                raise DfxImportError(f"the {what} (input {index}) is missing")
            return None
        if isinstance(v, Act):
            raise DfxUnsupportedError(f"the {what} (input {index}) must be a constant (an initializer "
                                      "or computable from constants and static shapes); here it is "
                                      "computed from the graph input")
        return v

    # -- layers -----------------------------------------------------------------
    def emit(self, op: ops.Op, inputs: Sequence[str | None], output: str | None, *,
             suffix: str | None = None, fmt: QFormat | None | str = "auto",
             shape: Shape | None = None) -> str:
        """Add a layer; its output tensor is bound to ONNX value ``output`` (None: internal).

        ``suffix`` names an extra layer of a node that becomes several layers
        (``<node>/<suffix>``, origin the node). The output format defaults to
        :func:`dfxsdk.propagate.output_format` (exact when the inputs are integer).
        """
        try:
            out_shape = shape if shape is not None else self.model.output_shapes(op, inputs)[0]
        except DfxFormatError as exc:
            raise DfxImportError(exc.message) from None
        if out_shape is None:
            raise DfxImportError(f"cannot infer the output shape of {op.TYPE}")
        if fmt == "auto":
            fmt = propagate.output_format(op, [self.fmt(n) for n in inputs])
        lname = self._unique_layer(self.label if suffix is None else f"{self.label}/{suffix}")
        base = output if output is not None else f"{self.label}/{suffix or 'out'}"
        tname = self._unique_tensor(base)
        origin = self.label if suffix is not None else None
        self.model.append(op, inputs, name=lname, outputs=[tname], qformats=fmt,  # type: ignore[arg-type]
                          shapes=[tuple(out_shape)], origin=origin)
        if output is not None:
            self.bind(output, Act(tname))
        return tname

    def emit_slice(self, x: str, axis: int, points: Sequence[int], outputs: Sequence[str | None], *,
                   suffix: str | None = None) -> list[str]:
        """A dfx Slice of ``x`` cut at ``points`` along ``axis``; piece i is bound to ``outputs[i]`` (None: unused)."""
        op = ops.Slice(axis=axis, points=list(points))
        try:
            shapes = self.model.output_shapes(op, [x])
        except DfxFormatError as exc:
            raise DfxImportError(f"{exc.message} (input shape {self.shape(x)})") from None
        fmts = propagate.output_formats(op, [self.fmt(x)], len(shapes))
        lname = self._unique_layer(self.label if suffix is None else f"{self.label}/{suffix}")
        names = [self._unique_tensor(out or f"{lname}/part{i}") for i, out in enumerate(outputs)]
        self.model.append(op, [x], name=lname, outputs=names, qformats=list(fmts), shapes=[tuple(s) for s in shapes],
                          origin=self.label if suffix is not None else None)
        for tname, out in zip(names, outputs):
            if out:
                self.bind(out, Act(tname))
        return names

    def alias(self, output: str, tensor: str) -> None:
        """ONNX value ``output`` is the same run-time value as ``tensor`` (no layer)."""
        self.bind(output, Act(tensor))

    def out_used(self, index: int) -> bool:
        """Whether output ``index`` of the current node is read by anything."""
        outs = self.node.output
        return index < len(outs) and bool(outs[index]) and self.value_uses[outs[index]] > 0

    def sole_producer(self, tensor: str, types: tuple[str, ...]) -> Layer | None:
        """The layer writing ``tensor`` if it is of ``types`` and nothing else reads ``tensor``."""
        if self.uses[tensor] != 0 or tensor in self.model.outputs:
            return None
        layer = self.model.producer(tensor)
        if layer is None or layer.type not in types or self.model.tensors[tensor].qformat is not None:
            return None
        return layer

    def rename(self, tensor: str, output: str) -> str:
        """Rename an activation (no reader yet) after ONNX value ``output`` and bind it."""
        new = tensor
        if output != tensor and output not in self.model.tensors:
            t = self.model.tensors.pop(tensor)
            t.name = output
            self.model.tensors[output] = t
            for layer in self.model.layers:
                layer.outputs = [output if o == tensor else o for o in layer.outputs]
            new = output
        self.bind(output, Act(new))
        return new

    def replace_input(self, layer: Layer, index: int, tensor: str) -> None:
        """Make ``tensor`` input ``index`` of ``layer``; drop the old constant if nothing reads it now."""
        inputs = (layer.inputs + [None] * (index + 1))[: max(len(layer.inputs), index + 1)]
        old, inputs[index] = inputs[index], tensor
        layer.inputs = inputs
        if old is not None and not any(old in l.inputs for l in self.model.layers):
            del self.model.tensors[old]
            for v in self.values.values():
                if isinstance(v, Const) and v.tensor == old:
                    v.tensor = None

    def private_const(self, layer: Layer, index: int) -> Tensor | None:
        """Input ``index`` of ``layer`` if it is a float constant only that layer reads."""
        name = layer.inputs[index] if index < len(layer.inputs) else None
        if name is None:
            return None
        t = self.model.tensors[name]
        if not t.is_constant or t.qformat is not None:
            return None
        if any(name in l.inputs for l in self.model.layers if l is not layer):
            return None
        return t

    # -- QDQ --------------------------------------------------------------------
    def qdq_format(self, ins: list[Value | None], elem_type: int | None, a: dict, kind: str) -> QFormat | None:
        """The dfx format of a QuantizeLinear/DequantizeLinear, or None after recording why not."""
        where = f"{self.label} ({kind})"
        scale_v = self.const(ins, 1, "scale")
        zp_v = ins[2] if len(ins) > 2 else None
        if isinstance(zp_v, Act):
            raise DfxUnsupportedError("the zero point must be a constant")
        if zp_v is not None:
            elem_type = helper.np_dtype_to_tensor_dtype(zp_v.value.dtype)
        if elem_type is None:
            elem_type = onnx.TensorProto.UINT8
        problems = []
        type_name = onnx.TensorProto.DataType.Name(elem_type).lower()
        if elem_type in UNSIGNED_TYPES:
            problems.append(f"type {type_name} is unsigned (dfx integers are signed; re-quantize "
                            "symmetrically to int8)")
        elif elem_type not in SIGNED_INT_BITS:
            problems.append(f"type {type_name} is not int8, int16 or int32")
        if a.get("block_size", 0):
            problems.append("blocked quantization (block_size) is not supported")
        if zp_v is not None and np.any(np.asarray(zp_v.value, np.float64) != 0):
            nz = np.asarray(zp_v.value).reshape(-1)
            problems.append(f"zero point {nz[0] if nz.size == 1 else nz.tolist()[:8]} is not 0")
        scale = np.asarray(scale_v.value, np.float64).reshape(-1)
        fls = []
        for s in scale:
            m, e = math.frexp(float(s)) if math.isfinite(s) and s > 0 else (0.0, 0)
            if m != 0.5:
                shown = f"{float(np.float32(s))!r}"
                problems.append(f"scale {shown} is not a power of two" + (
                    f" (log2 = {math.log2(s):.4f})" if math.isfinite(s) and s > 0 else ""))
                break
            fl = 1 - e  # s = 0.5 * 2**e = 2**-(1-e)
            if not FL_MIN <= fl <= FL_MAX:
                problems.append(f"scale 2^{-fl} gives fl {fl}, outside {FL_MIN}..{FL_MAX}")
                break
            fls.append(fl)
        if problems:
            self.qdq_issues.append(f"{where}: " + "; ".join(problems))
            return None
        bw = SIGNED_INT_BITS[elem_type]
        if len(fls) == 1 and np.ndim(scale_v.value) <= 1 and np.size(scale_v.value) == 1:
            return QFormat(bw, fls[0], Rounding.HALF_TO_EVEN)
        axis = int(a.get("axis", 1))
        return QFormat(bw, 0, Rounding.HALF_TO_EVEN, channel_fl=tuple(fls), channel_axis=axis)

    def quantize_linear(self, node: onnx.NodeProto, a: dict, ins: list[Value | None]) -> None:
        x = self.act(ins[0])
        elem = a.get("output_dtype") or None
        fmt = self.qdq_format(ins, elem, a, "QuantizeLinear")
        if fmt is None:
            self.alias(node.output[0], x)  # keep going to report every problem at once
            return
        if fmt.per_channel:
            if len(set(fmt.channel_fl)) == 1:
                fmt = QFormat(fmt.bw, fmt.channel_fl[0], fmt.rounding)
            else:
                raise DfxUnsupportedError("per-axis scales on an activation are not supported (dfx "
                                          "allows per-channel fl only for constants)")
        t = self.model.tensors[x]
        if t.qformat == fmt:
            self.alias(node.output[0], x)
            return
        producer = self.model.producer(x)
        exact_coeffs = not isinstance(producer.op, ops.Eltwise) if producer is not None else True
        if not exact_coeffs:
            exact_coeffs = all(fixedpoint.dyadic(float(k)) is not None for k in producer.op.coefficients)
        if t.qformat is None and producer is not None and not producer.op.LAYOUT_ONLY and exact_coeffs \
                and self.uses[x] == 0 and x not in self.model.outputs:
            # Nothing else reads the float value: the producer rounds straight into the format.
            t.qformat, t.dtype = fmt, DataType.for_bw(fmt.bw)
            self.alias(node.output[0], x)
            return
        self.emit(ops.Requantize(), [x], node.output[0], fmt=fmt)

    def dequantize_linear(self, node: onnx.NodeProto, a: dict, ins: list[Value | None]) -> None:
        x = ins[0]
        if isinstance(x, Const):
            codes = np.asarray(x.value)
            elem = helper.np_dtype_to_tensor_dtype(codes.dtype)
            fmt = self.qdq_format(ins, elem, a, "DequantizeLinear")
            if fmt is None:  # keep going (float) to report every problem at once
                scale = np.asarray(ins[1].value, np.float64)
                zp = np.asarray(ins[2].value, np.float64) if len(ins) > 2 and ins[2] is not None else 0.0
                if scale.size > 1:
                    shape = [1] * codes.ndim
                    shape[int(a.get("axis", 1))] = -1
                    scale = scale.reshape(shape)
                    zp = np.reshape(zp, shape) if np.size(zp) > 1 else zp
                self.bind_const(node.output[0], (codes.astype(np.float64) - zp) * scale)
                return
            if fmt.per_channel:
                axis = fmt.channel_axis + codes.ndim if fmt.channel_axis < 0 else fmt.channel_axis
                fmt = QFormat(fmt.bw, 0, fmt.rounding, channel_fl=fmt.channel_fl, channel_axis=axis)
            real = codes.astype(np.float64) * np.ldexp(1.0, -fmt.fl_array(codes.ndim))
            self.bind(node.output[0], Const(real, codes=codes.astype(np.int64), qformat=fmt))
            return
        tensor = self.act(x)
        self.uses[tensor] -= 1
        fmt = self.qdq_format(ins, None, a, "DequantizeLinear")
        t = self.model.tensors[tensor]
        if fmt is not None and t.qformat is not None and fmt.fl != t.qformat.fl:
            raise DfxUnsupportedError(f"DequantizeLinear scale 2^{-fmt.fl} differs from the scale "
                                      f"2^{-t.qformat.fl} its input was quantized with")
        self.alias(node.output[0], tensor)
