"""Plugin discovery and registry.

:func:`get_manager` returns the process-wide :class:`PluginManager`, which
loads every ``dfxsdk`` entry point on first use (and only then: commands that
need no plugin never import one). A plugin that fails to import, lacks
``dfxsdk_plugin_info``, targets an incompatible API, raises from a hook,
returns something other than the providers it promises, tries to exit the
process while loading or takes a name of dfxsdk's own plugins is recorded as
failed (see :attr:`PluginManager.failures`, ``dfxsdk plugins``) and the others
stay usable. Output a plugin prints while it loads goes to stderr.

Names are owned: the names of dfxsdk's own plugins (:data:`RESERVED_NAMES`)
can only come from the ``dfxsdk`` distribution; two other plugins providing
the same name are both refused for that name (:attr:`PluginManager.clashes`),
and using the name is a plugin error naming both distributions.

Plugins are switched off with ``DFXSDK_DISABLE_PLUGINS=name1,name2`` (``all``:
every plugin not shipped with dfxsdk), the CLI's ``-p no:NAME``, or
:func:`disable`.

Commands call providers through :meth:`PluginManager.call_importer`,
:meth:`~PluginManager.call_quantizer` and :meth:`~PluginManager.call_backend`,
which check the provider's contract (a valid model; a backend's supported
layers and its result) and turn an unexpected exception inside a plugin into
a :class:`~dfxsdk.errors.DfxPluginError` naming the plugin (exit code 4)
instead of an internal error of dfxsdk.

Stability: :func:`get_manager`, :func:`fresh_registry`, :func:`loaded_manager`,
:func:`disable`, :func:`get_backend`, :class:`PluginManager`'s public methods
and attributes, :func:`api_compatible`, :func:`call_importer`,
:func:`call_quantizer`, :func:`plugin_guard`, :data:`RESERVED_NAMES`,
:data:`FIRST_PARTY_DISTRIBUTION` and :data:`DISABLE_ENV` are public API
(plugin API 1.x).
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import os
import sys
import sysconfig
import traceback
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import DfxError, DfxFormatError, DfxInputError, DfxPluginError, DfxUnsupportedError
from .graph import Model
from .providers import (
    Backend,
    CalibrationData,
    Claim,
    CustomOperator,
    Importer,
    PluginInfo,
    Quantizer,
    check_inputs,
    result_problems,
)

ENTRY_POINT_GROUP = "dfxsdk"
#: The distribution that ships dfxsdk's own plugins.
FIRST_PARTY_DISTRIBUTION = "dfxsdk"
#: Names only :data:`FIRST_PARTY_DISTRIBUTION` may use, by kind ("entry point", "plugin",
#: and the provider kinds). A plugin of another distribution using one is refused as a whole.
RESERVED_NAMES: dict[str, frozenset[str]] = {
    "entry point": frozenset({"caffe", "numpy", "native", "onnx", "dfp"}),
    "plugin": frozenset({"numpy", "native", "dfx-caffe", "dfx-onnx", "dfx-quantizer"}),
    "importer": frozenset({"caffe", "onnx"}),
    "quantizer": frozenset({"dfp"}),
    "backend": frozenset({"numpy", "native"}),
    "custom operator": frozenset(),
}
#: Environment variable: comma-separated plugin names not to load (``all``: every third-party one).
DISABLE_ENV = "DFXSDK_DISABLE_PLUGINS"
#: The value of :data:`DISABLE_ENV` (or of ``-p no:``) that disables every third-party plugin.
DISABLE_ALL = "all"

_SWITCHED_OFF = f"switched off (-p no:NAME, {DISABLE_ENV} or dfxsdk.plugins.disable)"
_PROVIDER_HOOKS = (("importers", "dfxsdk_importers", Importer),
                   ("quantizers", "dfxsdk_quantizers", Quantizer),
                   ("backends", "dfxsdk_backends", Backend),
                   ("custom_operators", "dfxsdk_custom_operators", CustomOperator))
_HOOK_NAMES = frozenset(["dfxsdk_plugin_info"] + [h for _, h, _ in _PROVIDER_HOOKS])
_KIND = {"importers": "importer", "quantizers": "quantizer", "backends": "backend",
         "custom_operators": "custom operator"}


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
    #: Entry point name (None when registered from code).
    entry_point: str | None = None
    #: The registered object (module), for :meth:`PluginManager.disable`.
    obj: object = field(default=None, repr=False, compare=False)

    def providers(self) -> Iterator[Importer | Quantizer | Backend | CustomOperator]:
        """Everything the plugin provides (providers withdrawn by a name clash excluded)."""
        yield from self.importers
        yield from self.quantizers
        yield from self.backends
        yield from self.custom_operators

    @property
    def label(self) -> str:
        """"plugin 'NAME' VERSION from package DIST VERSION", for messages."""
        pkg = f" from package {self.package} {self.package_version}" if self.package else ""
        return f"plugin '{self.info.name}' {self.info.version}{pkg}"


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


@dataclass
class NameClash:
    """Providers of one kind and name offered by several plugins: none of them is used."""

    #: "importer", "quantizer", "backend" or "custom operator".
    kind: str
    name: str
    #: (plugin, provider) pairs, in registration order.
    offers: list[tuple[LoadedPlugin, object]] = field(default_factory=list)

    def message(self) -> str:
        who = " and ".join(p.label for p, _ in self.offers)
        return (f"{self.kind} '{self.name}' is provided by {who}: a name clash, so none of them is used; "
                f"uninstall one, or switch one off with -p no:NAME or {DISABLE_ENV}=NAME")


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


class _ExitRequest(BaseException):
    """Raised instead of exiting when plugin code calls ``os._exit`` under :func:`_refusing_exit`."""

    def __init__(self, code: object) -> None:
        super().__init__(code)
        self.code = code


@contextmanager
def _refusing_exit() -> Iterator[None]:
    """While plugin code runs, ``os._exit`` raises :class:`_ExitRequest` in this process."""
    real_exit, pid = os._exit, os.getpid()

    def refuse(code: int = 0) -> None:
        if os.getpid() != pid:  # a forked child of the plugin may exit
            real_exit(code)
        raise _ExitRequest(code)

    os._exit = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        os._exit = real_exit  # type: ignore[assignment]


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what is printed to stdout (Python's and file descriptor 1) to stderr."""
    for stream in (sys.stdout, sys.__stdout__):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = None
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for stream in (sys.stdout, sys.__stdout__):
            with contextlib.suppress(Exception):
                stream.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


