"""Plugin discovery: entry points in the group ``tk``, loaded one at a time.

A plugin that fails to import, whose hook raises, or that registers a name another
distribution already has, becomes one warning on stderr and a ``failed`` row in
``tk plugins``; every other plugin keeps working (the bug ``llm`` has, where one
broken plugin takes down every command, is what this module exists to avoid).

Environment:

- ``TK_LOAD_PLUGINS=a,b``: load only these distributions (or entry-point names);
  set but empty: load none.
- ``TK_STRICT_PLUGINS=1``: a failing plugin is an error, with its traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from toolkit import hookspecs
from toolkit.errors import PluginError, one_line
from toolkit.formats import ExportFormat
from toolkit.registry import DatasetSpec, ModelSpec, Registry, Source, TrackerSpec

GROUP = "tk"
# The core distribution's plugins load first, so a third party can never take
# over a built-in name, whatever the install order.
CORE_DISTRIBUTION = "tk-torch"
SLOW_IMPORT_S = 1.0  # a plugin import taking longer is named on stderr while it runs
BUILTIN_FORMATS = "toolkit.formats.builtin"  # tk's own formats' entry point (pyproject.toml)


@dataclass
class PluginInfo:
    """What ``tk plugins`` shows for one entry point."""

    entry_point: str
    module: str
    distribution: str
    version: str
    status: str = "ok"
    error: str | None = None
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    trackers: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly row."""
        return dict(self.__dict__)


@dataclass
class Loaded:
    """The result of loading plugins: the registry and a row per entry point."""

    registry: Registry
    plugins: list[PluginInfo]
    manager: pluggy.PluginManager


def normalize_name(name: str) -> str:
    """Distribution/entry-point names compared the way pip does (case, - _ .)."""
    return name.lower().replace("_", "-").replace(".", "-")


def _wanted() -> set[str] | None:
    """The names ``TK_LOAD_PLUGINS`` selects (normalized), or None when it is unset."""
    raw = os.environ.get("TK_LOAD_PLUGINS")
    if raw is None:
        return None
    return {normalize_name(x) for x in raw.split(",") if x.strip()}


def _selected(ep_name: str, dist: str) -> bool:
    wanted = _wanted()
    return wanted is None or normalize_name(dist) in wanted or normalize_name(ep_name) in wanted


def _unmatched(rows: list[tuple[metadata.EntryPoint, str, str]]) -> list[str]:
    """``TK_LOAD_PLUGINS`` names that no installed distribution or entry point has."""
    known = {normalize_name(n) for ep, dist, _ in rows for n in (ep.name, dist)}
    raw = os.environ.get("TK_LOAD_PLUGINS") or ""
    return [x.strip() for x in raw.split(",") if x.strip() and normalize_name(x) not in known]


def load_entry_point(ep: metadata.EntryPoint, dist: str, version: str, warn: bool) -> Any:
    """``ep.load()``; when the import takes over a second, one line on stderr says
    which plugin tk is waiting for (a plugin whose import blocks is otherwise silent)."""
    import threading

    def waiting() -> None:
        print(
            f"tk: warning: still importing plugin '{ep.name}' from {dist} {version} "
            f"({ep.value}) after {SLOW_IMPORT_S:g} s; TK_LOAD_PLUGINS=... skips it",
            file=sys.stderr,
            flush=True,
        )

    timer = threading.Timer(SLOW_IMPORT_S, waiting)
    timer.daemon = True
    if warn:
        timer.start()
    try:
        return ep.load()
    finally:
        timer.cancel()


def _strict() -> bool:
    return os.environ.get("TK_STRICT_PLUGINS", "") not in ("", "0")


