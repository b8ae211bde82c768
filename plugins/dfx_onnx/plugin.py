"""The ONNX importer plugin (entry point ``onnx`` in group ``dfxsdk``).

This module must import without the ``onnx`` package: the conversion code
(:mod:`dfx_onnx.convert`) is imported only when a model is converted, and a
missing ``onnx`` becomes a :class:`~dfxsdk.errors.DfxUnsupportedError` telling
the user to install ``dfxsdk[onnx]``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dfxsdk.errors import DfxImportError, DfxInputError, DfxUnsupportedError
from dfxsdk.graph import Model
from dfxsdk.hookspecs import hookimpl
from dfxsdk.providers import Importer, PluginInfo

from . import __version__

INSTALL_HINT = "the ONNX importer needs the 'onnx' package: pip install 'dfxsdk[onnx]' (or pip install onnx)"
#: ModelProto fields an ONNX file starts with after ir_version (field 1, tag 0x08):
#: producer_name, producer_version, domain, model_version, doc_string, graph, opset_import.
_SECOND_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42})


def onnx_available() -> bool:
    """Whether the ``onnx`` package can be imported (False when hidden as ``sys.modules['onnx'] = None``)."""
    if "onnx" in sys.modules:
        return sys.modules["onnx"] is not None
    try:
        return importlib.util.find_spec("onnx") is not None
    except (ImportError, ValueError):
        return False


def require_onnx():
    """The ``onnx`` module, or DfxUnsupportedError with the install hint."""
    try:
        import onnx
    except ImportError:
        raise DfxUnsupportedError(INSTALL_HINT) from None
    return onnx


def looks_like_onnx(head: bytes) -> bool:
    """Sniff a serialized ModelProto: ir_version (small varint) first, then a ModelProto field."""
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 32 and head[2] in _SECOND_TAGS


class OnnxImporter(Importer):
    """Float ONNX CNNs and power-of-two QDQ models."""

    name = "onnx"
    description = "ONNX (opset 7+): float CNNs, QDQ with power-of-two scales (needs dfxsdk[onnx])"
    extensions = (".onnx",)

    def claims(self, paths: Sequence[Path]) -> bool:
        # Claimed with or without the onnx package, so that the user gets the
        # install hint from import_model instead of "no importer recognises".
        if len(paths) != 1:
            return False
        path = Path(paths[0])
        if path.name.lower().endswith(self.extensions):
            return True
        if path.suffix.lower() in (".caffemodel", ".prototxt", ".dfx", ".npz", ".json"):
            return False
        return looks_like_onnx(self.head(path, 16))

    def import_model(self, paths: Sequence[Path], options: dict[str, Any]) -> Model:
        if len(paths) != 1:
            raise DfxInputError(f"the ONNX importer takes one .onnx file, got {len(paths)}")
        return import_onnx(paths[0], input_shape=options.get("input_shape"))


def import_onnx(source: Path | str | Any, *, input_shape: Sequence[int] | None = None) -> Model:
    """Import an ONNX model from a file path or an in-memory ``onnx.ModelProto``.

    ``input_shape`` fixes the shape of the (single) graph input, for models
    with symbolic dimensions other than the batch.
    """
    onnx = require_onnx()
    from . import convert

    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise DfxImportError("no such file", file=str(path))
        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # protobuf DecodeError, external data problems, ...
            raise DfxImportError(f"not a readable ONNX model ({type(exc).__name__}: {exc})",
                                 file=str(path)) from None
        where = str(path)
    else:
        proto, where = source, None
    try:
        return convert.convert(proto, input_shape=input_shape, source=where)
    except (DfxImportError, DfxUnsupportedError, DfxInputError) as exc:
        raise exc.with_file(where) if where else exc


@hookimpl
def dfxsdk_plugin_info() -> PluginInfo:
    return PluginInfo(name="dfx-onnx", version=__version__, api_version=(1, 0),
                      description="ONNX importer (float and power-of-two QDQ models)",
                      extra={"requires": "onnx>=1.15 (pip install dfxsdk[onnx])",
                             "onnx_installed": str(onnx_available()).lower()})


@hookimpl
def dfxsdk_importers() -> list[Importer]:
    return [OnnxImporter()]
