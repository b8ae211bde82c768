"""Shared helpers of the ONNX importer tests: the onnx package's backend test data.

The onnx wheel ships ``backend/test/data/{pytorch-converted,pytorch-operator,...}``
as files (``model.onnx`` plus ``test_data_set_*/input_*.pb`` and
``output_*.pb``). Recent wheels no longer ship the ``node`` directory; it is
generated from the same test-case definitions (``onnx.backend.test.case.node``,
what ``backend-test-tools generate-data`` writes) into the pytest cache, once,
for the operator modules the importer supports, in the same layout.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: ONNX operators the importer converts (besides constant folding), i.e. the
#: operators a test case may use to be tried.
SUPPORTED_ONNX_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Add", "Mul",
    "Sub", "Div", "Sum", "Max", "Mean", "Neg", "Concat", "Reshape", "Flatten", "Transpose", "Squeeze",
    "Unsqueeze", "Softmax", "Resize", "Upsample", "Pad", "Shape", "Gather", "Constant", "Identity",
    "Dropout", "Cast", "QuantizeLinear", "DequantizeLinear", "Slice", "Split", "Exp",
})
#: Node test modules (onnx.backend.test.case.node.<name>) for those operators.
NODE_MODULES = (
    "conv", "convtranspose", "gemm", "matmul", "relu", "leakyrelu", "prelu", "clip", "sigmoid", "tanh",
    "maxpool", "averagepool", "globalaveragepool", "globalmaxpool", "batch_normalization", "add", "mul",
    "sub", "div", "sum", "max", "mean", "neg", "concat", "reshape", "flatten", "transpose", "squeeze",
    "unsqueeze", "softmax", "resize", "upsample", "pad", "shape", "gather", "constant", "identity",
    "dropout", "slice", "split", "exp",
)
#: Operators whose inputs are all data (the others take weights, shapes, pads... after input 0).
DATA_INPUT_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Sum", "Max", "Mean", "Concat"})
TOLERANCE = 1e-4


def onnx_data_dir() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def generate_node_data(root: Path) -> Path:
    """Write the node test cases of :data:`NODE_MODULES` under ``root`` (once; reused later)."""
    import onnx
    from onnx import numpy_helper

    done = root / "COMPLETE"
    if done.exists():
        return root
    import onnx.backend.test.case.node as node_cases

    for name in NODE_MODULES:
        importlib.import_module(f"onnx.backend.test.case.node.{name}")
    for case in node_cases._NodeTestCases:
        out = root / case.name
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.onnx").write_bytes(case.model.SerializeToString())
        for i, (inputs, outputs) in enumerate(case.data_sets):
            ds = out / f"test_data_set_{i}"
            ds.mkdir(exist_ok=True)
            graph = case.model.graph
            for j, arr in enumerate(inputs):
                if not graph.input[j].type.HasField("tensor_type"):
                    continue
                t = arr if isinstance(arr, onnx.TensorProto) else numpy_helper.from_array(
                    np.asarray(arr), graph.input[j].name)
                (ds / f"input_{j}.pb").write_bytes(t.SerializeToString())
            for j, arr in enumerate(outputs):
                if not graph.output[j].type.HasField("tensor_type"):
                    continue
                t = arr if isinstance(arr, onnx.TensorProto) else numpy_helper.from_array(
                    np.asarray(arr), graph.output[j].name)
                (ds / f"output_{j}.pb").write_bytes(t.SerializeToString())
    done.write_text(onnx.__version__)
    return root


def case_dirs(node_root: Path) -> list[Path]:
    """Every case directory: the generated (or shipped) node cases, then the shipped PyTorch ones."""
    data = onnx_data_dir()
    roots = [data / "node" if (data / "node").is_dir() else node_root,
             data / "pytorch-converted", data / "pytorch-operator"]
    return [d for r in roots if r.is_dir() for d in sorted(r.iterdir()) if (d / "model.onnx").exists()]


def read_pb(path: Path) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(t)


@dataclass
class Outcome:
    """What happened to one case: 'pass', 'fail', 'skip' (with the reason) and the error."""

    status: str
    reason: str = ""
    error: float = 0.0


def run_case(case: Path) -> Outcome:
    """Import one case (frozen as described in test_onnx_node.py) and compare its float outputs."""
    import onnx
    from onnx import numpy_helper

    from dfxsdk.errors import DfxUnsupportedError

    from dfx_onnx.plugin import import_onnx

    model = onnx.load(str(case / "model.onnx"))
    ops_used = {n.op_type for n in model.graph.node}
    outside = sorted(ops_used - SUPPORTED_ONNX_OPS)
    if outside:
        return Outcome("skip", f"uses operators outside the importer's list: {', '.join(outside)}")
    sets = sorted(case.glob("test_data_set_*"))
    if not sets:
        return Outcome("skip", "no test data set")
    worst = 0.0
    for ds in sets:
        inputs = [read_pb(ds / f"input_{j}.pb") for j in range(len(list(ds.glob("input_*.pb"))))]
        expected = [read_pb(ds / f"output_{j}.pb") for j in range(len(list(ds.glob("output_*.pb"))))]
        graph_inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        if len(inputs) != len(graph_inputs):
            return Outcome("skip", "optional or non-tensor inputs")
        frozen = onnx.ModelProto()
        frozen.CopyFrom(model)
        feeds = {}
        first = model.graph.node[0].op_type if len(model.graph.node) == 1 else ""
        for j, (vi, arr) in enumerate(zip(graph_inputs, inputs)):
            keep = j == 0 or (first in DATA_INPUT_OPS and arr.shape == inputs[0].shape)
            if keep:
                if arr.dtype != np.float32:
                    return Outcome("skip", f"non-float32 input ({arr.dtype})")
                feeds[vi.name] = arr
            else:
                # Weights, shapes, pads... become initializers; the input stays listed in
                # graph.input too, as older exporters write them.
                frozen.graph.initializer.append(numpy_helper.from_array(arr, vi.name))
        if any(e.dtype not in (np.float32,) for e in expected):
            return Outcome("skip", "non-float32 outputs")
        try:
            dm = import_onnx(frozen)
        except DfxUnsupportedError as exc:
            return Outcome("skip", "refused: " + exc.message.splitlines()[0][:160])
        dm.validate()
        order = [n for n in dm.inputs]
        names = [vi.name for vi in graph_inputs if vi.name in feeds]
        run_inputs = {t: feeds[n] for t, n in zip(order, names)}
        got = dm.run(run_inputs, mode="float")
        for name, want in zip(dm.outputs, expected):
            have = np.asarray(got[name], np.float64)
            if have.shape != want.shape:
                return Outcome("fail", f"shape {have.shape} != expected {want.shape}")
            w = want.astype(np.float64)
            finite = np.isfinite(w)
            if not np.array_equal(finite, np.isfinite(have)):
                return Outcome("fail", "non-finite values differ")
            err = float(np.max(np.abs(have[finite] - w[finite]) / np.maximum(1.0, np.abs(w[finite])))) \
                if finite.any() else 0.0
            worst = max(worst, err)
            if not err <= TOLERANCE or math.isnan(err):
                return Outcome("fail", f"max error {err:.3g} > {TOLERANCE}", err)
    return Outcome("pass", error=worst)
