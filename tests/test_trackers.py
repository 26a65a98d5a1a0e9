"""Trackers as plugins, for real: TensorBoard event files, an MLflow store and server.

Until ``tk train --tracker`` is wired, a run directory comes from ``train()`` and the
trackers are driven by ``fit(..., callbacks=[TrackerCallback])`` on a tiny problem,
then ``close(summary, artifacts)`` as the trainer will call it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types
import urllib.request
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import tk_main
from fixtures.small_data import quadrants

from toolkit import InputSpec, ModelSpec, Param, TrackerSpec, hookimpl, hookspecs
from toolkit.config import TrainConfig
from toolkit.errors import PluginError, UsageError
from toolkit.registry import Recipe
from toolkit.testing import load_plugin
from toolkit.train import Callback, fit, train
from toolkit.train.signals import Interrupted
from toolkit.train.trackers import TrackerCallback, check_trackers, tracker_callback

EPOCHS = 6


def _data():
    return quadrants(120, 100)


def _model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))


def _fit(callback: TrackerCallback, epochs: int = EPOCHS):
    recipe = Recipe(optimizer="adam", lr=0.05, epochs=epochs)
    return fit(_model(), _data(), recipe, task="binary", log_every=2, callbacks=[callback])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real, finished run directory (config.json, weights, summary) to track."""
    root = tmp_path_factory.mktemp("runs")
    result = train(
        TrainConfig(model="circle", epochs=3, runs_dir=str(root), name="tracked", quiet=True)
    )
    return result.run_dir


def _drive(names, run_dir, options=None, registry=None, epochs=EPOCHS):
    """A tracked fit, closed with the run's summary and weights: the trainer's order."""
    from toolkit.plugins import get_registry

    callback = tracker_callback(names, registry or get_registry(), options, run_dir, main=True)
    history = _fit(callback, epochs)
    summary = json.loads((run_dir / "summary.json").read_text())
    callback.close(summary, [run_dir / "model.safetensors"])
    return callback, history


# ----------------------------------------------------------------- the plugin API
class Recorder:
    """A tracker that writes down every call."""

    calls: ClassVar[list[tuple]] = []

    def __init__(self, tag="r", fail_in=""):
        self.tag, self.fail_in = tag, fail_in

    def _note(self, what, *args):
        if what == self.fail_in:
            raise TypeError(f"{self.tag} cannot {what}")
        Recorder.calls.append((self.tag, what, *args))

    def start(self, run_config):
        self._note("start", Path(run_config["run_dir"]).name)

    def log_metrics(self, epoch, metrics):
        self._note("log_metrics", epoch, sorted(metrics))

    def log_artifact(self, path):
        self._note("log_artifact", path.name)

    def finish(self, summary):
        self._note("finish", summary["status"])


def _recorders():
    @hookimpl
    def tk_register_trackers(register):
        options = [Param("tag", str, "r"), Param("fail_in", str, "")]
        register(TrackerSpec(name="recorder", factory=Recorder, options=options))
        register(TrackerSpec(name="recorder-b", factory=Recorder, options=options))

    return load_plugin(types.SimpleNamespace(tk_register_trackers=tk_register_trackers))


def test_builtin_trackers_are_listed(tk):
    listed = json.loads(tk("list", "trackers", "--json").out)
    assert {t["name"]: t["options"] for t in listed} == {
        "mlflow": ["tracking_uri", "experiment"],
        "tensorboard": ["log_dir"],
    }
    plugins = {p["entry_point"]: p for p in json.loads(tk("plugins", "--json").out)}
    assert plugins["trackers"]["trackers"] == ["tensorboard", "mlflow"]
    assert "tensorboard, mlflow" in tk("plugins").out
    info = tk("info", "mlflow")
    assert info.code == 0 and "tracking_uri: str = ''" in info.out
    bad = tk("info", "tensorbord")
    assert bad.code == 2
    assert "unknown tracker 'tensorbord'; did you mean 'tensorboard'?" in bad.err


