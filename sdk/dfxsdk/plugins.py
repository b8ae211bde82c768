"""Plugin discovery and registry.

:func:`get_manager` returns the process-wide :class:`PluginManager`, which loads
every ``dfxsdk`` entry point on first use. A plugin that fails to import, lacks
``dfxsdk_plugin_info``, targets an incompatible API or raises from a provider
hook is recorded as failed (see :attr:`PluginManager.failures`) and the others
stay usable.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import DfxInputError, DfxPluginError, DfxUnsupportedError
from .providers import Backend, CustomOperator, Importer, PluginInfo, Quantizer

ENTRY_POINT_GROUP = "dfxsdk"


@dataclass
class LoadedPlugin:
    """A registered plugin and what it provides."""

    info: PluginInfo
    source: str  # "entry point NAME (distribution VERSION)" or "registered from code"
    importers: list[Importer] = field(default_factory=list)
    quantizers: list[Quantizer] = field(default_factory=list)
    backends: list[Backend] = field(default_factory=list)
    custom_operators: list[CustomOperator] = field(default_factory=list)


@dataclass
class PluginFailure:
    """A plugin that could not be used, and why."""

    name: str
    source: str
    reason: str


def api_compatible(version: Sequence[int]) -> bool:
    """True if a plugin written for API ``version`` can run on this dfxsdk."""
    major, minor = hookspecs.PLUGIN_API_VERSION
    return len(version) == 2 and version[0] == major and version[1] <= minor


class PluginManager:
    """Registry of plugins and of the importers, quantizers and backends they provide."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.plugins: list[LoadedPlugin] = []
        self.failures: list[PluginFailure] = []
        if load_entry_points:
            self._load_entry_points()

    # -- registration -----------------------------------------------------
    def _load_entry_points(self) -> None:
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            source = f"entry point '{ep.name}'"
            if dist is not None:
                source += f" ({dist.metadata['Name']} {dist.version})"
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the others
                self.failures.append(PluginFailure(ep.name, source, f"import failed: {type(exc).__name__}: {exc}"))
                continue
            try:
                self.register(obj, source=source, name=ep.name)
            except DfxPluginError as exc:
                self.failures.append(PluginFailure(ep.name, source, exc.message))

    def register(self, plugin: ModuleType | object, *, source: str = "registered from code",
                 name: str | None = None) -> LoadedPlugin:
        """Register a plugin object or module; raise DfxPluginError if unusable."""
        label = name or getattr(plugin, "__name__", type(plugin).__name__)
        if not hasattr(plugin, "dfxsdk_plugin_info"):
            raise DfxPluginError(f"plugin '{label}' has no dfxsdk_plugin_info hook")
        try:
            self._pm.register(plugin, name=f"{label}@{id(plugin)}")
        except ValueError as exc:
            raise DfxPluginError(f"plugin '{label}': {exc}") from exc
        try:
            loaded = self._collect(plugin, label, source)
        except DfxPluginError:
            self._pm.unregister(plugin)
            raise
        self.plugins.append(loaded)
        return loaded

    def _collect(self, plugin: object, label: str, source: str) -> LoadedPlugin:
        info = self._call(plugin, label, "dfxsdk_plugin_info")
        if not isinstance(info, PluginInfo):
            raise DfxPluginError(f"plugin '{label}': dfxsdk_plugin_info must return a PluginInfo")
        if not api_compatible(tuple(info.api_version)):
            have = ".".join(map(str, hookspecs.PLUGIN_API_VERSION))
            want = ".".join(map(str, info.api_version))
            raise DfxPluginError(
                f"plugin '{info.name}' {info.version} targets plugin API {want}, "
                f"this dfxsdk implements {have} (same major, minor <= {have.split('.')[1]} required)")
        loaded = LoadedPlugin(info, source)
        for attr, hook, cls in (("importers", "dfxsdk_importers", Importer),
                                ("quantizers", "dfxsdk_quantizers", Quantizer),
                                ("backends", "dfxsdk_backends", Backend),
                                ("custom_operators", "dfxsdk_custom_operators", CustomOperator)):
            if not hasattr(plugin, hook):
                continue
            items = self._call(plugin, label, hook) or []
            for item in items:
                if not isinstance(item, cls) or not item.name:
                    raise DfxPluginError(f"plugin '{info.name}': {hook} returned {item!r}, "
                                         f"not a named {cls.__name__}")
                self._check_unique(attr, item.name, info.name)
            getattr(loaded, attr).extend(items)
        return loaded

    def _check_unique(self, attr: str, name: str, plugin: str) -> None:
        for other in self.plugins:
            if any(item.name == name for item in getattr(other, attr)):
                raise DfxPluginError(f"plugin '{plugin}': {attr[:-1]} '{name}' is already "
                                     f"provided by plugin '{other.info.name}'")

    @staticmethod
    def _call(plugin: object, label: str, hook: str) -> Any:
        try:
            return getattr(plugin, hook)()
        except Exception as exc:
            raise DfxPluginError(f"plugin '{label}': {hook} raised {type(exc).__name__}: {exc}") from exc

    # -- lookup -----------------------------------------------------------
    def importers(self) -> list[Importer]:
        return [i for p in self.plugins for i in p.importers]

    def quantizers(self) -> list[Quantizer]:
        return [q for p in self.plugins for q in p.quantizers]

    def backends(self) -> list[Backend]:
        return [b for p in self.plugins for b in p.backends]

    def custom_operators(self) -> dict[str, CustomOperator]:
        return {c.name: c for p in self.plugins for c in p.custom_operators}

    def backend(self, name: str) -> Backend:
        """The backend called ``name``; DfxUnsupportedError listing the others if none."""
        return self._by_name(self.backends(), name, "backend")

    def quantizer(self, name: str) -> Quantizer:
        return self._by_name(self.quantizers(), name, "quantizer")

    def importer(self, name: str) -> Importer:
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
        """The single importer that claims ``paths``."""
        claiming = []
        for imp in self.importers():
            try:
                if imp.claims(list(paths)):
                    claiming.append(imp)
            except Exception:  # claims() must not raise; treat as "no"
                continue
        if len(claiming) == 1:
            return claiming[0]
        files = ", ".join(str(p) for p in paths)
        if not claiming:
            known = ", ".join(f"{i.name} ({' '.join(i.extensions)})" for i in self.importers()) or "none"
            raise DfxInputError(f"no importer recognises {files}; importers: {known}"
                                f"{self._failure_hint()}")
        names = ", ".join(i.name for i in claiming)
        raise DfxInputError(f"several importers claim {files} ({names}); choose one with --importer")


_MANAGER: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide plugin manager (entry points loaded on first call)."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager()
    return _MANAGER
