"""A study read back: its best trial (and that run's test metrics), every trial, the
parameters' importances, and optuna's plots; the best trial's run for ``tk export``.

The best trial is chosen by the study's objective, the monitored validation metric;
the test metrics are read from that trial's ``summary.json`` and only reported.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import UsageError
from toolkit.tune import study as studies

if TYPE_CHECKING:
    import optuna

# optuna's trial states as tk words (a failed trial says why, from its "ended" attribute)
WORDS = {"COMPLETE": "finished", "PRUNED": "pruned", "RUNNING": "running", "WAITING": "queued"}


def open_study(name: str, storage: str | None, runs_dir: str) -> tuple[optuna.Study, Any]:
    """The study ``name`` and its definition, or a UsageError naming where it looked."""
    studies.require_optuna()
    url = studies.storage_url(storage, runs_dir)
    found = studies.load(studies.open_storage(url, create=False), name)
    if found is None:
        raise UsageError(f"no study '{name}' in {studies.shown_url(url)}", "tk tune MODEL ...")
    return found


def state_word(trial: Any) -> str:
    """A trial's state as ``tk tune show`` prints it."""
    if trial.state.name == "FAIL":
        return str(trial.user_attrs.get("ended") or "killed")
    if trial.state.name == "RUNNING":
        from toolkit.runlog.scan import pid_alive

        attrs = trial.user_attrs
        if attrs.get("host") == socket.gethostname() and not pid_alive(attrs.get("pid")):
            return "killed"
    return WORDS.get(trial.state.name, trial.state.name.lower())


def _summary(trial: Any) -> dict[str, Any]:
    run = trial.user_attrs.get("run_dir")
    path = Path(run) / "summary.json" if run else None
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def best_trial(study: optuna.Study) -> Any | None:
    """The finished trial with the best objective (None before any finished)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not done:
        return None
    return study.best_trial


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial (surplus claims left out): number, state, value, epochs, values, run."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("ended") == "surplus":
            continue
        summary = _summary(t)
        rows.append(
            {
                "number": t.number,
                "state": state_word(t),
                "value": t.value,
                "epochs": summary.get("epochs"),
                "params": t.params,
                "run": t.user_attrs.get("run_dir"),
                "continues": t.user_attrs.get("continues"),
                "error": t.user_attrs.get("error"),
            }
        )
    return rows


def importances(study: optuna.Study) -> dict[str, float] | str:
    """Optuna's parameter importances (fANOVA), or why there are none yet."""
    import optuna

    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(done) < 2:
        return "needs two finished trials"
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError) as exc:
        return str(exc).split("\n")[0]


def best_info(study: optuna.Study, definition: Any) -> dict[str, Any] | None:
    """The best trial: number, value, values, run directory, test metrics, its tk train line."""
    best = best_trial(study)
    if best is None:
        return None
    summary = _summary(best)
    return {
        "number": best.number,
        "monitor": definition.monitor,
        "value": best.value,
        "epoch": (summary.get("selected") or {}).get("epoch"),
        "params": best.params,
        "run": best.user_attrs.get("run_dir"),
        "test": summary.get("test") or {},
        "command": train_command(definition, best.params),
    }


def train_command(definition: Any, params: dict[str, Any]) -> str:
    """The ``tk train`` command that trains the same configuration as a trial."""
    import shlex

    from toolkit.config import TrainConfig, flag

    base, defaults = definition.base, TrainConfig().to_json()
    words = ["tk", "train", definition.model]
    merged_params = {**base.get("params", {})}
    merged_data = {**base.get("data_params", {})}
    options = {k: v for k, v in base.items() if k not in ("model", "params", "data_params")}
    for name, value in params.items():
        target, dot, key = name.partition(".")
        if dot and target in ("param", "data"):
            (merged_params if target == "param" else merged_data)[key] = value
        else:
            options[name.replace("-", "_")] = value
    for key, value in options.items():
        if value is None or value == defaults.get(key) or value is False or value == []:
            continue
        words += [flag(key)] if value is True else [flag(key), _text(value)]
    words += [w for k, v in merged_params.items() for w in ("--param", f"{k}={_text(v)}")]
    words += [w for k, v in merged_data.items() for w in ("--data-param", f"{k}={_text(v)}")]
    return " ".join(shlex.quote(w) for w in words)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def state_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many trials are in each state (finished, pruned, ...), in order of appearance."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return counts


def report(study: optuna.Study, definition: Any) -> dict[str, Any]:
    """Everything ``tk tune show`` prints (and ``--json`` emits)."""
    rows = trial_rows(study)
    return {
        "study": study.study_name,
        "definition": definition.to_json(),
        "counted": studies.counted(study),
        "states": state_counts(rows),
        "best": best_info(study, definition),
        "importances": importances(study),
        "trials": rows,
    }


def report_lines(study: optuna.Study, definition: Any, continue_with: str) -> list[str]:
    """The end of a ``tk tune``: the counts, the best trial and its test metrics."""
    rows = trial_rows(study)
    counts = ", ".join(f"{n} {word}" for word, n in state_counts(rows).items())
    lines = [f"study {study.study_name}: {len(rows)} trials ({counts})"]
    best = best_info(study, definition)
    if best is not None:
        lines.append(
            f"best: trial {best['number']}, {best['monitor']} {best['value']:.5g} "
            f"(epoch {best['epoch']}) | {test_text(best['test'])} | {best['run']}"
        )
        lines.append(f"  {best['command']}")
    if studies.counted(study) < definition.trials:
        lines.append(f"{definition.trials - studies.counted(study)} trials to go: {continue_with}")
    lines.append(f"next: tk tune show {study.study_name}; tk export {study.study_name} --best")
    return lines


def test_text(test: dict[str, Any]) -> str:
    """The test metrics measured once on the trial's selected weights."""
    if "accuracy" in test:
        return f"test acc {100 * test['accuracy']:.2f}%"
    if "mae" in test:
        return f"test MAE {test['mae']:.5g}"
    return "test -"


def best_run(name: str, storage: str | None, runs_dir: str) -> Path:
    """The run directory of a study's best trial (what ``tk export STUDY --best`` ships)."""
    study, _definition = open_study(name, storage, runs_dir)
    best = best_trial(study)
    if best is None:
        raise UsageError(f"study '{name}' has no finished trial yet", f"tk tune --study {name}")
    run = best.user_attrs.get("run_dir")
    if not run or not (Path(run) / "config.json").is_file():
        raise UsageError(
            f"the best trial ({best.number}) of study '{name}' ran in {run}, not on this machine",
            "tk export RUN_DIR, on the machine that ran it",
        )
    return Path(run)


def plot_study(study: optuna.Study, out_dir: str) -> list[Path]:
    """Optuna's optimisation history, slice and parallel-coordinate plots (matplotlib)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as views

    from toolkit.runs import atomic_write_bytes

    out = Path(out_dir)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not done:
        raise UsageError(f"study '{study.study_name}' has no finished trial to plot")
    written = []
    kinds = {"history": views.plot_optimization_history, "slice": views.plot_slice}
    if len(done[0].params) > 1:
        kinds["parallel"] = views.plot_parallel_coordinate
    for kind, draw in kinds.items():
        axes = draw(study)
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        atomic_write_bytes(out / f"{kind}.png", buf.getvalue())
        written.append(out / f"{kind}.png")
    return written
