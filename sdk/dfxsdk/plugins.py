"""Plugin discovery and registry.

:func:`get_manager` returns the process-wide :class:`PluginManager`, which
loads every ``dfxsdk`` entry point on first use. A plugin that fails to
import, lacks ``dfxsdk_plugin_info``, targets an incompatible API, raises
from a hook or returns something other than the providers it promises is
recorded as failed (see :attr:`PluginManager.failures`, ``dfxsdk plugins``)
and the others stay usable.

Commands call providers through :func:`call_importer` and
:func:`call_quantizer`, which turn an unexpected exception inside a plugin
into a :class:`~dfxsdk.errors.DfxPluginError` naming the plugin (exit code 4)
instead of an internal error of dfxsdk.

Stability: :func:`get_manager`, :class:`PluginManager`'s public methods and
attributes, :func:`api_compatible`, :func:`call_importer`,
:func:`call_quantizer` and :func:`plugin_guard` are public API (plugin API 1.x).
"""

from __future__ import annotations

import importlib.metadata as md
import sysconfig
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import DfxError, DfxInputError, DfxPluginError, DfxUnsupportedError
from .graph import Model
from .providers import Backend, CalibrationData, CustomOperator, Importer, PluginInfo, Quantizer

ENTRY_POINT_GROUP = "dfxsdk"

_PROVIDER_HOOKS = (("importers", "dfxsdk_importers", Importer),
                   ("quantizers", "dfxsdk_quantizers", Quantizer),
                   ("backends", "dfxsdk_backends", Backend),
                   ("custom_operators", "dfxsdk_custom_operators", CustomOperator))
_HOOK_NAMES = frozenset(["dfxsdk_plugin_info"] + [h for _, h, _ in _PROVIDER_HOOKS])


@dataclass
class LoadedPlugin:
    """A registered plugin and what it provides."""

    info: PluginInfo
    #: "entry point 'NAME = module'" or "registered from code".
    source: str
    #: Distribution (pip package) that holds the plugin, if known.
    package: str | None = None
    package_version: str | None = None
    importers: list[Importer] = field(default_factory=list)
    quantizers: list[Quantizer] = field(default_factory=list)
    backends: list[Backend] = field(default_factory=list)
    custom_operators: list[CustomOperator] = field(default_factory=list)

    def providers(self) -> Iterator[Importer | Quantizer | Backend | CustomOperator]:
        """Everything the plugin provides."""
        yield from self.importers
        yield from self.quantizers
        yield from self.backends
        yield from self.custom_operators


@dataclass
class PluginFailure:
    """A plugin that could not be used, and why."""

    #: Entry point name (or the label given to :meth:`PluginManager.register`).
    name: str
    source: str
    #: One line: what went wrong and where.
    reason: str
    package: str | None = None
    package_version: str | None = None
    #: The full traceback, when an exception caused the failure (``--debug``).
    detail: str | None = None


def api_compatible(version: Sequence[int]) -> bool:
    """True if a plugin written for API ``version`` can run on this dfxsdk.

    Same major, and a minor not above :data:`~dfxsdk.hookspecs.PLUGIN_API_VERSION`'s.
    """
    major, minor = hookspecs.PLUGIN_API_VERSION
    try:
        v = tuple(version)
    except TypeError:
        return False
    if len(v) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return False
    return v[0] == major and 0 <= v[1] <= minor


def _version_text(version: object) -> str:
    if isinstance(version, (tuple, list)) and all(isinstance(x, int) for x in version):
        return ".".join(map(str, version))
    return repr(version)


_STDLIB = tuple(str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("stdlib", "platstdlib"))
_OURS = str(Path(__file__).resolve().parent)


