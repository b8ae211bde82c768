"""The core's late-bound access to the process-wide plugin registry.

:meth:`dfxsdk.graph.Model.run`, :meth:`dfxsdk.graph.Model.append` (custom
operators) and :meth:`dfxsdk.providers.Backend.unsupported` need the registry,
which lives above them: :mod:`dfxsdk.plugins` imports ``graph`` and
``providers``. So that no module of the core imports the registry module (no
import cycle), the package's ``__init__`` installs a factory here that imports
:mod:`dfxsdk.plugins` on first use. Importing any ``dfxsdk`` submodule runs the
package's ``__init__`` first, so the factory is always installed.
"""

from __future__ import annotations

from collections.abc import Callable

_factory: Callable[[], object] | None = None


def install(factory: Callable[[], object]) -> None:
    """Set the function that returns the process-wide registry (``dfxsdk/__init__`` does)."""
    global _factory
    _factory = factory


def registry():  # -> dfxsdk.plugins.PluginManager (not imported here: it sits above the core)
    """The process-wide :class:`dfxsdk.plugins.PluginManager` (loaded on first use)."""
    if _factory is None:  # only if someone removed the package's wiring
        raise RuntimeError("dfxsdk's plugin registry is not installed (import dfxsdk first)")
    return _factory()
