"""Building a plugin manager: what loads, in which order, and what happens when a plugin breaks.

Loading order (documented in docs/plugins.md):

1. the kernel's built-in plugins (``kme.builtin.*``: hook dispatch, guards, layouts, protocols);
2. entry points of the ``kme`` group, unless ``KME_DISABLE_PLUGIN_AUTOLOAD`` is set; when
   ``KME_LOAD_PLUGINS`` is set (comma-separated entry-point names) only those load;
3. plugins passed explicitly (``build_plugin_manager(plugins=[...])``);
4. validation: a ``@hookimpl`` whose name matches no spec, or a ``kme_*`` hook function
   missing the ``@kme.hookimpl`` marker, is an error; for an entry-point plugin the plugin is
   unloaded and reported, for an explicit one it is raised;
5. registration hooks fill the registries.

A plugin that fails to import or to register is reported (``pm.failures``, ``kme plugins``)
and the others keep working. No plugin manager exists at import time: the CLI and the Python
API build one explicitly.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from kme import hookspecs
from kme.components import Dataset, Editor, Locator, Metric
from kme.errors import KmeError
from kme.registry import Register, Registry

__all__ = ["KmePluginManager", "PluginFailure", "build_plugin_manager", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "kme"
#: The kernel's distribution name (import package and CLI: ``kme``; PyPI's ``kme`` is unrelated).
KERNEL_DISTRIBUTION = "kme-core"
ENV_DISABLE = "KME_DISABLE_PLUGIN_AUTOLOAD"
ENV_ONLY = "KME_LOAD_PLUGINS"

BUILTIN_PLUGINS = ("kme.builtin.dispatch", "kme.builtin.guards", "kme.builtin.layouts", "kme.builtin.protocols")


@dataclass
class PluginFailure:
    name: str
    distribution: str | None
    error: str
    phase: str  # "import", "validate" or "register"
    traceback: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "distribution": self.distribution, "phase": self.phase, "error": self.error}


@dataclass
class PluginInfo:
    name: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class KmePluginManager(pluggy.PluginManager):
    """A pluggy manager with kme's registries and failure report attached."""

    def __init__(self) -> None:
        super().__init__("kme")
        self.add_hookspecs(hookspecs)
        from kme.models.layouts import ModelAlias, ModelLayout

        self.editors: Registry[type[Editor]] = Registry("editor", Editor)
        self.locators: Registry[type[Locator]] = Registry("locator", Locator)
        self.datasets: Registry[type[Dataset]] = Registry("dataset", Dataset)
        self.metrics: Registry[type[Metric]] = Registry("metric", Metric)
        self.layouts: Registry[ModelLayout] = Registry(
            "model layout", ModelLayout, instances=True, key=lambda x: x.model_type)
        self.aliases: Registry[ModelAlias] = Registry("model alias", ModelAlias, instances=True)
        from kme.presets import Preset, TextCorpus

        self.presets: Registry[Preset] = Registry("preset", Preset, instances=True)
        self.corpora: Registry[TextCorpus] = Registry("corpus", TextCorpus, instances=True)
        from kme.pipeline.protocols import RunProtocol

        self.protocols: Registry[type[RunProtocol]] = Registry("protocol", RunProtocol)
        self.failures: list[PluginFailure] = []
        self.infos: dict[str, PluginInfo] = {}
        self._collected = False

    # -- loading ---------------------------------------------------------------------
    def add_plugin(self, plugin: Any, name: str | None = None, info: PluginInfo | None = None) -> str:
        _check_unmarked(plugin)
        name = self.register(plugin, name=name) or name
        assert name is not None
        self.infos[name] = info or PluginInfo(name=name)
        return name

    def load_entrypoints(self) -> None:
        if os.environ.get(ENV_DISABLE, "").strip() not in ("", "0", "false", "False"):
            return
        only = os.environ.get(ENV_ONLY)
        wanted = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
        from importlib_metadata import entry_points

        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if wanted is not None and ep.name not in wanted:
                continue
            dist = getattr(ep, "dist", None)
            dname = dist.name if dist is not None else None
            if self.get_plugin(ep.name) is not None or self.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
                self.add_plugin(plugin, name=ep.name, info=PluginInfo(
                    name=ep.name, distribution=dname, version=dist.version if dist else None))
            except BaseException as e:  # a broken plugin must not take the others down, even one
                # that calls sys.exit() or raises KeyboardInterrupt while it is imported
                self.failures.append(PluginFailure(ep.name, dname, f"{type(e).__name__}: {e}", "import",
                                                   traceback.format_exc()))

    def validate(self, strict_names: set[str] = frozenset()) -> None:
        """``check_pending`` per plugin: unload (or raise for) plugins with unknown hooks."""
        while True:
            try:
                self.check_pending()
                return
            except pluggy.PluginValidationError as e:
                pname = self.get_name(e.plugin) or repr(e.plugin)
                if pname in strict_names:
                    raise KmeError(f"plugin {pname!r}: {e}",
                                   hint="hook implementations must be named like a spec in kme.hookspecs") from None
                info = self.infos.pop(pname, None)
                self.unregister(e.plugin)
                self.failures.append(PluginFailure(pname, info.distribution if info else None, str(e), "validate"))

    def collect(self, strict_names: set[str] = frozenset()) -> None:
        """Run the registration hooks, one implementation at a time so a failure is isolated."""
        if self._collected:
            return
        for hook_name, registry in (
            ("kme_register_model_layouts", self.layouts),
            ("kme_register_model_aliases", self.aliases),
            ("kme_register_editors", self.editors),
            ("kme_register_locators", self.locators),
            ("kme_register_datasets", self.datasets),
            ("kme_register_metrics", self.metrics),
            ("kme_register_presets", self.presets),
            ("kme_register_corpora", self.corpora),
            ("kme_register_protocols", self.protocols),
        ):
            for impl in reversed(getattr(self.hook, hook_name).get_hookimpls()):
                pname = self.get_name(impl.plugin) or repr(impl.plugin)
                try:
                    impl.function(*([Register(registry, pname)] if impl.argnames else []))
                except BaseException as e:
                    if pname in strict_names:
                        raise
                    info = self.infos.get(pname)
                    self.failures.append(PluginFailure(pname, info.distribution if info else None,
                                                       f"{type(e).__name__}: {e}", "register",
                                                       traceback.format_exc()))
        self._collected = True

    # -- introspection -----------------------------------------------------------------
    def provided_by(self, plugin_name: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for label, reg in (("editors", self.editors), ("locators", self.locators),
                           ("datasets", self.datasets), ("metrics", self.metrics),
                           ("model_layouts", self.layouts), ("model_aliases", self.aliases),
                           ("presets", self.presets), ("corpora", self.corpora),
                           ("protocols", self.protocols)):
            names = [n for n in reg if reg.owner(n) == plugin_name]
            if names:
                out[label] = names
        return out

    def describe(self) -> dict[str, Any]:
        plugins = []
        for name, info in sorted(self.infos.items(), key=lambda kv: (not kv[1].builtin, kv[0])):
            plugin = self.get_plugin(name)
            if plugin is None:
                continue
            hooks = sorted(h.name for h in (self.get_hookcallers(plugin) or []))
            plugins.append({
                "name": name,
                "distribution": info.distribution,
                "version": info.version,
                "builtin": info.builtin,
                "hooks": hooks,
                "provides": self.provided_by(name),
            })
        return {"plugins": plugins, "failures": [f.as_dict() for f in self.failures]}


def _check_unmarked(plugin: Any) -> None:
    """Refuse a plugin that names a hook but forgot ``@kme.hookimpl`` (it would be ignored)."""
    spec_names = {n for n in dir(hookspecs) if n.startswith("kme_")}
    for attr in dir(plugin):
        if attr in spec_names:
            fn = getattr(plugin, attr, None)
            if callable(fn) and not hasattr(fn, "kme_impl"):
                raise KmeError(f"{attr} in plugin {getattr(plugin, '__name__', plugin)!r} is not marked "
                               "with @kme.hookimpl, so it would never be called",
                               hint="decorate it with @kme.hookimpl")


def build_plugin_manager(
    plugins: list[Any] | dict[str, Any] | None = None,
    *,
    load_entrypoints: bool = True,
) -> KmePluginManager:
    """Build and fill a plugin manager: built-ins, entry points, ``plugins``, validation, registration.

    ``plugins`` may be modules, classes or objects with ``@kme.hookimpl`` methods (a dict
    names them). Errors in explicitly passed plugins are raised; errors in entry-point
    plugins are collected in ``pm.failures``.
    """
    import importlib

    pm = KmePluginManager()
    for modname in BUILTIN_PLUGINS:
        mod: ModuleType = importlib.import_module(modname)
        pm.add_plugin(mod, name=modname, info=PluginInfo(name=modname, distribution=KERNEL_DISTRIBUTION,
                                                         version=_version(KERNEL_DISTRIBUTION), builtin=True))
    if load_entrypoints:
        pm.load_entrypoints()
    strict: set[str] = set()
    items = plugins.items() if isinstance(plugins, dict) else [(None, p) for p in (plugins or [])]
    for name, plugin in items:
        strict.add(pm.add_plugin(plugin, name=name))
    pm.validate(strict)
    pm.collect(strict)
    return pm


def _version(dist: str) -> str | None:
    from importlib_metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def print_failures(pm: KmePluginManager, stream: Any = None) -> None:
    stream = stream or sys.stderr
    for f in pm.failures:
        print(f"warning: plugin {f.name!r} ({f.distribution or 'unknown distribution'}) failed to "
              f"{'load' if f.phase == 'import' else f.phase}: {f.error}", file=stream)