@contextmanager
def _loading() -> Iterator[None]:
    """The conditions plugin code is loaded under: no exit, no stdout."""
    with _refusing_exit(), _stdout_to_stderr():
        yield


def _exit_reason(exc: BaseException) -> str | None:
    if isinstance(exc, _ExitRequest):
        return f"called os._exit({exc.code!r}){_where(exc)}; dfxsdk refused to exit"
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}){_where(exc)}; dfxsdk refused to exit"
    return None


def _disabled_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


class PluginManager:
    """Registry of plugins and of the importers, quantizers, backends and operators they provide.

    ``load_entry_points=False`` gives an empty registry (tests, embedding);
    :meth:`load_entry_points` and :meth:`register` fill it. ``disabled``
    names plugins not to load (entry point, distribution or plugin name;
    ``"all"``: every plugin not from :data:`FIRST_PARTY_DISTRIBUTION`), in
    addition to those in :data:`DISABLE_ENV`.
    """

    def __init__(self, *, load_entry_points: bool = True, disabled: Iterable[str] = ()) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.plugins: list[LoadedPlugin] = []
        self.failures: list[PluginFailure] = []
        #: Plugins switched off (never imported when disabled before loading); reason "switched off".
        self.disabled: list[PluginFailure] = []
        #: Provider names offered by several third-party plugins (none of them is used).
        self.clashes: list[NameClash] = []
        self._disabled_names: set[str] = set(disabled) | _disabled_from_env()
        self._owner: dict[int, LoadedPlugin] = {}
        #: Exceptions raised by Importer.claims() during the last importer_for().
        self.claim_errors: list[str] = []
        if load_entry_points:
            self.load_entry_points()

    # -- switching off ------------------------------------------------------
    def is_disabled(self, *names: str | None, package: str | None = None) -> bool:
        """Whether a plugin known by ``names`` (entry point, plugin name) from ``package`` is switched off."""
        off = self._disabled_names
        if DISABLE_ALL in off and package != FIRST_PARTY_DISTRIBUTION:
            return True
        return any(n is not None and n in off for n in (*names, package))

    def disable(self, names: Iterable[str]) -> None:
        """Switch off plugins by name from now on; loaded ones are unregistered."""
        self._disabled_names |= {n for n in names if n}
        for plugin in list(self.plugins):
            if self.is_disabled(plugin.entry_point, plugin.info.name, package=plugin.package):
                self._unregister(plugin)
                self.disabled.append(PluginFailure(plugin.entry_point or plugin.info.name, plugin.source,
                                                   _SWITCHED_OFF, plugin.package, plugin.package_version))

    def _unregister(self, plugin: LoadedPlugin) -> None:
        self.plugins.remove(plugin)
        with contextlib.suppress(Exception):
            self._pm.unregister(plugin.obj)
        for clash in list(self.clashes):
            clash.offers = [(p, item) for p, item in clash.offers if p is not plugin]
            if len(clash.offers) == 1:  # the last one left takes the name back
                owner, item = clash.offers[0]
                getattr(owner, _attr(clash.kind)).append(item)
                self.clashes.remove(clash)
            elif not clash.offers:
                self.clashes.remove(clash)

    # -- registration -----------------------------------------------------
    def load_entry_points(self, entry_points: Sequence[md.EntryPoint] | None = None) -> None:
        """Load the ``dfxsdk`` entry points (or the given ones), recording failures.

        Disabled plugins are not imported. Each plugin is imported and
        registered with stdout sent to stderr and ``os._exit``/``sys.exit``
        refused (see spec/plugins.md, "Isolation").
        """
        if entry_points is None:
            entry_points = md.entry_points(group=ENTRY_POINT_GROUP)
        seen: set[tuple[str, str]] = set()
        for ep in sorted(entry_points, key=lambda e: (e.name, e.value)):
            if (ep.name, ep.value) in seen:  # the same distribution found twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            package, package_version = _distribution(ep)
            source = f"entry point '{ep.name} = {ep.value}'"
            if self.is_disabled(ep.name, package=package):
                self.disabled.append(PluginFailure(ep.name, source, _SWITCHED_OFF, package, package_version))
                continue
            if ep.name in RESERVED_NAMES["entry point"] and package != FIRST_PARTY_DISTRIBUTION:
                self.failures.append(PluginFailure(
                    ep.name, source, f"the entry point name '{ep.name}' belongs to dfxsdk's own plugins; "
                    f"package {package or '(unknown)'} cannot use it, so the plugin was not loaded",
                    package, package_version))
                continue
            with _loading():
                try:
                    obj = ep.load()
                except (Exception, SystemExit, _ExitRequest) as exc:  # a broken plugin must not break the others
                    reason = _exit_reason(exc)
                    reason = (f"while being imported, {reason}" if reason
                              else f"import failed: {type(exc).__name__}: {exc}{_where(exc)}")
                    self.failures.append(PluginFailure(ep.name, source, reason, package, package_version,
                                                       traceback.format_exc()))
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
                    continue
            loaded = self.plugins[-1]
            if self.is_disabled(loaded.info.name, package=package):  # disabled by its plugin name
                self.disable(())

    def register(self, plugin: ModuleType | object, *, source: str = "registered from code",
                 name: str | None = None, package: str | None = None,
                 package_version: str | None = None) -> LoadedPlugin:
        """Register a plugin module or object; raise DfxPluginError if it is unusable.

        Nothing of a refused plugin stays registered. Its hooks run with
        stdout sent to stderr and exiting refused, as for entry points.
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
        try:
            hash(plugin)
        except TypeError:
            raise DfxPluginError(f"plugin '{label}' is a {type(plugin).__name__}, which is unhashable; register "
                                 "a module, or an object whose class keeps the default __hash__") from None
        if package is None and isinstance(plugin, ModuleType):
            package, package_version = _package_of_module(plugin)
        try:
            self._pm.register(plugin, name=f"{label}@{id(plugin)}")
        except Exception as exc:  # pluggy: bad hook signature, duplicate name
            raise DfxPluginError(f"plugin '{label}': {type(exc).__name__}: {exc}") from exc
        try:
            with _loading():
                loaded = self._collect(plugin, label, source, package, package_version)
        except DfxPluginError:
            self._pm.unregister(plugin)
            raise
        loaded.entry_point = name if source.startswith("entry point") else None
        loaded.obj = plugin
        self.plugins.append(loaded)
        for attr, _hook, _cls in _PROVIDER_HOOKS:
            items = getattr(loaded, attr)
            setattr(loaded, attr, [])
            for item in items:
                self._owner[id(item)] = loaded
                self._add(loaded, attr, item)
        return loaded

    def _add(self, loaded: LoadedPlugin, attr: str, item: Any) -> None:
        """Give ``item`` its name, unless another plugin has it: then neither keeps it."""
        kind = _KIND[attr]
        clash = next((c for c in self.clashes if c.kind == kind and c.name == item.name), None)
        if clash is not None:
            clash.offers.append((loaded, item))
            return
        for other in self.plugins:
            mine = getattr(other, attr)
            taken = next((i for i in mine if i.name == item.name), None)
            if taken is not None:
                mine.remove(taken)
                self.clashes.append(NameClash(kind, item.name, [(other, taken), (loaded, item)]))
                return
        getattr(loaded, attr).append(item)

    def _collect(self, plugin: object, label: str, source: str, package: str | None,
                 package_version: str | None) -> LoadedPlugin:
        info = self._call(plugin, label, "dfxsdk_plugin_info")
        if not isinstance(info, PluginInfo):
            raise DfxPluginError(f"plugin '{label}': dfxsdk_plugin_info returned {info!r}, "
                                 "not a dfxsdk.providers.PluginInfo")
        if not info.name or not isinstance(info.name, str):
            raise DfxPluginError(f"plugin '{label}': PluginInfo.name must be a non-empty string")
        _check_api_version(info)
        first_party = package == FIRST_PARTY_DISTRIBUTION
        who = f"package {package} {package_version}" if package else source
        if not first_party and info.name in RESERVED_NAMES["plugin"]:
            raise DfxPluginError(f"plugin '{info.name}' ({who}) takes the name of one of dfxsdk's own "
                                 "plugins; only the dfxsdk distribution may use it, so it is not loaded")
        same = next((p for p in self.plugins if p.info.name == info.name), None)
        if same is not None:
            other = f"package {same.package} {same.package_version}" if same.package else same.source
            raise DfxPluginError(f"plugin '{info.name}' ({who}) is already loaded from {other}; "
                                 "plugin names are unique, so the second one is not loaded")
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
                if not first_party and item.name in RESERVED_NAMES[_KIND[attr]]:
                    raise DfxPluginError(
                        f"plugin '{info.name}' ({who}) provides a {_KIND[attr]} named '{item.name}', a name of "
                        "dfxsdk's own plugins that only the dfxsdk distribution may use; the plugin is not "
                        "loaded (rename its provider)")
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

    @staticmethod
    def _call(plugin: object, label: str, hook: str) -> Any:
        try:
            return getattr(plugin, hook)()
        except (Exception, SystemExit, _ExitRequest) as exc:
            reason = _exit_reason(exc)
            if reason:
                raise DfxPluginError(f"plugin '{label}': {hook} {reason}") from exc  # "called os._exit(0) ..."
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
        """Every usable custom operator by name (names in a clash excluded)."""
        return {c.name: c for p in self.plugins for c in p.custom_operators}

    def owner(self, provider: object) -> LoadedPlugin | None:
        """The plugin that provided ``provider`` (None if it was not registered here)."""
        return self._owner.get(id(provider))

    def clash(self, kind: str, name: str) -> NameClash | None:
        """The name clash on ``name`` among providers of ``kind`` ("backend", ...), if any."""
        return next((c for c in self.clashes if c.kind == kind and c.name == name), None)

    def backend(self, name: str) -> Backend:
        """The backend called ``name``; DfxUnsupportedError listing the others if none,
        DfxPluginError naming both plugins if two provide it."""
        return self._by_name(self.backends(), name, "backend")

    def quantizer(self, name: str) -> Quantizer:
        """The quantizer called ``name`` (errors as :meth:`backend`)."""
        return self._by_name(self.quantizers(), name, "quantizer")

    def importer(self, name: str) -> Importer:
        """The importer called ``name`` (errors as :meth:`backend`)."""
        return self._by_name(self.importers(), name, "importer")

    def _by_name(self, items: list, name: str, kind: str):
        clash = self.clash(kind, name)
        if clash is not None:
            raise DfxPluginError(clash.message())
        for item in items:
            if item.name == name:
                return item
        known = ", ".join(sorted(i.name for i in items)) or "none installed"
        hint = self._failure_hint()
        raise DfxUnsupportedError(f"no {kind} named '{name}' (available: {known}){hint}")

    def _failure_hint(self) -> str:
        hint = ""
        if self.failures:
            names = ", ".join(f.name for f in self.failures)
            hint += f"; plugins that failed to load: {names} (see 'dfxsdk plugins')"
        if self.disabled:
            hint += f"; switched off: {', '.join(d.name for d in self.disabled)}"
        return hint

    def importer_for(self, paths: Sequence[Path]) -> Importer:
        """The single importer that claims ``paths``.

        An importer whose ``claims()`` raises is taken as not claiming; the
        error is kept in :attr:`claim_errors` and shown if no importer claims.
        A claimer whose name is in a clash is a DfxPluginError; a single
        claimer answering :class:`~dfxsdk.providers.Claim` with a problem, a
        DfxInputError saying the problem.
        """
        paths = [Path(p) for p in paths]
        files = ", ".join(str(p) for p in paths)
        claiming: list[tuple[Importer, object]] = []
        self.claim_errors = []
        clashed = [item for c in self.clashes if c.kind == "importer" for _, item in c.offers]
        for imp in self.importers() + clashed:
            try:
                with _refusing_exit():
                    answer = imp.claims(list(paths))
            except (Exception, SystemExit, _ExitRequest) as exc:  # claims() must not raise; treat as "no"
                what = _exit_reason(exc) or f"raised {type(exc).__name__} in claims(): {exc}{_where(exc)}"
                self.claim_errors.append(f"importer '{imp.name}' ({self._plugin_label(imp)}) {what}")
                continue
            if answer:
                if imp in clashed:
                    raise DfxPluginError(f"{files}: {self.clash('importer', imp.name).message()}")
                claiming.append((imp, answer))
        if len(claiming) == 1:
            imp, answer = claiming[0]
            if isinstance(answer, Claim) and answer.problem:
                raise DfxInputError(f"importer '{imp.name}' ({self._plugin_label(imp)}) recognises "
                                    f"{files}, but {answer.problem}", file=str(paths[0]) if paths else None)
            return imp
        if not claiming:
            known = ", ".join(f"{i.name} ({' '.join(i.extensions) or 'by content'})"
                              for i in self.importers()) or "none installed"
            errors = "".join(f"; {e}" for e in self.claim_errors)
            raise DfxInputError(f"no importer recognises {files}; importers: {known}{errors}"
                                f"{self._failure_hint()}")
        names = ", ".join(f"{i.name} ({self._plugin_label(i)})" for i, _ in claiming)
        raise DfxInputError(f"several importers claim {files}: {names}; choose one with --importer NAME")

    def _plugin_label(self, provider: object) -> str:
        owner = self.owner(provider)
        return "unregistered" if owner is None else owner.label

    # -- calling providers ------------------------------------------------
    @contextmanager
    def guard(self, provider: object, action: str) -> Iterator[None]:
        """Run plugin code: DfxError passes through, any other exception becomes DfxPluginError.

        ``action`` says what was being done ("importing net.json"); the
        message names the provider, its plugin and package, and where the
        exception was raised. The original exception is the ``__cause__``.
        ``os._exit`` and ``sys.exit`` inside are refused and reported the same way.
        """
        try:
            with _refusing_exit():
                yield
        except DfxError:
            raise
        except (Exception, SystemExit, _ExitRequest) as exc:
            what = _exit_reason(exc) or f"{type(exc).__name__}: {exc}{_where(exc)}"
            raise DfxPluginError(
                f"{self._provider_label(provider)} failed while {action}: {what} (a bug in the plugin; "
                "rerun with --debug for the traceback and report it to the plugin's authors)") from exc

    def _provider_label(self, provider: object) -> str:
        return f"{_kind(provider)} '{getattr(provider, 'name', '?')}' of {self._plugin_label(provider)}"

    def _check_model(self, provider: object, model: object, what: str) -> Model:
        if not isinstance(model, Model):
            raise DfxPluginError(f"{self._provider_label(provider)} returned {type(model).__name__}, "
                                 "not a dfxsdk.Model")
        try:
            model.validate()
        except DfxFormatError as exc:
            raise DfxPluginError(f"{self._provider_label(provider)} {what} an invalid model: {exc} "
                                 "(a bug in the plugin; report it to the plugin's authors)") from exc
        return model

    def call_importer(self, importer: Importer, paths: Sequence[Path],
                      options: dict[str, Any]) -> Model:
        """``importer.import_model(paths, options)``, guarded (see :meth:`guard`) and validated.

        A result that is not a valid :class:`~dfxsdk.graph.Model` is a DfxPluginError.
        """
        paths = [Path(p) for p in paths]
        files = ", ".join(str(p) for p in paths)
        with self.guard(importer, f"importing {files}"):
            model = importer.import_model(paths, options)
        return self._check_model(importer, model, f"imported {files} as")

    def call_quantizer(self, quantizer: Quantizer, model: Model, data: CalibrationData,
                       options: dict[str, Any]) -> Model:
        """``quantizer.quantize(model, data, options)``, guarded (see :meth:`guard`) and validated."""
        with self.guard(quantizer, f"quantizing '{model.name or model.source or 'model'}'"):
            result = quantizer.quantize(model, data, options)
        return self._check_model(quantizer, result, "returned")

    def call_backend(self, backend: Backend, model: Model, inputs: dict, *, mode: str | None = None,
                     outputs: Sequence[str] | None = None, **options: Any) -> dict:
        """``backend.run(model, inputs, mode=..., outputs=...)`` under the backend contract.

        First the layers: a custom operator whose name is in a clash is a
        DfxPluginError; layers ``backend.unsupported(model)`` lists are a
        DfxUnsupportedError naming them (exit code 3), as is a mode the
        backend lacks. Then the inputs (:func:`~dfxsdk.providers.check_inputs`)
        and the run, guarded (see :meth:`guard`). The result must keep the
        contract (:func:`~dfxsdk.providers.result_problems`), else DfxPluginError.
        """
        for layer in model.layers:
            clash = self.clash("custom operator", getattr(layer.op, "name", "")) if layer.type == "Custom" else None
            if clash is not None:
                raise DfxPluginError(f"layer '{layer.name}': {clash.message()}")
        label = self._provider_label(backend)
        with self.guard(backend, "checking which layers it supports"):
            bad = backend.unsupported(model)
        if not isinstance(bad, (list, tuple)) or not all(isinstance(b, str) for b in bad):
            raise DfxPluginError(f"{label}: unsupported() returned {bad!r:.80}, not a list of strings")
        if bad:
            shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            raise DfxUnsupportedError(f"{label} cannot run layer(s) {shown}", file=model.source)
        run_mode = mode if mode is not None else backend.modes[0]
        if run_mode not in backend.modes:
            raise DfxUnsupportedError(f"{label} has no mode '{run_mode}' (modes: {', '.join(backend.modes)})")
        wanted = list(outputs) if outputs is not None else list(model.outputs)
        unknown = [n for n in wanted if n not in model.tensors]
        if unknown:
            raise DfxInputError(f"no tensor named {', '.join(map(repr, unknown))} in the model", file=model.source)
        batch = check_inputs(model, inputs)
        with self.guard(backend, f"running '{model.name or model.source or 'model'}'"):
            result = backend.run(model, inputs, mode=mode, outputs=outputs, **options)
        problems = result_problems(model, result, wanted, run_mode, batch)
        if problems:
            raise DfxPluginError(f"{label} broke the backend contract running "
                                 f"'{model.name or model.source or 'model'}' in {run_mode} mode: "
                                 f"{'; '.join(problems[:5])} (see spec/plugins.md, 'Backend')")
        return dict(result)

    def run_model(self, model: Model, inputs: dict, *, backend: str = "numpy", **options: Any) -> dict:
        """Run ``model`` on the backend called ``backend`` (see :meth:`call_backend`)."""
        return self.call_backend(self.backend(backend), model, inputs, **options)


def _attr(kind: str) -> str:
    return next(a for a, k in _KIND.items() if k == kind)


def _check_api_version(info: PluginInfo) -> None:
    have = _version_text(hookspecs.PLUGIN_API_VERSION)
    v = info.api_version
    if not (isinstance(v, (tuple, list)) and len(v) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in v)):
        raise DfxPluginError(f"plugin '{info.name}' {info.version} gives api_version {v!r}, which is not a "
                             f"(major, minor) pair of ints; write api_version=({have.replace('.', ', ')}) "
                             f"for this dfxsdk's plugin API {have}")
    if not api_compatible(v):
        major, minor = hookspecs.PLUGIN_API_VERSION
        loads = f"{major}.0 to {have}" if minor else have
        raise DfxPluginError(
            f"plugin '{info.name}' {info.version} was written for plugin API {_version_text(v)}, but this "
            f"dfxsdk implements plugin API {have} (it loads plugins written for {loads}); "
            f"install a version of the plugin made for dfxsdk's API {major}.x")


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


# -- the process-wide registry ---------------------------------------------------------

_MANAGER: PluginManager | None = None
_DISABLED: set[str] = set()


def get_manager() -> PluginManager:
    """The process-wide plugin manager (entry points loaded on first call)."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager(disabled=_DISABLED)
    return _MANAGER


