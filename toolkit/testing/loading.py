"""Loading one plugin on its own into a fresh registry, as a test or ``tk plugins check`` does.

Mistakes pluggy would silently ignore (a misspelt ``tk_*`` hook, a hook without
``@hookimpl``) are errors here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib import metadata

from toolkit import hookspecs
from toolkit.errors import PluginError, TkError, UsageError
from toolkit.plugins import (
    CORE_DISTRIBUTION,
    PluginInfo,
    installed_entry_points,
    new_manager,
    normalize_name,
    register_plugin,
)
from toolkit.registry import Registry

# The hooks tk knows; a ``tk_*`` function with another name is almost always a typo.
KNOWN_HOOKS = tuple(name for name in dir(hookspecs) if name.startswith("tk_"))
# The version shown for a plugin given as a module object rather than by name.
IN_PROCESS = "(in-process)"
# Where to see the traceback of an installed plugin that fails to load.
TRACEBACK_HINT = "TK_STRICT_PLUGINS=1 tk plugins shows the traceback"


@dataclass
class LoadedPlugin:
    """One plugin loaded into a fresh registry (with tk's built-ins, unless asked not to).

    :param registry: the plugin's specs plus the built-in ones, ready for
        ``toolkit.train.train(config, registry=...)``.
    :param plugins: one row per entry point of the plugin, as ``tk plugins`` shows them.
    :param models: the model names the plugin registered, in registration order.
    :param datasets: the dataset names the plugin registered, in registration order.
    """

    registry: Registry
    plugins: list[PluginInfo]
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``dist version (entry point 'x')`` for messages."""
        return ", ".join(
            f"{p.distribution} (in-process)"
            if p.version == IN_PROCESS
            else f"{p.distribution} {p.version} (entry point '{p.entry_point}')"
            for p in self.plugins
        )


def _find(name: str) -> list[tuple[metadata.EntryPoint, str, str]]:
    """The entry points of the distribution (or the single entry point) called ``name``."""
    rows = installed_entry_points()
    wanted = normalize_name(name)
    by_dist = [r for r in rows if normalize_name(r[1]) == wanted]
    if by_dist:
        return by_dist
    by_ep = [r for r in rows if normalize_name(r[0].name) == wanted]
    if by_ep:
        return by_ep
    known = sorted({r[1] for r in rows} | {r[0].name for r in rows})
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    suggestion = f"; did you mean '{close[0]}'?" if close else ""
    raise UsageError(
        f"no installed plugin named '{name}'{suggestion}",
        "pip install -e <plugin directory>, then tk plugins",
    )


def _hook_problems(plugin: object) -> list[str]:
    """Mistakes pluggy would silently ignore: typo'd hook names, a missing @hookimpl."""
    pm = new_manager()
    problems = []
    for attr in sorted(dir(plugin)):
        if not attr.startswith("tk_") or not callable(getattr(plugin, attr, None)):
            continue
        if attr not in KNOWN_HOOKS:
            problems.append(f"'{attr}' is not a tk hook (known: {', '.join(KNOWN_HOOKS)})")
        elif pm.parse_hookimpl_opts(plugin, attr) is None:
            problems.append(f"'{attr}' is not decorated with @hookimpl, so tk never calls it")
    return problems


def _register(
    registry: Registry, plugin: object, info: PluginInfo, who: str, hint: str | None
) -> PluginInfo:
    """Register one plugin object; any failure becomes one PluginError naming ``who``."""
    try:
        register_plugin(registry, new_manager(), plugin, info)
    except Exception as exc:
        raise _load_error(who, exc, hint) from exc
    problems = _hook_problems(plugin)
    if problems:
        raise PluginError(f"plugin {who}: {problems[0]}")
    return info


def _load_error(who: str, exc: Exception, hint: str | None) -> PluginError:
    if isinstance(exc, TkError):  # already one line with its own fix
        return PluginError(f"plugin {who} failed to load: {exc}")
    text = " ".join(str(exc).split())
    return PluginError(f"plugin {who} failed to load: {type(exc).__name__}: {text}", hint)


def _load_one(registry: Registry, ep: metadata.EntryPoint, dist: str, version: str) -> PluginInfo:
    who = f"'{ep.name}' from {dist} {version}"
    try:
        module = ep.load()
    except Exception as exc:
        raise _load_error(who, exc, TRACEBACK_HINT) from exc
    info = PluginInfo(ep.name, ep.value, dist, version)
    return _register(registry, module, info, who, TRACEBACK_HINT)


def load_plugin(plugin: str | object, *, builtins: bool = True) -> LoadedPlugin:
    """Load one plugin into a fresh registry, with nothing else installed getting in.

    :param plugin: an installed distribution or entry-point name as ``tk plugins``
        shows it (``"tk-hello"``), or a module (or any object) with ``@hookimpl``
        functions, registered in-process without an entry point.
    :param builtins: also load tk's built-in plugins first, so a model may train on a
        built-in dataset and a name clash with a built-in is caught.
    :raises UsageError: no installed plugin has that name.
    :raises PluginError: the plugin fails to import, a hook raises, it registers a
        name twice or a built-in's name, or a hook is misspelt or undecorated.
    """
    registry = Registry()
    core_rows = [r for r in installed_entry_points() if normalize_name(r[1]) == CORE_DISTRIBUTION]
    if isinstance(plugin, str):
        rows = _find(plugin)
        is_core = all(normalize_name(r[1]) == CORE_DISTRIBUTION for r in rows)
        if builtins and not is_core:
            for row in core_rows:
                _load_one(registry, *row)
        infos = [_load_one(registry, *row) for row in rows]
    else:
        if builtins:
            for row in core_rows:
                _load_one(registry, *row)
        name = getattr(plugin, "__name__", type(plugin).__name__)
        info = PluginInfo(name, name, name, IN_PROCESS)
        # In-process, the original exception is chained: a test shows its traceback.
        infos = [_register(registry, plugin, info, f"'{name}'", None)]
    models = [m for info in infos for m in info.models]
    datasets = [d for info in infos for d in info.datasets]
    return LoadedPlugin(registry, infos, models, datasets)
