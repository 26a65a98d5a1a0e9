"""Running a study's trials: one process claiming trials until the count is reached,
or ``--jobs N`` such processes on this machine, dividing its cores between them.

A process claims a trial by asking optuna for one, then checks that the trials
numbered before it leave room under ``--trials`` (several processes, on one machine
or many, may ask at the same moment): a trial without room is recorded as
``surplus`` and nothing runs. Ctrl-C stops every running trial after its current
step with a checkpoint, and queues a trial that continues that run; the next
``tk tune`` on the study picks it up.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from toolkit.config import TrainConfig, flag
from toolkit.errors import TkError, one_line
from toolkit.tune import study as studies
from toolkit.tune.study import STORAGE_ENV
from toolkit.tune.trial import TrialCallback, mark_pruned, run_trial, trial_config, whereabouts

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna

    from toolkit.registry import Registry
    from toolkit.tune.space import Dimension


class TrialFailed(Exception):
    """A trial's training raised (diverged, a bad combination): the study goes on."""


class Surplus(Exception):
    """A claimed trial found the study's count already reached: nothing runs."""


@dataclass
class Work:
    """What one process needs to run a study's trials."""

    study: optuna.Study
    name: str
    url: str
    definition: studies.StudyDef
    dims: list[Dimension]
    base: TrainConfig  # the definition's base with this machine's LOCAL options
    registry: Registry
    echo: Callable[[str], None]
    plot: bool = False

    @property
    def study_dir(self) -> Path:
        """Where this study's trial runs go: ``runs/<model>/<study>/``."""
        return Path(self.base.runs_dir) / self.definition.model / self.name


def work(job: Work, slot: int, deadline: float | None) -> int:
    """Run trials until the study's count is reached (or ``deadline``); trials run here."""
    job.study.sampler = studies.make_sampler(job.definition, job.dims, slot)
    job.study.pruner = studies.make_pruner(job.definition)
    ran = 0
    while True:
        for number in studies.fail_dead_trials(job.study):
            job.echo(f"trial {number}: its process is gone (killed); failed")
        target = _target(job)
        if studies.counted(job.study) >= target:
            return ran
        if deadline is not None and time.time() >= deadline:
            job.echo("--timeout reached: no new trials")
            return ran
        job.study.optimize(
            functools.partial(objective, job, target=target),
            n_trials=1,
            catch=(TrialFailed, Surplus),
        )
        ran += 1


def _target(job: Work) -> int:
    """The study's trial count now (a later ``tk tune --trials N`` may have changed it)."""
    data = job.study.user_attrs.get(studies.ATTR) or {}
    return int(data.get("trials", job.definition.trials))


def objective(job: Work, trial: optuna.Trial, *, target: int) -> float:
    """Train one trial as a run; its value is the monitor at the selected epoch."""
    import optuna

    if studies.counted(job.study, below=trial.number) >= target:
        trial.set_user_attr("ended", "surplus")
        raise Surplus(f"trial {trial.number}: the study has its {target} trials")
    resume = trial.user_attrs.get("resume_run")
    overrides = {d.name: d.suggest(trial) for d in job.dims}
    run_dir = Path(resume) if resume else job.study_dir / f"trial-{trial.number:04d}"
    # Absolute: tk tune show and tk export --best find it from any directory.
    for key, value in {**whereabouts(), "run_dir": os.path.abspath(run_dir)}.items():
        trial.set_user_attr(key, value)
    if resume:
        local = {k: getattr(job.base, k) for k in studies.LOCAL}
        config = TrainConfig(**local, resume=str(run_dir), trackers=job.base.trackers)
    else:
        config = trial_config(job.base, overrides)
    info = {
        "study": job.name,
        "number": trial.number,
        "storage": studies.shown_url(job.url),
        "params": overrides,
        "continues": trial.user_attrs.get("continues"),
    }
    monitor = studies.monitor_key(job.definition.monitor)
    callback = TrialCallback(trial, monitor, run_dir, info)
    shown = " ".join(f"{k}={_short(v)}" for k, v in overrides.items())
    start = time.perf_counter()
    try:
        result = run_trial(config, run_dir, [callback], job.registry)
    except (
        Exception
    ) as exc:  # this trial's failure (a diverged loss, out of memory), not the study's
        _failed(job, trial, exc, shown)
    took = f"{time.perf_counter() - start:.1f} s"
    selected = result.summary["selected"]
    if job.plot:
        from toolkit.plot import plot_run

        plot_run(result.run_dir, model=result.model)
    if callback.pruned_at is not None:
        mark_pruned(run_dir, callback.pruned_at)
        job.echo(
            f"trial {trial.number} pruned at epoch {callback.pruned_at} | {shown} | {took} | "
            f"{run_dir}"
        )
        raise optuna.TrialPruned(f"at epoch {callback.pruned_at}")
    job.echo(
        f"trial {trial.number} finished: {selected['monitor']} {selected['value']:.5g} "
        f"(epoch {selected['epoch']}) | {shown} | {took} | {run_dir}"
    )
    return float(selected["value"])