def new_manager() -> pluggy.PluginManager:
    """A fresh PluginManager with tk's hookspecs (tests make one per test)."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def installed_entry_points() -> list[tuple[metadata.EntryPoint, str, str]]:
    """Every ``tk`` entry point once, core first: (entry point, distribution, version)."""
    rows = []
    seen = set()
    for ep in metadata.entry_points(group=GROUP):
        dist = ep.dist.metadata["Name"] if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else "?"
        # The same distribution can be visible twice on sys.path (e.g. a source
        # checkout plus an install); the first one on the path wins, as for imports.
        key = (normalize_name(dist), ep.name)
        if key in seen:
            continue
        seen.add(key)
        rows.append((ep, dist, version))
    core = [r for r in rows if normalize_name(r[1]) == CORE_DISTRIBUTION]
    if core and not any(ep.value == BUILTIN_FORMATS for ep, _, _ in core):
        # An editable install made before tk registered its formats from an entry
        # point keeps its old metadata until reinstalled: its formats still load.
        ep = metadata.EntryPoint(name="formats", value=BUILTIN_FORMATS, group=GROUP)
        rows.append((ep, core[0][1], core[0][2]))
    rows.sort(
        key=lambda r: (normalize_name(r[1]) != CORE_DISTRIBUTION, normalize_name(r[1]), r[0].name)
    )
    return rows


def _call_hook(pm: pluggy.PluginManager, plugin: object, hook: str, **kwargs: Any) -> None:
    # Each plugin's implementation is called on its own, so that one raising
    # cannot stop the others (pluggy's hook call would abort at the first error).
    for impl in getattr(pm.hook, hook).get_hookimpls():
        if impl.plugin is plugin:
            impl.function(*[kwargs[name] for name in impl.argnames])


def register_plugin(
    registry: Registry,
    pm: pluggy.PluginManager,
    plugin: object,
    info: PluginInfo,
) -> None:
    """Register one plugin object and run its hooks into ``registry``.

    All of a plugin's specs are added, or none of them: a hook that raises halfway
    leaves no partial registration behind. Raises on any failure.
    """
    pm.register(plugin, name=f"{info.distribution}:{info.entry_point}")
    # hook -> (the spec class it registers, what it registered so far)
    staged: dict[str, tuple[type, list[Any]]] = {
        "tk_register_models": (ModelSpec, []),
        "tk_register_datasets": (DatasetSpec, []),
        "tk_register_trackers": (TrackerSpec, []),
        "tk_register_formats": (ExportFormat, []),
    }

    def collector(kind: type, into: list[Any]) -> Any:
        def add(spec: Any) -> None:
            if not isinstance(spec, kind):
                raise PluginError(f"register() got {type(spec).__name__}, expected {kind.__name__}")
            if kind is ExportFormat and not (spec.name and spec.suffix):
                raise PluginError(f"{type(spec).__name__} has no name or suffix")
            into.append(spec)

        return add

    try:
        for hook, (kind, into) in staged.items():
            _call_hook(pm, plugin, hook, register=collector(kind, into))
        specs = [spec for _, into in staged.values() for spec in into]
        source = Source(info.entry_point, info.distribution, info.version)
        alone = Registry()
        for spec in specs:
            alone.add(spec, source)  # duplicates inside one plugin
            # Check against what is already registered before changing anything.
            if spec.name in registry.table(spec)[1]:
                registry.add(spec, source)  # raises, naming both distributions
        for spec in specs:
            registry.add(spec, source)
    except BaseException:
        pm.unregister(plugin)
        raise
    info.models = [m.name for m in staged["tk_register_models"][1]]
    info.datasets = [d.name for d in staged["tk_register_datasets"][1]]
    info.trackers = [t.name for t in staged["tk_register_trackers"][1]]
    info.formats = [f.name for f in staged["tk_register_formats"][1]]


def load_plugins(warn: bool = True) -> Loaded:
    """Discover and load every ``tk`` entry point into a fresh registry.

    :param warn: print one line on stderr per failed plugin.
    :raises PluginError: on a failing plugin when ``TK_STRICT_PLUGINS=1``.
    """
    pm = new_manager()
    registry = Registry()
    infos: list[PluginInfo] = []
    rows = installed_entry_points()
    for name in _unmatched(rows) if warn else []:
        print(
            f"tk: warning: TK_LOAD_PLUGINS names '{name}', which no installed plugin has "
            f"(installed: {', '.join(sorted({dist for _, dist, _ in rows}))})",
            file=sys.stderr,
        )
    for ep, dist, version in rows:
        if not _selected(ep.name, dist):
            continue
        info = PluginInfo(ep.name, ep.value, dist, version)
        infos.append(info)
        try:
            module = load_entry_point(ep, dist, version, warn)
            register_plugin(registry, pm, module, info)
        except Exception as exc:
            if _strict():
                traceback.print_exc()
                raise PluginError(
                    f"plugin '{ep.name}' from {dist} {version} failed: "
                    f"{type(exc).__name__}: {one_line(exc, 10_000, typed=False, hint=True)}",
                    "unset TK_STRICT_PLUGINS to skip broken plugins",
                ) from exc
            info.status = "failed"
            info.error = f"{type(exc).__name__}: {one_line(exc, 10_000, typed=False, hint=True)}"
            if warn:
                print(
                    f"tk: warning: plugin '{ep.name}' from {dist} {version} failed to load "
                    f"and is skipped: {info.error}",
                    file=sys.stderr,
                )
    return Loaded(registry, infos, pm)


_CACHE: Loaded | None = None


def get_registry() -> Registry:
    """The process-wide registry, loading plugins on first use."""
    return loaded().registry


def loaded() -> Loaded:
    """The process-wide plugin load result (loaded once, warnings printed once)."""
    global _CACHE
    if _CACHE is None:
        _CACHE = load_plugins()
    return _CACHE


def reset() -> None:
    """Forget the cached plugins (tests call this after changing the environment)."""
    global _CACHE
    _CACHE = None
