"""The hooks dfxsdk calls (entry point ``npzgraph`` in the ``dfxsdk`` group)."""

from __future__ import annotations

from dfxsdk.hookspecs import hookimpl
from dfxsdk.providers import CustomOperator, Importer, PluginInfo

from . import __version__
from .clamp import Clamp
from .importer import NpzGraphImporter


@hookimpl
def dfxsdk_plugin_info() -> PluginInfo:
    return PluginInfo(name="npzgraph", version=__version__, api_version=(1, 0),
                      description="npzgraph models: a JSON graph description + NumPy .npz weights",
                      extra={"format": "npzgraph 1"})


@hookimpl
def dfxsdk_importers() -> list[Importer]:
    return [NpzGraphImporter()]


@hookimpl
def dfxsdk_custom_operators() -> list[CustomOperator]:
    return [Clamp()]