def loaded_manager() -> PluginManager | None:
    """The process-wide plugin manager if something has loaded it, else None (loads nothing)."""
    return _MANAGER


def disable(names: Iterable[str]) -> None:
    """Switch plugins off by name for this process (what ``-p no:NAME`` does).

    Before the registry loads, the plugins are never imported; afterwards
    they are unregistered. ``"all"`` means every third-party plugin.
    """
    names = set(names)
    _DISABLED.update(names)
    if _MANAGER is not None:
        _MANAGER.disable(names)


@contextmanager
def fresh_registry(manager: PluginManager | None = None) -> Iterator[None]:
    """Within the block, the process-wide registry is ``manager``, or a new one.

    Without ``manager`` the new registry loads the entry points when first
    used (so distributions installed inside the block are found). Names
    switched off with :func:`disable` inside the block are forgotten after it.
    Afterwards the previous registry is back. For tests and embedding::

        with fresh_registry(PluginManager(load_entry_points=False)):
            get_manager().register(my_plugin)
            ...
    """
    global _MANAGER, _DISABLED
    saved = (_MANAGER, _DISABLED)
    _MANAGER, _DISABLED = manager, set()
    try:
        yield
    finally:
        _MANAGER, _DISABLED = saved


def get_backend(name: str) -> Backend:
    """The backend called ``name`` in the process-wide registry (errors as :meth:`PluginManager.backend`)."""
    return get_manager().backend(name)


def call_importer(importer: Importer, paths: Sequence[Path], options: dict[str, Any]) -> Model:
    """Import through ``importer`` with the process-wide manager's guard.

    Errors the importer raises on purpose (DfxError) pass unchanged; any other
    exception, and a result that is not a valid model, becomes a
    DfxPluginError naming the plugin (exit code 4).
    """
    return get_manager().call_importer(importer, paths, options)


def call_quantizer(quantizer: Quantizer, model: Model, data: CalibrationData,
                   options: dict[str, Any]) -> Model:
    """Quantize through ``quantizer`` with the process-wide manager's guard."""
    return get_manager().call_quantizer(quantizer, model, data, options)


def plugin_guard(provider: object, action: str):
    """Context manager: run plugin code, turning unexpected exceptions into DfxPluginError."""
    return get_manager().guard(provider, action)
