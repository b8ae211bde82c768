"""Plugin hooks of the NumPy reference backend (entry point ``numpy``)."""

from __future__ import annotations

from dfxsdk.hookspecs import hookimpl
from dfxsdk.providers import Backend, PluginInfo

from . import __version__
from .backend import NumpyBackend


@hookimpl
def dfxsdk_plugin_info() -> PluginInfo:
    return PluginInfo(name="numpy", version=__version__, api_version=(1, 0),
                      description="NumPy reference backend (integer, float and simulate modes)")


@hookimpl
def dfxsdk_backends() -> list[Backend]:
    return [NumpyBackend()]
