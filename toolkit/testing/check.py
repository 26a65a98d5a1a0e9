"""``check_plugin``: everything a plugin registers, trained, exported and verified on the CPU."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from toolkit.errors import PluginError, check_number
from toolkit.formats import FORMATS
from toolkit.registry import Registry
from toolkit.testing.loading import LoadedPlugin, load_plugin
from toolkit.testing.report import Check, PluginReport
from toolkit.testing.small import small_registry
from toolkit.testing.steps import (
    check_dataset,
    check_exports,
    check_input,
    check_training,
    pick_dataset,
)

FORMAT_PROBE = "circle"  # the built-in model a format plugin is checked with


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
    and every file is verified against the eager model at several batch sizes. For
    every export format: tk's ``circle`` model is trained, exported through it and
    the file verified in the format's runtime.

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
    check_number("--epochs", epochs, 1)
    check_number("--max-rows", max_rows, 1)
    name = plugin if isinstance(plugin, str) else getattr(plugin, "__name__", type(plugin).__name__)
    report = PluginReport(name)
    start = time.perf_counter()

    def add(check: Check) -> bool:
        report.checks.append(check)
        if on_check is not None:
            on_check(check)
        return check.ok

    loaded = _load_step(plugin, name, builtins, add)
    if loaded is not None:
        report.label = loaded.label
        registry = small_registry(loaded.registry, max_rows)
        with tempfile.TemporaryDirectory(prefix="tk-check-") as tmp:
            runs_dir = Path(workdir) if workdir is not None else Path(tmp)
            runs_dir.mkdir(parents=True, exist_ok=True)
            for dname in loaded.datasets:
                add(check_dataset(registry, dname))
            for mname in loaded.models:
                _model_steps(registry, mname, loaded.datasets, epochs, runs_dir, formats, add)
            for fname in _formats(loaded):
                _format_steps(registry, fname, epochs, runs_dir, add)
    report.seconds = time.perf_counter() - start
    return report


def _load_step(
    plugin: str | object, name: str, builtins: bool, add: Callable[[Check], bool]
) -> LoadedPlugin | None:
    """The plugin loads and registers something; None when it does not."""
    try:
        loaded = load_plugin(plugin, builtins=builtins)
    except PluginError as exc:
        add(Check("plugin", name, "load", False, str(exc)))
        return None
    if not loaded.models and not loaded.datasets and not _formats(loaded):
        add(
            Check(
                "plugin",
                name,
                "load",
                False,
                "registers no models, datasets or formats (are the hook functions decorated "
                "with @hookimpl and named tk_register_models / _datasets / _formats?)",
            )
        )
        return None
    what = len(loaded.models), len(loaded.datasets), len(_formats(loaded))
    detail = f"{what[0]} model(s), {what[1]} dataset(s)" + (
        f", {what[2]} format(s)" * bool(what[2])
    )
    add(Check("plugin", name, "load", True, detail))
    return loaded


def _formats(loaded: LoadedPlugin) -> list[str]:
    """The export formats the plugin registered."""
    return [f for info in loaded.plugins for f in info.formats]


def _format_steps(
    registry: Registry, fname: str, epochs: int, runs_dir: Path, add: Callable[[Check], bool]
) -> None:
    """tk's circle model trained, exported through the format, the file verified."""
    if FORMAT_PROBE not in registry.models:
        add(Check("format", fname, "export", False, f"needs tk's {FORMAT_PROBE} model (builtins)"))
        return
    spec = registry.model(FORMAT_PROBE)
    check, run_dir = check_training(registry, spec, spec.default_dataset, epochs, runs_dir)
    if not add(check) or run_dir is None:
        return
    for c in check_exports(registry, FORMAT_PROBE, run_dir, runs_dir, (fname,)):
        add(c)


def _model_steps(
    registry: Registry,
    mname: str,
    own_datasets: list[str],
    epochs: int,
    runs_dir: Path,
    formats: tuple[str, ...],
    add: Callable[[Check], bool],
) -> None:
    """Input, training, then every export and its verification, stopping at a failure."""
    spec = registry.model(mname)
    if not add(check_input(spec)):
        return
    dataset = pick_dataset(spec, registry, own_datasets)
    if dataset is None:
        add(
            Check(
                "model",
                mname,
                "train",
                False,
                f"no default_dataset and no registered {spec.task or 'built-in'} dataset with "
                f"features of shape {tuple(spec.input.shape) if spec.input else 'any'}",
            )
        )
        return
    check, run_dir = check_training(registry, spec, dataset, epochs, runs_dir)
    if not add(check) or run_dir is None:
        return
    for c in check_exports(registry, mname, run_dir, runs_dir, tuple(formats)):
        add(c)
