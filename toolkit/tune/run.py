"""``tune(request)``: check everything, create or join the study, run its trials, report.

Every user error (a train option, the search space, the sampler, the study name) is
found before a storage is opened, so a bad command creates no study.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.config import TrainConfig
from toolkit.errors import UsageError, check_number
from toolkit.registry import Registry
from toolkit.tune import study as studies
from toolkit.tune.space import Dimension, parse_space
from toolkit.tune.worker import Work, deadline_after, spawn, work

DEFAULT_TRIALS = 20
# tk train options a study decides itself (each trial is its own run directory).
NOT_FOR_TUNE = {
    "out": "each trial is runs/MODEL/STUDY/trial-NNNN",
    "name": "each trial is runs/MODEL/STUDY/trial-NNNN (--study names the folder)",
    "resume": "tk tune --study NAME continues a study, and its interrupted trials",
    "overwrite": "a study never replaces a run",
}
TOML_KEYS = {
    "space": (dict, list),
    "trials": (int,),
    "timeout": (str, int, float),
    "jobs": (int,),
    "sampler": (str,),
    "pruner": (str,),
    "study": (str,),
    "storage": (str,),
    "sampler_seed": (int,),
}


@dataclass
class TuneRequest:
    """What ``tk tune`` was asked: the base configuration and the study's options."""

    base: TrainConfig  # tk train's options (and --config), the search starts from these
    space: list[str] = field(default_factory=list)
    trials: int | None = None
    timeout: str | None = None
    jobs: int = 1
    sampler: str | None = None
    pruner: str | None = None
    study: str | None = None
    storage: str | None = None
    sampler_seed: int | None = None
    slot: int | None = None  # a worker process that a --jobs parent started
    plot: bool = False


def apply_toml(request: TuneRequest, table: dict[str, Any], path: str) -> TuneRequest:
    """A ``[tune]`` table's values where the command line gave none (space entries added)."""
    for key, value in table.items():
        if key not in TOML_KEYS:
            raise UsageError(
                f"config file {path}: unknown key tune.{key}; allowed: {', '.join(TOML_KEYS)}"
            )
        if isinstance(value, bool) or not isinstance(value, TOML_KEYS[key]):
            raise UsageError(f"config file {path}: tune.{key} has the wrong type: {value!r}")
        if key == "space":
            items = value.items() if isinstance(value, dict) else None
            entries = [f"{k}={v}" for k, v in items] if items is not None else list(value)
            given = {e.partition("=")[0].strip() for e in request.space}
            request.space += [e for e in entries if e.partition("=")[0].strip() not in given]
        elif key == "jobs":
            request.jobs = request.jobs if request.jobs != 1 else value
        elif getattr(request, key) is None:
            setattr(request, key, str(value) if key == "timeout" else value)
    return request


def tune(
    request: TuneRequest, registry: Registry | None = None, echo: Callable[[str], None] = print
) -> Work:
    """Create (or join) the study and run trials until it has its count; returns the
    study's work description (for the report)."""
    from toolkit.train.signals import Interrupted
    from toolkit.tune.show import report_lines

    if registry is None:
        from toolkit.plugins import get_registry

        registry = get_registry()
    if request.base.quiet:
        echo = _silent
    job = prepare(request, registry, echo)
    deadline = deadline_after(request.timeout)
    if request.slot is None:
        echo(f"study {job.name} in {studies.shown_url(job.url)}: {job.definition.trials} trials")
    try:
        if request.jobs > 1:
            spawn(job, request.jobs, deadline)
        else:
            # A process joining a study that has trials draws from another seed than
            # the one that started it (--jobs workers get theirs from the parent).
            slot = request.slot if request.slot is not None else len(job.study.get_trials())
            work(job, slot, deadline)
    except Interrupted as exc:
        exc.message = f"study {job.name} interrupted ({exc.message})"
        exc.hint = continue_command(job)
        raise
    if request.slot is None:
        for line in report_lines(job.study, job.definition, continue_command(job)):
            echo(line)
    return job


def _silent(_line: str) -> None:
    """``--quiet``: no trial lines and no report (errors still reach stderr)."""


def continue_command(job: Work) -> str:
    """The command that continues this study from anywhere on this machine."""
    default = studies.storage_url(None, job.base.runs_dir)
    where = "" if job.url == default else f" --storage {studies.shown_url(job.url)}"
    runs = "" if job.base.runs_dir == "runs" else f" --runs-dir {job.base.runs_dir}"
    return f"tk tune --study {job.name}{where}{runs}"


