"""Constant folding: nodes whose inputs are all known at import time, run by onnx's reference evaluator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

from dfxsdk.errors import DfxImportError

from .values import Const, Value

if TYPE_CHECKING:
    from .convert import Converter


def fold(c: Converter, node: onnx.NodeProto, ins: list[Value | None]) -> None:
    """Bind the outputs of ``node``, whose inputs are all constant, to their values."""
    consts = [v for v in ins if v is not None]
    quant = [v for v in consts if isinstance(v, Const) and v.quantized]
    if quant and node.op_type in ("Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose") \
            and ins[0] is quant[0] and not quant[0].qformat.per_channel:
        # Layout on a dequantized integer constant: move the codes, keep the format.
        codes = evaluate(c.proto, node, [quant[0].codes] + [v.value if v is not None else None for v in ins[1:]])
        q = quant[0].qformat
        c.bind(node.output[0], Const(codes[0].astype(np.float64) * 2.0 ** -q.fl, codes=codes[0], qformat=q))
        return
    outs = evaluate(c.proto, node, [None if v is None else v.value for v in ins])
    for name, arr in zip(node.output, outs):
        if name:
            c.bind_const(name, arr)


def evaluate(proto: onnx.ModelProto, node: onnx.NodeProto, arrays: list[np.ndarray | None]) -> list[np.ndarray]:
    """Run one node on constant inputs with ONNX's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if a is not None else "" for i, a in enumerate(arrays)]
    outs = [f"out{i}" if o else "" for i, o in enumerate(node.output)]
    n = onnx.NodeProto()
    n.CopyFrom(node)
    del n.input[:]
    n.input.extend(names)
    del n.output[:]
    n.output.extend(outs)
    inputs = [helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype), None)
              for nm, a in zip(names, arrays) if a is not None]
    outputs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outs if o]
    graph = helper.make_graph([n], "fold", inputs, outputs)
    model = helper.make_model(graph, opset_imports=list(proto.opset_import))
    model.ir_version = proto.ir_version or model.ir_version
    try:
        result = ReferenceEvaluator(model).run(None, {nm: np.asarray(a) for nm, a in zip(names, arrays)
                                                      if a is not None})
    except Exception as exc:
        raise DfxImportError(f"cannot fold this node on its constant inputs: {type(exc).__name__}: {exc}") \
            from None
    it = iter(result)
    return [np.asarray(next(it)) if o else None for o in outs]  # type: ignore[misc]
