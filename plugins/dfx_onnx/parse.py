"""Reading an ONNX graph: opset upgrades, node attributes and labels."""

from __future__ import annotations

from typing import Any

import onnx
from onnx import helper

from dfxsdk.errors import DfxUnsupportedError

#: Files of an older opset are upgraded to this one first.
MIN_OPSET = 7


def upgrade(proto: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``proto`` converted to opset :data:`MIN_OPSET` with onnx's version converter."""
    from onnx import version_converter

    try:
        return version_converter.convert_version(proto, MIN_OPSET)
    except Exception as exc:
        raise DfxUnsupportedError(f"opset {opset} is older than {MIN_OPSET}, and onnx's version converter "
                                  f"could not upgrade it ({type(exc).__name__}: {str(exc)[:200]})") from None


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes as Python values (strings decoded)."""
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def node_label(node: onnx.NodeProto, index: int) -> str:
    """The node's name, or a stable stand-in built from its type and first output."""
    if node.name:
        return node.name
    out = next((o for o in node.output if o), str(index))
    return f"{node.op_type}_{out}"
