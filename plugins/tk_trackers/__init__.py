"""Built-in plugin: the TensorBoard and MLflow trackers (``tk train ... --tracker NAME``).

Registered through the ``tk`` entry-point group like any third-party plugin. Each
tracker imports its library in ``start``, so ``tk list`` never pays for it, and
either library is an optional extra (``pip install 'tk-torch[tensorboard]'``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolkit import Param, TrackerSpec, hookimpl

# MLflow run statuses for tk's end states (status.json's words).
MLFLOW_STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
# config.json keys logged as MLflow params (nested ones flattened: recipe.lr).
PARAM_KEYS = ("model", "dataset", "params", "data_params", "recipe", "seed")


class TensorBoardTracker:
    """Scalars per epoch in TensorBoard event files (default ``<run>/tensorboard/``)."""

    def __init__(self, log_dir: str = "") -> None:
        self.log_dir = log_dir
        self.writer: Any = None
        self.run_dir = self.where = Path()  # set by start (or reopen)

    def start(self, run_config: dict[str, Any]) -> None:
        """Open the event file and record the run's configuration as text."""
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_config["run_dir"])
        self.where = Path(self.log_dir or self.run_dir / "tensorboard")
        self.writer = SummaryWriter(log_dir=str(self.where))
        text = json.dumps(run_config, indent=2, default=str)
        # Four spaces: TensorBoard renders text as markdown, and this keeps it verbatim.
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()))

    def state(self) -> dict[str, Any]:
        """Where the event files are (recorded in ``RUN/trackers.json``)."""
        return {"log_dir": str(self.where.resolve()), "run_dir": str(self.run_dir.resolve())}

    def reopen(self, state: dict[str, Any]) -> None:
        """Point at a finished run's event files (nothing is opened)."""
        self.where, self.run_dir = Path(state["log_dir"]), Path(state["run_dir"])

    def delete(self) -> str:
        """Nothing to delete inside the run directory; never a directory outside it,
        which may hold other runs' events (``log_dir`` is the user's choice)."""
        if self.where.is_relative_to(self.run_dir):
            return "its event files, which were in the run directory"
        raise RuntimeError(
            f"its event files are in {self.where}, outside the run directory, "
            "where other runs may write too; delete them yourself"
        )

    def log_metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        """One scalar per metric, at step ``epoch``."""
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=epoch)

    def log_artifact(self, path: Path) -> None:
        """Nothing to do: TensorBoard has no file store, the files stay in the run."""

    def flush(self) -> None:
        """Write what is queued, so a live ``tensorboard`` shows the epochs so far."""
        self.writer.flush()

    def finish(self, summary: dict[str, Any]) -> None:
        """Close the event file."""
        self.writer.close()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # MLflow logs INFO lines to stderr (creating tables), prints run URLs with emoji
    # to stdout and warns about its own dependencies: none of it is tk's output.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _flat(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flat(f"{prefix}.{key}", inner)
    else:
        yield prefix, str(value)


def _mlflow_client(uri: str) -> Any:
    """An MlflowClient for ``uri``, with MLflow's URL banners, progress bars and INFO
    lines off (call it inside :func:`_quiet`)."""
    import logging

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