def _where(exc: BaseException) -> str:
    """' (file.py:LINE)': where ``exc`` was raised, preferring the plugin's own code.

    The innermost frame outside the standard library, importlib, pluggy and
    dfxsdk itself; else the innermost frame; '' without a traceback.
    """
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    if not frames:
        return ""

    def foreign(filename: str) -> bool:
        path = str(Path(filename).resolve())
        return not (path.startswith(_STDLIB) or path.startswith(_OURS) or "pluggy" in path)

    last = next((f for f in reversed(frames) if foreign(f.filename)), frames[-1])
    return f" ({Path(last.filename).name}:{last.lineno})"


class PluginManager:
    """Registry of plugins and of the importers, quantizers, backends and operators they provide.

    ``load_entry_points=False`` gives an empty registry (tests, embedding);
    :meth:`load_entry_points` and :meth:`register` fill it.
    """

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.plugins: list[LoadedPlugin] = []
        self.failures: list[PluginFailure] = []
        self._owner: dict[int, LoadedPlugin] = {}
        #: Exceptions raised by Importer.claims() during the last importer_for().
        self.claim_errors: list[str] = []
        if load_entry_points:
            self.load_entry_points()

    # -- registration -----------------------------------------------------
    def load_entry_points(self, entry_points: Sequence[md.EntryPoint] | None = None) -> None:
        """Load the ``dfxsdk`` entry points (or the given ones), recording failures."""
        if entry_points is None:
            entry_points = md.entry_points(group=ENTRY_POINT_GROUP)
        seen: set[tuple[str, str]] = set()
        for ep in sorted(entry_points, key=lambda e: (e.name, e.value)):
            if (ep.name, ep.value) in seen:  # the same distribution found twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            package, package_version = _distribution(ep)
            source = f"entry point '{ep.name} = {ep.value}'"
            try:
                obj = ep.load()
            except (Exception, SystemExit) as exc:  # a broken plugin must not break the others
                self.failures.append(PluginFailure(
                    ep.name, source, f"import failed: {type(exc).__name__}: {exc}{_where(exc)}",
                    package, package_version, traceback.format_exc()))
                continue
            try:
                self.register(obj, source=source, name=ep.name, package=package,
                              package_version=package_version)
            except DfxPluginError as exc:
                detail = None
                if exc.__cause__ is not None:
                    detail = "".join(traceback.format_exception(exc.__cause__))
                self.failures.append(PluginFailure(ep.name, source, exc.message, package,
                                                   package_version, detail))

    def register(self, plugin: ModuleType | object, *, source: str = "registered from code",
                 name: str | None = None, package: str | None = None,
                 package_version: str | None = None) -> LoadedPlugin:
        """Register a plugin module or object; raise DfxPluginError if it is unusable.

        Nothing of a refused plugin stays registered.
        """
        label = name or getattr(plugin, "__name__", type(plugin).__name__)
        if not callable(getattr(plugin, "dfxsdk_plugin_info", None)):
            raise DfxPluginError(f"plugin '{label}' has no dfxsdk_plugin_info hook")
        unknown = sorted(n for n in dir(plugin) if n.startswith("dfxsdk_") and n not in _HOOK_NAMES
                         and callable(getattr(plugin, n, None)))
        if unknown:
            raise DfxPluginError(f"plugin '{label}' defines unknown hook(s) {', '.join(unknown)}; "
                                 f"the hooks are {', '.join(sorted(_HOOK_NAMES))}")
        if any(p is plugin for p in self._pm.get_plugins()):
            raise DfxPluginError(f"plugin '{label}' is already registered")
        if package is None and isinstance(plugin, ModuleType):
            package, package_version = _package_of_module(plugin)
        try:
            self._pm.register(plugin, name=f"{label}@{id(plugin)}")
        except Exception as exc:  # pluggy: bad hook signature, duplicate name
            raise DfxPluginError(f"plugin '{label}': {type(exc).__name__}: {exc}") from exc
        try:
            loaded = self._collect(plugin, label, source, package, package_version)
        except DfxPluginError:
            self._pm.unregister(plugin)
            raise
        self.plugins.append(loaded)
        for item in loaded.providers():
            self._owner[id(item)] = loaded
        return loaded

    def _collect(self, plugin: object, label: str, source: str, package: str | None,
                 package_version: str | None) -> LoadedPlugin:
        info = self._call(plugin, label, "dfxsdk_plugin_info")
        if not isinstance(info, PluginInfo):
            raise DfxPluginError(f"plugin '{label}': dfxsdk_plugin_info returned {info!r}, "
                                 "not a dfxsdk.providers.PluginInfo")
        if not info.name or not isinstance(info.name, str):
            raise DfxPluginError(f"plugin '{label}': PluginInfo.name must be a non-empty string")
        if not api_compatible(info.api_version):
            have = _version_text(hookspecs.PLUGIN_API_VERSION)
            want = _version_text(info.api_version)
            major, minor = hookspecs.PLUGIN_API_VERSION
            raise DfxPluginError(
                f"plugin '{info.name}' {info.version} was written for plugin API {want}, but this "
                f"dfxsdk implements plugin API {have} (it loads plugins for {major}.0 to {have}); "
                f"install a version of the plugin made for dfxsdk's API {major}.x")
        if any(p.info.name == info.name for p in self.plugins):
            raise DfxPluginError(f"plugin '{info.name}' ({source}) is already loaded from "
                                 f"{next(p.source for p in self.plugins if p.info.name == info.name)}")
        loaded = LoadedPlugin(info, source, package, package_version)
        for attr, hook, cls in _PROVIDER_HOOKS:
            if not hasattr(plugin, hook):
                continue
            items = self._call(plugin, label, hook)
            if items is None:
                continue
            if isinstance(items, (str, bytes, dict)) or not hasattr(items, "__iter__"):
                raise DfxPluginError(f"plugin '{info.name}': {hook} must return a list of "
                                     f"{cls.__name__}, got {type(items).__name__}")
            items = list(items)
            names: set[str] = set()
            for item in items:
                self._check_provider(item, cls, hook, info.name)
                if item.name in names:
                    raise DfxPluginError(f"plugin '{info.name}': {hook} returned two "
                                         f"{cls.__name__}s named '{item.name}'")
                names.add(item.name)
                self._check_unique(attr, item.name, info.name)
            getattr(loaded, attr).extend(items)
        return loaded

    @staticmethod
    def _check_provider(item: object, cls: type, hook: str, plugin: str) -> None:
        what = f"plugin '{plugin}': {hook}"
        if not isinstance(item, cls):
            raise DfxPluginError(f"{what} returned {item!r}, not an instance of "
                                 f"dfxsdk.providers.{cls.__name__}")
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name.strip():
            raise DfxPluginError(f"{what} returned a {type(item).__name__} without a name")

        def str_seq(attr: str, allow_empty: bool = True) -> None:
            value = getattr(item, attr)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value) \
                    or (not allow_empty and not value):
                raise DfxPluginError(f"{what}: {type(item).__name__} '{name}'.{attr} must be a "
                                     f"{'non-empty ' if not allow_empty else ''}collection of "
                                     f"strings, got {value!r}")

        try:
            if isinstance(item, Importer):
                str_seq("extensions")
            elif isinstance(item, Backend):
                str_seq("modes", allow_empty=False)
                str_seq("supported_ops")
            elif isinstance(item, CustomOperator):
                v = item.versions
                if not v or not all(isinstance(x, int) for x in v):
                    raise DfxPluginError(f"{what}: CustomOperator '{name}'.versions must be a "
                                         f"non-empty tuple of ints, got {v!r}")
        except TypeError:
            raise DfxPluginError(f"{what}: {type(item).__name__} '{name}' has a malformed "
                                 "attribute (see dfxsdk.providers)") from None

    def _check_unique(self, attr: str, name: str, plugin: str) -> None:
        for other in self.plugins:
            if any(item.name == name for item in getattr(other, attr)):
                raise DfxPluginError(f"plugin '{plugin}': {attr[:-1].replace('_', ' ')} '{name}' "
                                     f"is already provided by plugin '{other.info.name}'")

    @staticmethod
    def _call(plugin: object, label: str, hook: str) -> Any:
        try:
            return getattr(plugin, hook)()
        except Exception as exc:
            raise DfxPluginError(f"plugin '{label}': {hook} raised {type(exc).__name__}: "
                                 f"{exc}{_where(exc)}") from exc

    # -- lookup -----------------------------------------------------------
    def importers(self) -> list[Importer]:
        return [i for p in self.plugins for i in p.importers]

    def quantizers(self) -> list[Quantizer]:
        return [q for p in self.plugins for q in p.quantizers]

    def backends(self) -> list[Backend]:
        return [b for p in self.plugins for b in p.backends]

    def custom_operators(self) -> dict[str, CustomOperator]:
        """Every custom operator by name."""
        return {c.name: c for p in self.plugins for c in p.custom_operators}

    def owner(self, provider: object) -> LoadedPlugin | None:
        """The plugin that provided ``provider`` (None if it was not registered here)."""
        return self._owner.get(id(provider))

    def backend(self, name: str) -> Backend:
        """The backend called ``name``; DfxUnsupportedError listing the others if none."""
        return self._by_name(self.backends(), name, "backend")

    def quantizer(self, name: str) -> Quantizer:
        """The quantizer called ``name``; DfxUnsupportedError listing the others if none."""
        return self._by_name(self.quantizers(), name, "quantizer")

    def importer(self, name: str) -> Importer:
        """The importer called ``name``; DfxUnsupportedError listing the others if none."""
        return self._by_name(self.importers(), name, "importer")

    def _by_name(self, items: list, name: str, kind: str):
        for item in items:
            if item.name == name:
                return item
        known = ", ".join(sorted(i.name for i in items)) or "none installed"
        hint = self._failure_hint()
        raise DfxUnsupportedError(f"no {kind} named '{name}' (available: {known}){hint}")

    def _failure_hint(self) -> str:
        if not self.failures:
            return ""
        names = ", ".join(f.name for f in self.failures)
        return f"; plugins that failed to load: {names} (see 'dfxsdk plugins')"

    def importer_for(self, paths: Sequence[Path]) -> Importer:
        """The single importer that claims ``paths``.

        An importer whose ``claims()`` raises is taken as not claiming; the
        error is kept in :attr:`claim_errors` and shown if no importer claims.
        """
        paths = [Path(p) for p in paths]
        claiming = []
        self.claim_errors = []
        for imp in self.importers():
            try:
                if imp.claims(list(paths)):
                    claiming.append(imp)
            except Exception as exc:  # claims() must not raise; treat as "no"
                self.claim_errors.append(f"importer '{imp.name}' ({self._plugin_label(imp)}) raised "
                                         f"{type(exc).__name__} in claims(): {exc}{_where(exc)}")
        if len(claiming) == 1:
            return claiming[0]
        files = ", ".join(str(p) for p in paths)
        if not claiming:
            known = ", ".join(f"{i.name} ({' '.join(i.extensions) or 'by content'})"
                              for i in self.importers()) or "none installed"
            errors = "".join(f"; {e}" for e in self.claim_errors)
            raise DfxInputError(f"no importer recognises {files}; importers: {known}{errors}"
                                f"{self._failure_hint()}")
        names = ", ".join(f"{i.name} ({self._plugin_label(i)})" for i in claiming)
        raise DfxInputError(f"several importers claim {files}: {names}; choose one with --importer NAME")

    def _plugin_label(self, provider: object) -> str:
        owner = self.owner(provider)
        if owner is None:
            return "unregistered"
        pkg = f" from package {owner.package} {owner.package_version}" if owner.package else ""
        return f"plugin '{owner.info.name}' {owner.info.version}{pkg}"

    # -- calling providers ------------------------------------------------
    @contextmanager
    def guard(self, provider: object, action: str) -> Iterator[None]:
        """Run plugin code: DfxError passes through, any other exception becomes DfxPluginError.

        ``action`` says what was being done ("importing net.json"); the
        message names the provider, its plugin and package, and where the
        exception was raised. The original exception is the ``__cause__``.
        """
        try:
            yield
        except DfxError:
            raise
        except Exception as exc:
            kind = _kind(provider)
            name = getattr(provider, "name", "?")
            raise DfxPluginError(
                f"{kind} '{name}' of {self._plugin_label(provider)} failed while {action}: "
                f"{type(exc).__name__}: {exc}{_where(exc)} (a bug in the plugin; rerun with --debug "
                "for the traceback and report it to the plugin's authors)") from exc

    def call_importer(self, importer: Importer, paths: Sequence[Path],
                      options: dict[str, Any]) -> Model:
        """``importer.import_model(paths, options)``, guarded (see :meth:`guard`)."""
        paths = [Path(p) for p in paths]
        files = ", ".join(str(p) for p in paths)
        with self.guard(importer, f"importing {files}"):
            model = importer.import_model(paths, options)
        if not isinstance(model, Model):
            raise DfxPluginError(f"importer '{importer.name}' of {self._plugin_label(importer)} "
                                 f"returned {type(model).__name__}, not a dfxsdk.Model")
        return model

    def call_quantizer(self, quantizer: Quantizer, model: Model, data: CalibrationData,
                       options: dict[str, Any]) -> Model:
        """``quantizer.quantize(model, data, options)``, guarded (see :meth:`guard`)."""
        with self.guard(quantizer, f"quantizing '{model.name or model.source or 'model'}'"):
            result = quantizer.quantize(model, data, options)
        if not isinstance(result, Model):
            raise DfxPluginError(f"quantizer '{quantizer.name}' of {self._plugin_label(quantizer)} "
                                 f"returned {type(result).__name__}, not a dfxsdk.Model")
        return result

    def call_backend(self, backend: Backend, model: Model, inputs: dict, **options: Any) -> dict:
        """``backend.run(model, inputs, **options)``, guarded (see :meth:`guard`)."""
        with self.guard(backend, f"running '{model.name or model.source or 'model'}'"):
            return backend.run(model, inputs, **options)


