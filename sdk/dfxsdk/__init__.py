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

from . import _registry
from ._version import __version__

# The public names, imported on first access (PEP 562): `dfxsdk --version` and the CLI's
# start-up need neither numpy nor the FlatBuffers code these modules pull in.
_LAZY = {
    "DfxError": "errors", "DfxFormatError": "errors", "DfxImportError": "errors", "DfxInputError": "errors",
    "DfxPluginError": "errors", "DfxUnsupportedError": "errors",
    "DataType": "formats", "QFormat": "formats", "Rounding": "formats",
    "Layer": "graph", "Model": "graph", "Preprocessing": "graph", "Tensor": "graph",
    "load": "io", "save": "io",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    import importlib

    module = _LAZY.get(name)
    if module is None:  # a submodule used as an attribute (dfxsdk.ops), as when __init__ imported it
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'dfxsdk' has no attribute '{name}'") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _manager():
    from .plugins import get_manager

    return get_manager()


# The core reaches the registry through this factory, never by importing dfxsdk.plugins
# (which sits above it): see dfxsdk._registry.
_registry.install(_manager)
