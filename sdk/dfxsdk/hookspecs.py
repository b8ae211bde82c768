"""Hook specifications: the contract between dfxsdk and its plugins.

A plugin is a module (or any object) with functions marked ``@hookimpl``
whose names are the hooks below. It is found through the ``dfxsdk`` entry
point group of its distribution::

    [project.entry-points.dfxsdk]
    myformat = "myformat_dfx.plugin"

or registered from code with ``dfxsdk.plugins.get_manager().register(module)``.

Every plugin must implement :func:`dfxsdk_plugin_info`; the others are
optional. The provider hooks return lists of objects from
:mod:`dfxsdk.providers`. dfxsdk calls each hook once, when the plugin is
registered, checks the result (types, names) and keeps it; a plugin that
fails any of this is refused as a whole and reported by ``dfxsdk plugins``,
and every other plugin stays usable. Names are owned: those of dfxsdk's own
plugins are reserved to the ``dfxsdk`` distribution, and a provider name two
other plugins use is used by neither (:mod:`dfxsdk.plugins`).

Versioning: the plugin API is versioned as ``PLUGIN_API_VERSION = (major,
minor)``. A minor release only adds (hooks, optional attributes, helpers);
a major release may remove or change. A plugin declares the version it was
written for in :class:`~dfxsdk.providers.PluginInfo`; dfxsdk loads it when
the major is the same and its minor is not above dfxsdk's, and refuses it
with a message otherwise.

Stability: the names in this module, in :mod:`dfxsdk.providers` and the
public names listed in spec/plugins.md are stable for all of plugin API 1.x.
Names starting with ``_`` are private everywhere.
"""

from __future__ import annotations

import pluggy

from .providers import Backend, CustomOperator, Importer, PluginInfo, Quantizer

PROJECT = "dfxsdk"
#: The plugin API version this dfxsdk implements: (major, minor).
PLUGIN_API_VERSION: tuple[int, int] = (1, 0)

#: Marks a hook specification (for dfxsdk itself).
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a plugin's hook implementation: ``@hookimpl def dfxsdk_importers(): ...``.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def dfxsdk_plugin_info() -> PluginInfo:
    """Return the plugin's name, version and the plugin API version it targets.

    Required. Called first, at registration. A plugin whose ``api_version``
    is incompatible with :data:`PLUGIN_API_VERSION` (different major, or a
    higher minor) is refused: nothing it provides is used, and ``dfxsdk
    plugins`` shows it as failed with both versions in the message.
    """


@hookspec
def dfxsdk_importers() -> list[Importer]:
    """Return the importers this plugin provides (instances of Importer subclasses).

    ``dfxsdk convert FILE...`` offers the files to every importer's
    :meth:`~dfxsdk.providers.Importer.claims` (by extension, and by sniffing
    the content when the extension is ambiguous); exactly one must claim them
    unless the user names one with ``--importer NAME``. Each importer may
    add its own options (:meth:`~dfxsdk.providers.Importer.add_arguments`);
    :meth:`~dfxsdk.providers.Importer.import_model` turns the files into a
    :class:`~dfxsdk.graph.Model`. A name two plugins use is used by neither.
    """


@hookspec
def dfxsdk_quantizers() -> list[Quantizer]:
    """Return the quantizers this plugin provides (``dfxsdk quantize --quantizer NAME``).

    :meth:`~dfxsdk.providers.Quantizer.quantize` receives the float (or
    already quantized) model, the calibration data
    (:class:`~dfxsdk.providers.CalibrationData`) and its parsed options, and
    returns a new model with integer formats (validated by dfxsdk).
    """


@hookspec
def dfxsdk_backends() -> list[Backend]:
    """Return the backends this plugin provides (``--backend NAME``, ``Model.run(backend=NAME)``).

    A backend declares the operators it runs in
    :attr:`~dfxsdk.providers.Backend.supported_ops` and its execution modes
    in :attr:`~dfxsdk.providers.Backend.modes`;
    :meth:`~dfxsdk.providers.Backend.run` runs a whole graph and returns what
    the backend contract says (checked by dfxsdk; spec/plugins.md, "The
    backend contract").
    """


@hookspec
def dfxsdk_custom_operators() -> list[CustomOperator]:
    """Return the custom operators this plugin defines, with their reference kernels.

    A model's ``Custom`` layer whose ``name`` matches is run by a backend
    listing ``"Custom"`` in its ``supported_ops`` (the numpy backend does)
    through :meth:`~dfxsdk.providers.CustomOperator.reference`, in float
    form. Operator names are "package.Operator"; a name two plugins use is used by neither.
    """