def test_names_and_options_are_checked_up_front():
    plugin = _recorders()
    reg = plugin.registry
    assert plugin.plugins[0].trackers == ["recorder", "recorder-b"]
    chosen = check_trackers(["recorder,recorder-b", "recorder"], reg, {"tag": "x"})
    assert [(s.name, s.options["tag"]) for s in chosen] == [("recorder", "x"), ("recorder-b", "x")]
    only_b = check_trackers("recorder,recorder-b", reg, {"recorder-b.tag": "b", "x": None})
    assert [s.options["tag"] for s in only_b] == ["r", "b"]
    with pytest.raises(UsageError, match=r"unknown tracker 'mlfow'; did you mean 'mlflow'\?"):
        check_trackers(["mlfow"], reg)
    with pytest.raises(UsageError, match=r"allowed: .*mlflow.*tensorboard"):
        check_trackers(["nothing-like-it"], reg)
    with pytest.raises(UsageError, match=r"allowed: tensorboard\.log_dir"):
        check_trackers(["tensorboard"], reg, {"tracking_uri": "http://x"})
    with pytest.raises(UsageError, match="parameter 'tag' expects"):
        check_trackers(["recorder"], _typed_registry(), {"tag": "many"})
    assert tracker_callback([], reg, {}, "nowhere", main=True) is None


def _typed_registry():
    @hookimpl
    def tk_register_trackers(register):
        register(TrackerSpec(name="recorder", factory=Recorder, options=[Param("tag", int, 1)]))

    return load_plugin(types.SimpleNamespace(tk_register_trackers=tk_register_trackers)).registry


def test_a_missing_library_is_a_usage_error_naming_the_install():
    @hookimpl
    def tk_register_trackers(register):
        register(
            TrackerSpec(
                name="wandb-ish",
                factory=Recorder,
                requires=("no_such_module_for_tk",),
                install="pip install tk-wandb-ish",
            )
        )

    reg = load_plugin(types.SimpleNamespace(tk_register_trackers=tk_register_trackers)).registry
    with pytest.raises(UsageError) as err:
        check_trackers(["wandb-ish"], reg)
    assert str(err.value) == (
        "tracker 'wandb-ish' needs no_such_module_for_tk, which is not installed "
        "(try: pip install tk-wandb-ish)"
    )


def test_trackers_register_all_or_nothing_and_never_twice():
    def build():
        from torch import nn

        return nn.Linear(2, 1)

    @hookimpl
    def tk_register_models(register):
        register(ModelSpec(name="half", build=build, input=InputSpec((2,)), task="binary"))

    @hookimpl
    def tk_register_trackers(register):
        register(TrackerSpec(name="fine", factory=Recorder))
        raise ValueError("tracker hook exploded")

    half = types.SimpleNamespace(
        tk_register_models=tk_register_models, tk_register_trackers=tk_register_trackers
    )
    from toolkit.plugins import PluginInfo, new_manager, register_plugin
    from toolkit.registry import Registry

    reg = Registry()
    with pytest.raises(ValueError, match="exploded"):
        register_plugin(reg, new_manager(), half, PluginInfo("half", "half", "half", "1"))
    assert reg.models == {} and reg.trackers == {}

    @hookimpl
    def tk_register_trackers_clash(register):
        register(TrackerSpec(name="tensorboard", factory=Recorder))

    clash = types.SimpleNamespace(tk_register_trackers=tk_register_trackers_clash)
    with pytest.raises(PluginError, match="tracker 'tensorboard' is registered by both tk-torch"):
        load_plugin(clash)

    @hookimpl
    def tk_register_trackers_wrong(register):
        register("tensorboard")

    wrong = types.SimpleNamespace(tk_register_trackers=tk_register_trackers_wrong)
    with pytest.raises(PluginError, match="expected TrackerSpec"):
        load_plugin(wrong)


def test_the_hookspec_example_runs(run_dir, capsys):
    doc = hookspecs.tk_register_trackers.__doc__
    example = textwrap.dedent(doc.split("Example::", 1)[1])
    module = types.ModuleType("hookspec_example")
    exec(compile(example, "tk_register_trackers example", "exec"), module.__dict__)
    reg = load_plugin(module).registry
    _drive(["print"], run_dir, {"prefix": "ex"}, registry=reg, epochs=2)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ex start tracked"
    assert out[1].startswith("ex 1 {") and out[2].startswith("ex 2 {")
    assert out[-2:] == ["ex artifact model.safetensors", "ex done finished"]


def test_events_in_order_and_only_on_rank_0(run_dir):
    reg = _recorders().registry
    Recorder.calls = []
    callback, _ = _drive(["recorder"], run_dir, registry=reg)
    calls = Recorder.calls
    assert calls[0] == ("r", "start", "tracked")
    epochs = [c[2] for c in calls if c[1] == "log_metrics"]
    assert epochs == list(range(1, EPOCHS + 1))
    assert "epoch" not in calls[1][3] and "train_loss" in calls[1][3]
    assert calls[-2:] == [("r", "log_artifact", "model.safetensors"), ("r", "finish", "finished")]
    callback.close({}, [])  # a second close does nothing
    assert len(Recorder.calls) == len(calls)

    Recorder.calls = []
    other_rank = tracker_callback(["recorder"], reg, {}, run_dir, main=False)
    _fit(other_rank)
    other_rank.close({}, [run_dir / "model.safetensors"])
    assert Recorder.calls == []  # not even built


