"""Helpers for plugin authors' tests: load one plugin on its own and check that it conforms.

A plugin's whole test can be three lines::

    from toolkit.testing import check_plugin

    def test_conformance(tmp_path):
        report = check_plugin("tk-hello", workdir=tmp_path)
        assert report.ok, report.format()

:func:`check_plugin` does, for every model and dataset the plugin registers, what a
user's ``tk train`` / ``tk export --format all`` / ``tk verify`` would do, on the CPU,
with a couple of epochs over a few hundred rows. ``tk plugins check NAME`` runs the
same from the command line.

Nothing in this module imports torch at import time.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

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
from toolkit.registry import DatasetSpec, ModelSpec, Registry

# What ``--format all`` means; the check exports and verifies each one.
FORMATS = ("onnx", "torchscript", "pt2")
# The hooks tk knows; a ``tk_*`` function with another name is almost always a typo.
KNOWN_HOOKS = tuple(name for name in dir(hookspecs) if name.startswith("tk_"))
# The version shown for a plugin given as a module object rather than by name.
IN_PROCESS = "(in-process)"


# ------------------------------------------------------------------------ loading
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


# Where to see the traceback of an installed plugin that fails to load.
TRACEBACK_HINT = "TK_STRICT_PLUGINS=1 tk plugins shows the traceback"


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


# ------------------------------------------------------------------------ the check
@dataclass
class Check:
    """One step of the conformance check.

    :param kind: ``"plugin"``, ``"model"`` or ``"dataset"``.
    :param name: the plugin, model or dataset name.
    :param step: ``load``, ``input``, ``train``, ``export onnx``, ``verify onnx``, ...
    :param ok: whether the step passed.
    :param detail: one line: what was done, or why it failed.
    """

    kind: str
    name: str
    step: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        """One aligned line for a terminal."""
        status = "ok" if self.ok else "FAILED"
        return f"{status:<7} {self.kind:<8} {self.name:<20} {self.step:<18} {self.detail}".rstrip()


@dataclass
class PluginReport:
    """What :func:`check_plugin` found; ``ok`` is true when every step passed."""

    plugin: str
    label: str = ""
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when there is at least one check and none failed."""
        return bool(self.checks) and not self.failures

    @property
    def failures(self) -> list[Check]:
        """The failed steps."""
        return [c for c in self.checks if not c.ok]

    def format(self) -> str:
        """A readable report, one line per step (use it as a pytest assertion message)."""
        head = f"tk plugin check: {self.label or self.plugin}"
        lines = [head, *(c.line() for c in self.checks)]
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: passed, or the first failure."""
        if self.ok:
            return f"{self.plugin}: all {len(self.checks)} checks passed in {self.seconds:.1f} s"
        if not self.checks:
            return f"{self.plugin}: nothing was checked"
        first = self.failures[0]
        detail = first.detail if len(first.detail) <= 240 else first.detail[:237] + "..."
        return (
            f"{self.plugin}: {len(self.failures)} of {len(self.checks)} checks failed; first: "
            f"{first.kind} '{first.name}' {first.step}: {detail}"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly copy (``tk plugins check --json``)."""
        return {
            "plugin": self.plugin,
            "label": self.label,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "checks": [c.__dict__ for c in self.checks],
        }


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, TkError):
        return text
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _every_nth(value: Any, max_rows: int) -> Any:
    """At most ``max_rows`` rows of a split, spread over all of it (sorted data keeps
    every class), or the split unchanged when it cannot be sliced safely."""
    import torch

    if isinstance(value, torch.utils.data.Dataset):
        n = len(value)  # type: ignore[arg-type]
        step = max(1, -(-n // max_rows))
        return torch.utils.data.Subset(value, range(0, n, step))
    try:
        x, y = value
        n = len(x)
    except (TypeError, ValueError):
        return value  # let the real checks (toolkit.data.prepare) report the problem
    if n != len(y):
        return value  # the same: a row mismatch must not be hidden by slicing
    step = max(1, -(-n // max_rows))
    return (x[::step], y[::step])


def _small(spec: DatasetSpec, max_rows: int) -> DatasetSpec:
    """The same dataset, with each split cut to at most ``max_rows`` rows.

    The loader runs once per parameter set: the dataset check and the training of
    every model that uses the dataset share it.
    """
    cache: dict[tuple[tuple[str, Any], ...], Mapping[str, Any]] = {}
    original = spec.load

    def load(**params: Any) -> Mapping[str, Any]:
        key = tuple(sorted(params.items()))
        if key not in cache:
            raw = original(**params)
            if isinstance(raw, Mapping):
                raw = {k: _every_nth(v, max_rows) for k, v in raw.items()}
            cache[key] = raw
        return cache[key]

    return replace(spec, load=load)


def _small_registry(source: Registry, max_rows: int) -> Registry:
    out = Registry()
    for name, spec in source.models.items():
        out.add(spec, source.source("model", name))
    for name, spec in source.datasets.items():
        out.add(_small(spec, max_rows), source.source("dataset", name))
    return out


def _pick_dataset(spec: ModelSpec, registry: Registry, own: list[str]) -> str | None:
    if spec.default_dataset:
        return spec.default_dataset  # train() reports it if it does not exist
    # No default: the plugin's own datasets first, then the built-ins.
    for name in [*own, *sorted(set(registry.datasets) - set(own))]:
        d = registry.datasets[name]
        if d.target == spec.task and tuple(d.feature_shape) == tuple(spec.input.shape):
            return name
    return None


def _check_dataset(registry: Registry, name: str) -> Check:
    from toolkit.data import Split, prepare

    spec = registry.dataset(name)
    try:
        data = prepare(spec, spec.load(**spec.resolve_params({})))
    except Exception as exc:
        return Check("dataset", name, "load", False, _one_line(exc))
    sizes = ", ".join(
        f"{split} {len(value)} rows" + ("" if isinstance(value, Split) else " (Dataset)")
        for split, value in data.splits.items()
    )
    shape = "x".join(map(str, spec.feature_shape))
    return Check("dataset", name, "load", True, f"{sizes}; features {shape}")


def _check_input(spec: ModelSpec) -> Check:
    """Build the model and run it on random inputs of its declared shape (two batch sizes).

    Export uses the declared input spec to make its example inputs, so a model that
    cannot take it fails here with a clear message, before any training.
    """
    import torch

    from toolkit.train import build_model

    shape = tuple(spec.input.shape)
    try:
        model = build_model(spec, spec.resolve_params({}), seed=0).eval()
    except Exception as exc:
        return Check("model", spec.name, "build", False, _one_line(exc))
    outs = {}
    for batch in (1, 3):
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
        try:
            with torch.no_grad():
                out = model(x)
        except Exception as exc:
            return Check(
                "model",
                spec.name,
                "input",
                False,
                f"cannot take its declared input of shape (batch, "
                f"{', '.join(map(str, shape))}): {_one_line(exc)}",
            )
        if not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != batch:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            return Check(
                "model",
                spec.name,
                "input",
                False,
                f"for a batch of {batch} it returned {got}; expected a tensor with {batch} rows",
            )
        outs[batch] = tuple(out.shape[1:])
    if outs[1] != outs[3]:
        return Check(
            "model", spec.name, "input", False, f"output shape depends on the batch: {outs}"
        )
    dims = "x".join(map(str, shape))
    out_dims = f"(batch, {'x'.join(map(str, outs[1]))})" if outs[1] else "(batch,)"
    return Check("model", spec.name, "input", True, f"(batch, {dims}) -> {out_dims}")


def _check_training(
    registry: Registry, spec: ModelSpec, dataset: str, epochs: int, runs_dir: Path
) -> tuple[Check, Path | None]:
    from toolkit.config import TrainConfig
    from toolkit.train import train

    out = runs_dir / spec.name
    config = TrainConfig(
        model=spec.name,
        dataset=dataset,
        epochs=epochs,
        device="cpu",  # the check must pass where the plugin's users run CI: no GPU
        runs_dir=str(runs_dir),
        out=str(out),
        overwrite=True,
        quiet=True,
    )
    try:
        result = train(config, registry=registry)
    except Exception as exc:
        return Check("model", spec.name, "train", False, _one_line(exc)), None
    last = result.history.last
    if "test_accuracy" in last:
        figure = f"test acc {100 * last['test_accuracy']:.1f}%"
    else:
        figure = f"test MAE {last.get('test_mae', float('nan')):.4g}"
    detail = f"{epochs} epochs on {dataset} in {result.history.seconds:.2f} s ({figure})"
    return Check("model", spec.name, "train", True, detail), result.run_dir


def _check_exports(
    registry: Registry, name: str, run_dir: Path, runs_dir: Path, formats: tuple[str, ...]
) -> list[Check]:
    """Export the trained run to each format and verify each file against the eager model."""
    if not formats:
        return []
    from toolkit.export import export_run
    from toolkit.verify import verify_file

    checks = []
    for fmt in formats:
        try:
            results = export_run(
                run=str(run_dir),
                formats=(fmt,),
                runs_dir=str(runs_dir),
                registry=registry,
                overwrite=True,
                # Verified below from the written file, as `tk verify FILE` does it.
                verify=False,
                echo=_quiet,
                echo_err=_quiet,
            )
        except Exception as exc:
            checks.append(Check("model", name, f"export {fmt}", False, _one_line(exc)))
            continue
        for result in results:
            path = Path(result.path)
            checks.append(Check("model", name, f"export {fmt}", True, path.name))
            try:
                report = verify_file(
                    path, run=str(run_dir), runs_dir=str(runs_dir), registry=registry
                )
            except Exception as exc:
                checks.append(Check("model", name, f"verify {fmt}", False, _one_line(exc)))
                continue
            checks.append(Check("model", name, f"verify {fmt}", report.passed, report.summary()))
    return checks


def _quiet(line: str) -> None:
    """Export's progress lines are replaced by the report's own."""


def check_plugin(
    plugin: str | object,
    *,
    epochs: int = 2,
    max_rows: int = 256,
    formats: tuple[str, ...] = FORMATS,
    workdir: str | Path | None = None,
    builtins: bool = True,
    on_check: Callable[[Check], None] | None = None,
) -> PluginReport:
    """Check that everything a plugin registers works with tk, end to end, on the CPU.

    For every dataset: it loads, and each split matches the declared feature shape
    and target kind. For every model: it builds and takes its declared input; it
    trains ``epochs`` epochs on its default dataset (or the first compatible one)
    cut to ``max_rows`` rows per split; the run is exported to each of ``formats``
    and every file is verified against the eager model at several batch sizes.

    :param plugin: an installed distribution or entry-point name (``"tk-hello"``),
        or a module with ``@hookimpl`` functions (registered without an entry point).
    :param workdir: where run directories and exported files go; a temporary
        directory, removed afterwards, when None.
    :param builtins: load tk's built-in plugins too (datasets a model may use).
    :param on_check: called with each step as it finishes (progress output).
    :returns: a :class:`PluginReport`; nothing is raised for a failing plugin, so a
        test can show every failure at once: ``assert report.ok, report.format()``.
    :raises UsageError: ``plugin`` names no installed plugin.
    """
    name = plugin if isinstance(plugin, str) else getattr(plugin, "__name__", type(plugin).__name__)
    report = PluginReport(name)
    start = time.perf_counter()

    def add(check: Check) -> bool:
        report.checks.append(check)
        if on_check is not None:
            on_check(check)
        return check.ok

    try:
        loaded = load_plugin(plugin, builtins=builtins)
    except PluginError as exc:
        add(Check("plugin", name, "load", False, str(exc)))
        report.seconds = time.perf_counter() - start
        return report
    report.label = loaded.label
    if not loaded.models and not loaded.datasets:
        add(
            Check(
                "plugin",
                name,
                "load",
                False,
                "registers no models and no datasets (are the hook functions "
                "decorated with @hookimpl and named tk_register_models / tk_register_datasets?)",
            )
        )
        report.seconds = time.perf_counter() - start
        return report
    what = len(loaded.models), len(loaded.datasets)
    add(Check("plugin", name, "load", True, f"{what[0]} model(s), {what[1]} dataset(s)"))

    registry = _small_registry(loaded.registry, max_rows)
    with tempfile.TemporaryDirectory(prefix="tk-check-") as tmp:
        runs_dir = Path(workdir) if workdir is not None else Path(tmp)
        runs_dir.mkdir(parents=True, exist_ok=True)
        for dname in loaded.datasets:
            add(_check_dataset(registry, dname))
        for mname in loaded.models:
            spec = registry.model(mname)
            if not add(_check_input(spec)):
                continue
            dataset = _pick_dataset(spec, registry, loaded.datasets)
            if dataset is None:
                add(
                    Check(
                        "model",
                        mname,
                        "train",
                        False,
                        f"no default_dataset and no registered {spec.task} dataset with "
                        f"features of shape {tuple(spec.input.shape)}",
                    )
                )
                continue
            check, run_dir = _check_training(registry, spec, dataset, epochs, runs_dir)
            if not add(check) or run_dir is None:
                continue
            for c in _check_exports(registry, mname, run_dir, runs_dir, tuple(formats)):
                add(c)
    report.seconds = time.perf_counter() - start
    return report


# ------------------------------------------------------------------------ the CLI
def run_tk(
    *args: str, env: Mapping[str, str] | None = None, cwd: str | Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``tk`` command line in a subprocess (``python -m toolkit ARGS``).

    Returns the finished process (``returncode``, ``stdout``, ``stderr``); ``env``
    entries are added to the current environment. Use it to test what a user sees,
    e.g. that ``tk list models`` shows your model.
    """
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "toolkit", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
    )