def _kind(provider: object) -> str:
    for cls in (Importer, Quantizer, Backend, CustomOperator):
        if isinstance(provider, cls):
            return {"CustomOperator": "custom operator"}.get(cls.__name__, cls.__name__.lower())
    return "provider"


def _distribution(ep: md.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    try:
        return dist.metadata["Name"], dist.version
    except Exception:  # malformed metadata: still load the plugin
        return None, None


def _package_of_module(module: ModuleType) -> tuple[str | None, str | None]:
    """The distribution holding a module registered from code, if any."""
    top = module.__name__.split(".")[0]
    try:
        dists = md.packages_distributions().get(top) or []
        if dists:
            return dists[0], md.version(dists[0])
    except Exception:
        pass
    return None, None


_MANAGER: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide plugin manager (entry points loaded on first call)."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager()
    return _MANAGER


def call_importer(importer: Importer, paths: Sequence[Path], options: dict[str, Any]) -> Model:
    """Import through ``importer`` with the process-wide manager's guard.

    Errors the importer raises on purpose (DfxError) pass unchanged; any other
    exception becomes a DfxPluginError naming the plugin (exit code 4).
    """
    return get_manager().call_importer(importer, paths, options)


def call_quantizer(quantizer: Quantizer, model: Model, data: CalibrationData,
                   options: dict[str, Any]) -> Model:
    """Quantize through ``quantizer`` with the process-wide manager's guard."""
    return get_manager().call_quantizer(quantizer, model, data, options)


def plugin_guard(provider: object, action: str):
    """Context manager: run plugin code, turning unexpected exceptions into DfxPluginError."""
    return get_manager().guard(provider, action)