def test_a_tracker_that_raises_is_one_warning_and_training_goes_on(run_dir, capfd):
    reg = _recorders().registry
    Recorder.calls = []
    options = {"recorder.fail_in": "log_metrics", "recorder-b.tag": "b"}
    callback, history = _drive(["recorder", "recorder-b"], run_dir, options, registry=reg)
    assert len(history.epochs) == EPOCHS  # every epoch trained
    warnings = [line for line in capfd.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "tk: warning: tracker 'recorder' failed in log_metrics and is disabled: "
        "TypeError: r cannot log_metrics"
    ]
    assert [c for c in Recorder.calls if c[0] == "r"] == [("r", "start", "tracked")]
    b_epochs = [c[2] for c in Recorder.calls if c[0] == "b" and c[1] == "log_metrics"]
    assert b_epochs == list(range(1, EPOCHS + 1))  # the other tracker saw everything
    assert Recorder.calls[-1] == ("b", "finish", "finished")
    assert callback.failures == warnings


def test_strict_mode_makes_a_failing_tracker_an_error(run_dir, monkeypatch):
    reg = _recorders().registry
    monkeypatch.setenv("TK_STRICT_PLUGINS", "1")
    callback = tracker_callback(["recorder"], reg, {"fail_in": "start"}, run_dir, main=True)
    with pytest.raises(PluginError, match="tracker 'recorder' failed in start: TypeError"):
        _fit(callback)


# ------------------------------------------------------------------- TensorBoard
def test_tensorboard_event_file_holds_every_epoch(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, history = _drive(["tensorboard"], run_dir)
    events = run_dir / "tensorboard"
    assert list(events.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events))
    acc.Reload()
    rows = history.epochs
    keys = [k for k in rows[0] if k != "epoch"]
    assert {"train_loss", "train_accuracy"} <= set(keys)
    assert set(keys) <= set(acc.Tags()["scalars"])
    for key in keys:
        scalars = acc.Scalars(key)
        assert [s.step for s in scalars] == list(range(1, EPOCHS + 1))
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in rows], rel=1e-6)
    assert any(tag.startswith("config") for tag in acc.Tags()["tensors"])


# ------------------------------------------------------------------------ MLflow
def _mlflow_run(uri: str, run_dir: Path):
    import mlflow
    from mlflow.tracking import MlflowClient

    found = mlflow.search_runs(
        experiment_names=["tk"],
        filter_string=f"tags.`tk.run_dir` = '{run_dir.resolve()}'",
        output_format="list",
    )
    assert len(found) == 1
    return MlflowClient(tracking_uri=uri), found[0]


def test_mlflow_sqlite_store_holds_params_metrics_and_artifacts(
    run_dir, tmp_path, capfd, monkeypatch
):
    _, history = _drive(["mlflow"], run_dir)
    quiet = capfd.readouterr()
    assert quiet.out == "" and quiet.err == ""  # no banners, no INFO lines, no warnings
    db = run_dir.parent.parent / "mlflow.db"
    assert db.is_file()
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # what mlflow.search_runs reads
    client, run = _mlflow_run(uri, run_dir)
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["model"] == "circle" and params["dataset"] == "circles"
    assert params["params.hidden"] == "10" and params["recipe.optimizer"] == "adam"
    assert params["seed"] == "42" and "data_params.n_samples" in params
    steps = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in steps] == list(range(1, EPOCHS + 1))
    assert [m.value for m in steps] == pytest.approx([r["train_loss"] for r in history.epochs])
    assert "final_test_accuracy" in run.data.metrics
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert artifacts == ["model.safetensors"]
    local = Path(client.download_artifacts(run.info.run_id, "model.safetensors", str(tmp_path)))
    assert local.read_bytes() == (run_dir / "model.safetensors").read_bytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_an_mlflow_server_receives_the_run(run_dir, tmp_path):
    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    argv = [str(mlflow_cli), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'srv.db'}"]
    argv += ["--artifacts-destination", str(tmp_path / "art"), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1"]
    # No job runner (seven huey worker processes otherwise); its own process group,
    # so that stopping it stops the uvicorn child too.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        assert server.poll() is None, server.stderr.read()
        _drive(["mlflow"], run_dir, {"tracking_uri": url, "experiment": "team"})
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=url)
        experiment = client.get_experiment_by_name("team")
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED" and run.data.params["model"] == "circle"
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in history] == list(range(1, EPOCHS + 1))
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["model.safetensors"]
        assert any((tmp_path / "art").rglob("model.safetensors"))  # uploaded through the server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_tk_train_with_trackers_logs_every_epoch_and_the_weights(tk):
    """The whole wiring: `tk train --tracker tensorboard,mlflow`, read back for real."""
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = tk("train", "circle", "--epochs", "12", "--tracker", "tensorboard,mlflow", "-q",
             "--name", "tr", "--log-every", "5")  # fmt: skip
    assert res.code == 0, res.err
    assert res.err == ""
    run = tk.cwd / "runs/circle/tr"
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("val_loss")] == list(range(1, 13))
    mlflow.set_tracking_uri(f"sqlite:///{tk.cwd / 'runs' / 'mlflow.db'}")
    found = mlflow.search_runs(experiment_names=["tk"], output_format="list")
    assert [r.info.run_name for r in found] == ["tr"]
    client = mlflow.MlflowClient()
    names = {a.path for a in client.list_artifacts(found[0].info.run_id)}
    assert {"model.safetensors", "last.safetensors"} <= names
    assert len(client.get_metric_history(found[0].info.run_id, "val_loss")) == 12