def prepare(request: TuneRequest, registry: Registry, echo: Callable[[str], None]) -> Work:
    """Everything checked, then the study created, joined or continued."""
    _check_options(request)
    studies.require_optuna()
    new = define(request, registry) if request.base.model else None
    if request.study is None and new is None:
        raise UsageError(
            "no model given", "tk tune MODEL --space 'lr=log(1e-4,1e-1)', or tk tune --study NAME"
        )
    if new is None:
        _join_only(request)
    name = studies.check_study_name(request.study or f"{request.base.model}-tune")
    url = studies.storage_url(request.storage, request.base.runs_dir)
    storage = studies.open_storage(url, create=new is not None)
    found = studies.load(storage, name)
    if found is None and new is None:
        raise UsageError(
            f"no study '{name}' in {studies.shown_url(url)}", f"tk tune MODEL --study {name} ..."
        )
    if found is None:
        assert new is not None
        study = studies.create(storage, name, new)
        definition = studies.StudyDef.from_json(study.user_attrs[studies.ATTR])
    else:
        study, definition = found
    # Also after a create: another process may have made the study a moment before.
    _same_study(name, definition, new)
    if request.trials is not None and request.trials != definition.trials:
        definition.trials = request.trials
        study.set_user_attr(studies.ATTR, definition.to_json())
    base = definition.base_config(request.base)
    dims = dimensions(definition, registry)
    return Work(study, name, url, definition, dims, base, registry, echo, request.plot)


def _join_only(request: TuneRequest) -> None:
    """``tk tune --study NAME`` without a model joins the study as it was defined: an
    option that would change that definition is refused rather than ignored."""
    given = studies.definition_base(request.base)
    for key, value in given.items():
        if value != studies.definition_base(TrainConfig())[key]:
            raise UsageError(
                f"--{key.replace('_', '-')} changes what study '{request.study}' trains, and "
                "a study continued by name keeps its definition",
                "the full tk tune MODEL ... command, or a new --study",
            )
    for key in ("sampler", "pruner", "sampler_seed"):
        if getattr(request, key) is not None or request.space:
            what = "--space" if request.space else f"--{key.replace('_', '-')}"
            raise UsageError(
                f"{what} without a model: study '{request.study}' keeps its definition",
                "the full tk tune MODEL ... command, or a new --study",
            )


def _check_options(request: TuneRequest) -> None:
    for key, why in NOT_FOR_TUNE.items():
        if getattr(request.base, key):
            raise UsageError(f"tk tune does not take --{key}: {why}")
    check_number("--jobs", request.jobs, 1)
    if request.trials is not None:
        check_number("--trials", request.trials, 1)
    if request.sampler is not None and request.sampler not in studies.SAMPLERS:
        raise UsageError(
            f"unknown sampler '{request.sampler}'; choose {', '.join(studies.SAMPLERS)}"
        )
    if request.pruner is not None and request.pruner not in studies.PRUNERS:
        raise UsageError(f"unknown pruner '{request.pruner}'; choose {', '.join(studies.PRUNERS)}")
    if request.sampler_seed is not None:
        check_number("--sampler-seed", request.sampler_seed, 0, high=2**31 - 1)


def define(request: TuneRequest, registry: Registry) -> studies.StudyDef:
    """The study this command describes, every part of it checked (nothing is opened)."""
    from toolkit.train.plan import resolve
    from toolkit.tune.trial import check_dimensions

    base = request.base
    plan = resolve(base, registry, run_dir=Path("."))
    if not request.space:
        raise UsageError("no search space given", "--space 'lr=log(1e-4,1e-1)' (repeat for more)")
    owners = (plan.model.name, plan.dataset.name)
    dims = parse_space(request.space, list(plan.model.params), list(plan.dataset.params), owners)
    check_dimensions(base, dims, registry)
    sampler = request.sampler or "tpe"
    trials = request.trials
    if sampler == "grid":
        points = _product([len(d.grid()) for d in dims])
        if trials is not None and trials > points:
            raise UsageError(f"--trials {trials} is more than the grid's {points} points")
        trials = trials or points
    monitor = plan.selection.monitor_name
    stored = studies.definition_base(base)
    # Parameters as resolved (paths absolute): a worker elsewhere reads the same files.
    stored["params"] = _given(base.params, plan.params)
    stored["data_params"] = _given(base.data_params, plan.data_params)
    return studies.StudyDef(
        model=plan.model.name,
        base=stored,
        space=[d.entry for d in dims],
        monitor=monitor,
        direction="maximize" if studies.monitor_key(monitor) == "val_accuracy" else "minimize",
        sampler=sampler,
        pruner=request.pruner or "median",
        trials=trials or DEFAULT_TRIALS,
        sampler_seed=request.sampler_seed,
        extra={"epochs": plan.recipe.epochs},
    )


def dimensions(definition: studies.StudyDef, registry: Registry) -> list[Dimension]:
    """The stored search space, typed again against the installed plugins."""
    mspec = registry.model(definition.model)
    dspec = registry.dataset(definition.base.get("dataset") or mspec.default_dataset)
    owners = (mspec.name, dspec.name)
    return parse_space(definition.space, list(mspec.params), list(dspec.params), owners)


def _same_study(name: str, stored: studies.StudyDef, new: studies.StudyDef | None) -> None:
    if new is None:
        return
    diff = stored.differs(new)
    if diff:
        raise UsageError(
            f"study '{name}' was created with {diff}",
            f"--study NEW for a new study, or tk tune --study {name} to continue it as it is",
        )


def _given(given: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in given:
        name = key if key in resolved else key.replace("-", "_")
        out[name] = resolved[name]
    return out


def _product(sizes: list[int]) -> int:
    n = 1
    for s in sizes:
        n *= s
    return n
