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

from typing import Any, Callable

_factory: Callable[[], Any] | None = None


def install(factory: Callable[[], Any]) -> None:
    """Set the function that returns the process-wide registry (``dfxsdk/__init__`` does)."""
    global _factory
    _factory = factory


def registry() -> Any:
    """The process-wide :class:`dfxsdk.plugins.PluginManager` (loaded on first use)."""
    if _factory is None:  # only if someone removed the package's wiring
        raise RuntimeError("dfxsdk's plugin registry is not installed (import dfxsdk first)")
    return _factory()