class MlflowTracker:
    """An MLflow run per tk run: params, per-epoch metrics, the files as artifacts.

    Default store: ``sqlite:///<runs root>/mlflow.db`` with artifacts in
    ``<runs root>/mlartifacts``; ``tracking_uri`` names a team server instead.
    """

    def __init__(self, tracking_uri: str = "", experiment: str = "tk") -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client: Any = None
        self.run_id = ""
        self.pending: list[Any] = []  # metrics waiting for the next flush

    def start(self, run_config: dict[str, Any]) -> None:
        """Create (or, for a resumed tk run, continue) the MLflow run and log the params."""
        with _quiet():
            from mlflow.entities import Param as MlflowParam

            run_dir = Path(run_config["run_dir"])
            root = Path(run_config.get("runs_dir") or run_dir.parent.parent)
            uri = self.tracking_uri or f"sqlite:///{(root / 'mlflow.db').resolve()}"
            self.client = _mlflow_client(uri)
            experiment_id = self._experiment(None if self.tracking_uri else root)
            self.run_id = self._resumed(experiment_id, run_config) or ""
            if self.run_id:
                return  # the params were logged when the run began
            tags = {
                "tk.run_dir": str(run_dir),
                "tk.model": str(run_config.get("model")),
                "tk.dataset": str(run_config.get("dataset")),
                "mlflow.source.name": "tk train",
            }
            run = self.client.create_run(experiment_id, run_name=run_dir.name, tags=tags)
            self.run_id = run.info.run_id
            params = [
                MlflowParam(key, value)
                for top in PARAM_KEYS
                if top in run_config
                for key, value in _flat(top, run_config[top])
            ]
            for i in range(0, len(params), 100):  # MLflow takes 100 params per batch
                self.client.log_batch(self.run_id, params=params[i : i + 100])

    def _experiment(self, local_root: Path | None) -> str:
        """The experiment's id, created when missing (artifacts beside a local store)."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        where = (local_root / "mlartifacts").resolve().as_uri() if local_root else None
        try:
            return self.client.create_experiment(self.experiment, artifact_location=where)
        except MlflowException:  # another tk process created it a moment ago
            return self.client.get_experiment_by_name(self.experiment).experiment_id

    def _resumed(self, experiment_id: str, run_config: dict[str, Any]) -> str | None:
        """The MLflow run of this tk run when it is a resume (``resumed_from``)."""
        run_dir = str(Path(run_config["run_dir"]))
        if "resumed_from" not in run_config or "'" in run_dir:
            return None
        found = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`tk.run_dir` = '{run_dir}'", max_results=1
        )
        if not found:
            return None
        self.client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id

    def state(self) -> dict[str, Any]:
        """The store and the MLflow run of this tk run (recorded in ``RUN/trackers.json``)."""
        return {"tracking_uri": self.client.tracking_uri, "run_id": self.run_id}

    def reopen(self, state: dict[str, Any]) -> None:
        """Continue a finished tk run's MLflow run (files exported later go there)."""
        with _quiet():
            self.client = _mlflow_client(state["tracking_uri"])
            self.run_id = state["run_id"]
            self.client.get_run(self.run_id)  # a run that is gone fails here, by name

    def delete(self) -> str:
        """Delete the MLflow run (MLflow marks it deleted; ``mlflow gc`` frees its files)."""
        with _quiet():
            self.client.delete_run(self.run_id)
        return f"MLflow run {self.run_id} in {self.client.tracking_uri}"

    def log_metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        """Queue the epoch's metrics (step = epoch); :meth:`flush` sends them."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.pending += [Metric(k, v, stamp, epoch) for k, v in metrics.items()]

    def flush(self) -> None:
        """Send the queued metrics, 1000 per request (a log point is one round trip)."""
        with _quiet():
            while self.pending:
                batch, self.pending = self.pending[:1000], self.pending[1000:]
                self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path) -> None:
        """Upload one file (the weights, an exported model) to the run's artifacts."""
        with _quiet():
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, summary: dict[str, Any]) -> None:
        """The final test figures as metrics, then the run's end status."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        step = int(summary.get("epochs") or 0)
        for key, value in (summary.get("test") or {}).items():
            if isinstance(value, (int, float)):
                self.pending.append(Metric(f"final_test_{key}", float(value), stamp, step))
        self.flush()
        status = MLFLOW_STATUS.get(str(summary.get("status")), "FINISHED")
        with _quiet():
            self.client.set_terminated(self.run_id, status=status)


@hookimpl
def tk_register_trackers(register):
    register(
        TrackerSpec(
            name="tensorboard",
            factory=TensorBoardTracker,
            options=[Param("log_dir", str, "", "event file directory (default: RUN/tensorboard)")],
            description="TensorBoard event files in the run directory",
            requires=("tensorboard",),
            install="pip install 'tk-torch[tensorboard]'",
        )
    )
    register(
        TrackerSpec(
            name="mlflow",
            factory=MlflowTracker,
            options=[
                Param("tracking_uri", str, "", "MLflow server or store (default: RUNS/mlflow.db)"),
                Param("experiment", str, "tk", "MLflow experiment name"),
            ],
            description="MLflow runs: params, per-epoch metrics, weights and exports",
            requires=("mlflow",),
            install="pip install 'tk-torch[mlflow]'",
        )
    )
