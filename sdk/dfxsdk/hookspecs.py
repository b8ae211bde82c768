"""Hook specifications: the contract between dfxsdk and its plugins.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose
names are the hooks below. It is found through the ``dfxsdk`` entry point
group::

    [project.entry-points.dfxsdk]
    myformat = "myformat_dfx.plugin"

or registered from code with ``dfxsdk.plugins.get_manager().register(module)``.

Every plugin must implement :func:`dfxsdk_plugin_info`; the others are
optional. Provider hooks return lists of objects from :mod:`dfxsdk.providers`;
dfxsdk calls them once, when the plugin is registered, and keeps the result.

The plugin API is versioned as ``PLUGIN_API_VERSION = (major, minor)``. A
plugin written for the same major and a minor not above dfxsdk's is loaded;
any other is refused with a message (it may rely on something dfxsdk lacks,
or on something a later major removed).
"""

from __future__ import annotations

import pluggy

from .providers import Backend, CustomOperator, Importer, PluginInfo, Quantizer

PROJECT = "dfxsdk"
#: The plugin API version this dfxsdk implements.
PLUGIN_API_VERSION = (1, 0)

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def dfxsdk_plugin_info() -> PluginInfo:
    """Return the plugin's name, version and the plugin API version it targets.

    Required. Called once at registration; a plugin whose ``api_version`` is
    incompatible with :data:`PLUGIN_API_VERSION` is unregistered and reported
    by ``dfxsdk plugins``.
    """


@hookspec
def dfxsdk_importers() -> list[Importer]:
    """Return the importers this plugin provides.

    ``dfxsdk convert`` offers the given files to every importer's
    :meth:`~dfxsdk.providers.Importer.claims`; exactly one must claim them
    (or the user names one with ``--importer``). Names must be unique across
    plugins.
    """


@hookspec
def dfxsdk_quantizers() -> list[Quantizer]:
    """Return the quantizers this plugin provides (``dfxsdk quantize --quantizer NAME``)."""


@hookspec
def dfxsdk_backends() -> list[Backend]:
    """Return the backends this plugin provides (``--backend NAME``)."""


@hookspec
def dfxsdk_custom_operators() -> list[CustomOperator]:
    """Return the custom operators this plugin defines, with reference kernels.

    A model's ``Custom`` layer whose name matches runs through the operator's
    :meth:`~dfxsdk.providers.CustomOperator.reference` on the numpy backend.
    """