def test_unknown_tracker_is_exit_2_before_any_run_directory(tk):
    res = tk("train", "circle", "--tracker", "wandb")
    assert res.code == 2 and "unknown tracker 'wandb'" in res.err
    assert not (tk.cwd / "runs").exists()


def test_an_export_reaches_the_same_mlflow_run_and_runs_rm_deletes_it(
    tmp_path, monkeypatch, capsys
):
    """A real MLflow file store: the ONNX file exported after training lands in the MLflow
    run the training made (found through RUN/trackers.json), and `tk runs rm` deletes
    that run, or says in one line which tracker kept its copy. In-process `tk` (one
    MLflow import, not three)."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses it otherwise
    monkeypatch.chdir(tmp_path)
    uri, shared = f"file:{tmp_path / 'mlruns'}", tmp_path / "tb-shared"
    code = tk_main("train", "circle", "--epochs", "3", "-q", "--name", "m",
                   "--tracker", "mlflow,tensorboard", "--tracking-uri", uri,
                   "--tracker-param", f"tensorboard.log_dir={shared}")  # fmt: skip
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "runs/circle/m"
    recorded = json.loads((run / "trackers.json").read_text())["trackers"]
    run_id = recorded["mlflow"]["state"]["run_id"]
    assert recorded["mlflow"]["state"]["tracking_uri"] == uri
    capsys.readouterr()

    assert tk_main("export", str(run)) == 0
    out = capsys.readouterr()
    assert "model.onnx: logged to the run's trackers (mlflow, tensorboard)" in out.out, out
    client = MlflowClient(tracking_uri=uri)
    (only,) = client.search_runs([client.get_experiment_by_name("tk").experiment_id])
    assert only.info.run_id == run_id  # the same MLflow run, not a new one
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"model.safetensors", "model.onnx"} <= names
    got = Path(client.download_artifacts(run_id, "model.onnx", str(tmp_path)))
    assert got.read_bytes() == (run / "model.onnx").read_bytes()

    assert tk_main("runs", "rm", str(run), "--yes") == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"tracker mlflow: deleted MLflow run {run_id} in {uri}" in lines
    (kept,) = [x for x in lines if x.startswith("tracker tensorboard:")]
    assert kept.startswith("tracker tensorboard: its copy was NOT deleted: its event files are")
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    assert not run.exists() and any(shared.iterdir())  # a shared directory is left alone


class EndsAt2(Callback):
    """Ends the fit at epoch 2 with the exception it was given."""

    def __init__(self, exc):
        self.exc = exc

    def on_epoch_end(self, loop, epoch):
        if epoch == 2:
            raise self.exc


@pytest.mark.parametrize(
    ("exc", "status"),
    [(RuntimeError("disk full"), "failed"), (Interrupted(15, "after epoch 2"), "interrupted")],
)
def test_trackers_finish_through_on_exception_when_the_fit_ends_badly(run_dir, exc, status):
    Recorder.calls = []
    callback = tracker_callback(["recorder"], _recorders().registry, {}, run_dir, main=True)
    recipe = Recipe(optimizer="adam", lr=0.05, epochs=EPOCHS)
    with pytest.raises(type(exc)):
        fit(_model(), _data(), recipe, task="binary", callbacks=[callback, EndsAt2(exc)])
    assert Recorder.calls[-1] == ("r", "finish", status)
    assert callback.closed and not callback.active
