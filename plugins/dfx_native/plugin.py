"""Plugin hooks of the native backend (entry point ``native``)."""

from __future__ import annotations

from dfxsdk.hookspecs import hookimpl
from dfxsdk.providers import Backend, PluginInfo

from . import __version__
from .backend import NativeBackend


@hookimpl
def dfxsdk_plugin_info() -> PluginInfo:
    return PluginInfo(name="native", version=__version__, api_version=(1, 0),
                      description="Native backend: the C library of kernels/ through ctypes")


@hookimpl
def dfxsdk_backends() -> list[Backend]:
    return [NativeBackend()]