def _failed(job: Work, trial: optuna.Trial, exc: Exception, shown: str) -> NoReturn:
    """Record why a trial stopped, then raise what ends it (Ctrl-C ends the process too)."""
    from toolkit.train.signals import Interrupted

    if isinstance(exc, Interrupted):
        trial.set_user_attr("ended", "interrupted")
        studies.requeue_failed(job.study, trial)
        job.echo(f"trial {trial.number} interrupted; its run continues on the next tk tune")
        raise exc
    from toolkit.errors import TrainingError, debug_enabled

    if debug_enabled():  # TK_DEBUG=1: the trial's traceback, the study goes on
        import traceback

        traceback.print_exception(exc)
    ended = "diverged" if isinstance(exc, TrainingError) else "error"
    trial.set_user_attr("ended", ended)
    trial.set_user_attr("error", one_line(exc))
    job.echo(f"trial {trial.number} failed ({ended}): {one_line(exc)} | {shown}")
    raise TrialFailed(one_line(exc)) from exc


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def spawn(job: Work, jobs: int, deadline: float | None) -> None:
    """``jobs`` worker processes (``tk tune --study NAME``) on this machine, each with
    its share of the cores; Ctrl-C and SIGTERM reach every one. Raises when one failed."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env[STORAGE_ENV] = job.url  # not on the command line: ps shows that to everyone
    # Each worker in its own session: a signal reaches it once, forwarded from here
    # (a terminal's Ctrl-C would otherwise reach it twice).
    procs = [
        subprocess.Popen(_worker_argv(job, slot, deadline), env=env, start_new_session=True)
        for slot in range(1, jobs + 1)
    ]

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [p.wait() for p in procs]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    _check_workers(job, procs, codes)


def _worker_argv(job: Work, slot: int, deadline: float | None) -> list[str]:
    argv = [sys.executable, "-m", "toolkit", "tune", "--study", job.name]
    argv += ["--worker-slot", str(slot)]
    defaults = TrainConfig()
    for key in studies.LOCAL:
        value = getattr(job.base, key)
        if key == "quiet":
            argv += ["--quiet"] if value else []
        elif value != getattr(defaults, key) and value is not None:
            argv += [flag(key), str(value)]
    if deadline is not None:
        argv += ["--timeout", f"{max(1.0, deadline - time.time()):.0f}s"]
    return argv


def _check_workers(job: Work, procs: list[Any], codes: list[int]) -> None:
    from toolkit.errors import EXIT_INTERRUPTED, EXIT_TERMINATED
    from toolkit.train.signals import Interrupted

    for code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        if code in codes:
            sig = signal.SIGTERM if code == EXIT_TERMINATED else signal.SIGINT
            raise Interrupted(sig, f"study {job.name} interrupted", f"tk tune --study {job.name}")
    bad = [(p.pid, c) for p, c in zip(procs, codes, strict=True) if c != 0]
    if bad:
        pid, code = bad[0]
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise TkError(
            f"tk tune worker {pid} {how}; the study is usable", f"tk tune --study {job.name}"
        )


def deadline_after(timeout: str | None) -> float | None:
    """``--timeout 90s|10m|2h|3600`` as a point in time (None: no limit)."""
    if timeout is None:
        return None
    from toolkit.errors import UsageError, check_number

    text = str(timeout).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    scale = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        seconds = float(number) * scale
    except ValueError:
        raise UsageError(f"--timeout expects 90s, 10m, 2h or seconds, got {timeout!r}") from None
    check_number("--timeout", seconds, 0, above=True)
    return time.time() + seconds
