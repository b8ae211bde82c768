"""dfxsdk: a compact model format and SDK for dynamic fixed point neural networks.

The public API:

- :func:`load` / :func:`save`: read (mmap, zero copy, validated) and write
  (atomic, deterministic) .dfx files;
- :class:`Model`, :class:`Tensor`, :class:`Layer`, :class:`Preprocessing`: the
  in-memory graph (:mod:`dfxsdk.graph`), operators in :mod:`dfxsdk.ops`;
- :class:`QFormat`, :class:`DataType`, :class:`Rounding` (:mod:`dfxsdk.formats`)
  and the exact integer primitives in :mod:`dfxsdk.fixedpoint`;
- the errors in :mod:`dfxsdk.errors`;
- plugin hooks in :mod:`dfxsdk.hookspecs`, provider classes in
  :mod:`dfxsdk.providers`, the registry in :mod:`dfxsdk.plugins`.

Stability: these names, the modules ``graph``, ``ops``, ``formats``,
``fixedpoint``, ``packing``, ``errors``, ``hookspecs``, ``providers`` and the
public names of ``plugins`` (``get_manager`` and what spec/plugins.md lists)
are the public API, stable for all of plugin API 1.x (only additions). Every
name starting with ``_`` and every other module (``container``,
``serialize``, ``validate``, ``cli``, ...) is private and may change in any
release. See spec/plugins.md, "Public API, versioning and stability".
"""

from .errors import (DfxError, DfxFormatError, DfxImportError, DfxInputError,
                     DfxPluginError, DfxUnsupportedError)
from .formats import DataType, QFormat, Rounding
from .graph import Layer, Model, Preprocessing, Tensor
from .io import load, save

from ._version import __version__

__all__ = [
    "DataType", "DfxError", "DfxFormatError", "DfxImportError", "DfxInputError",
    "DfxPluginError", "DfxUnsupportedError", "Layer", "Model", "Preprocessing",
    "QFormat", "Rounding", "Tensor", "load", "save", "__version__",
]
