"""``tk tune``, ``tk tune show``, ``tk export STUDY --best`` and ``tk lr-find``, in this
process: real optuna, a real SQLite storage, real trials of the circle model.

The process boundary (several ``tk tune`` processes, ``--jobs``, SIGKILL, PostgreSQL)
is tests/test_tune_processes.py.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import optuna
import pytest
from conftest import tk_main, tk_main_ctrl_c

EPOCHS = 20
TRIALS = 8
SPACE = ["--space", "lr=log(1e-4,1)", "--space", "param.hidden=choice(4,16)"]


def load_study(runs: Path, name: str) -> optuna.Study:
    """The study as optuna itself reads it from the SQLite file in the runs root."""
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / 'tune.db'}")


def states(study: optuna.Study) -> dict[str, int]:
    """How many trials are in each optuna state."""
    out: dict[str, int] = {}
    for t in study.get_trials():
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory):
    """One pruned study of 8 circle trials (20 epochs each), shared by the tests below."""
    runs = tmp_path_factory.mktemp("tune") / "runs"
    code = tk_main(
        "tune", "circle", *SPACE, "--epochs", str(EPOCHS), "--trials", str(TRIALS),
        "--sampler-seed", "3", "--runs-dir", str(runs), "--quiet",
    )  # fmt: skip
    assert code == 0
    return runs


def test_study_runs_its_trials_as_runs_and_pruning_prunes(study_runs):
    study = load_study(study_runs, "circle-tune")
    counted = states(study)
    assert counted.get("COMPLETE", 0) + counted.get("PRUNED", 0) == TRIALS
    assert set(counted) <= {"COMPLETE", "PRUNED"}
    assert counted.get("PRUNED", 0) >= 1, counted
    epochs = 0
    for t in study.get_trials():
        run = Path(t.user_attrs["run_dir"])
        assert run == study_runs / "circle" / "circle-tune" / f"trial-{t.number:04d}"
        status = json.loads((run / "status.json").read_text())
        summary = json.loads((run / "summary.json").read_text())
        epochs += summary["epochs"]
        trial = json.loads((run / "trial.json").read_text())
        assert (trial["study"], trial["number"]) == ("circle-tune", t.number)
        if t.state.name == "PRUNED":
            assert status["status"] == "pruned"
            assert summary["epochs"] == status["pruned_at"] < EPOCHS
        else:  # the objective is the monitor at the selected epoch
            assert status["status"] == "finished"
            assert t.value == summary["selected"]["value"]
            assert summary["selected"]["monitor"] == "val_loss"
    assert epochs < TRIALS * EPOCHS


def test_tk_runs_lists_trials_with_number_and_state(study_runs, capsys):
    capsys.readouterr()
    assert tk_main("runs", "--runs-dir", str(study_runs), "--status", "pruned") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["RUN", "TRIAL", "MODEL"]
    pruned = [t.number for t in load_study(study_runs, "circle-tune").get_trials()
              if t.state.name == "PRUNED"]  # fmt: skip
    assert len(lines) == 1 + len(pruned)
    for line, number in zip(lines[1:], pruned, strict=True):
        words = line.split()
        assert words[:2] == [f"circle/circle-tune/trial-{number:04d}", f"circle-tune#{number}"]
        assert "pruned" in words


def test_show_reports_best_trial_by_validation_with_its_test_metrics(study_runs, capsys, tmp_path):
    capsys.readouterr()
    code = tk_main("tune", "show", "circle-tune", "--runs-dir", str(study_runs), "--json",
                   "--plot", str(tmp_path / "plots"))  # fmt: skip
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    study = load_study(study_runs, "circle-tune")
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    best = min(done, key=lambda t: t.value)
    assert data["best"]["number"] == best.number
    summary = json.loads((Path(best.user_attrs["run_dir"]) / "summary.json").read_text())
    assert data["best"]["test"] == summary["test"]
    assert data["best"]["command"].startswith("tk train circle --epochs 20 --lr ")
    assert [r["number"] for r in data["trials"]] == list(range(TRIALS))
    assert set(data["importances"]) == {"lr", "param.hidden"}
    for name in ("history", "slice", "parallel"):
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert tk_main("tune", "show", "circle-tune", "--runs-dir", str(study_runs)) == 0
    text = capsys.readouterr().out
    assert f"best: trial {best.number}, val_loss {best.value:.5g}" in text
    assert "importance: " in text


def test_export_best_ships_the_best_trial_verified(study_runs, capsys):
    best = load_study(study_runs, "circle-tune").best_trial
    code = tk_main("export", "circle-tune", "--best", "--runs-dir", str(study_runs), "--json")
    assert code == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert Path(result["path"]) == Path(best.user_attrs["run_dir"]) / "model.onnx"
    assert result["written"] and result["verify"]["passed"] is True


def test_same_command_continues_a_study_and_another_space_is_refused(study_runs, capsys):
    args = ["--epochs", str(EPOCHS), "--runs-dir", str(study_runs), "--quiet"]
    assert tk_main("tune", "circle", *SPACE, *args, "--trials", str(TRIALS + 2),
                   "--sampler-seed", "3") == 0  # fmt: skip
    assert len(load_study(study_runs, "circle-tune").get_trials()) == TRIALS + 2
    capsys.readouterr()
    assert tk_main("tune", "circle", "--space", "lr=log(1e-3,1)", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("tk: error: study 'circle-tune' was created with space ")
    assert len(err.strip().splitlines()) == 1
    # by name alone, the study keeps its definition: an option that would change it is refused
    code = tk_main("tune", "--study", "circle-tune", "--lr", "0.1", "--runs-dir", str(study_runs))
    assert code == 2
    assert capsys.readouterr().err.startswith(
        "tk: error: --lr changes what study 'circle-tune' trains"
    )


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("lrr=log(1e-4,1)", "unknown name 'lrr' (did you mean 'lr'?)"),
        ("lr=log(0,1)", "log(a,b) needs 0 < a < b, got a=0"),
        ("param.hidden=choice(8,x)", "circle: parameter 'hidden' expects int, got 'x'"),
        ("param.hidden=float(4,8)", "float(a,b) does not fit; this one takes whole numbers"),
        ("param.width=int(4,8)", "unknown model parameter 'width'; allowed: param.hidden"),
        ("optimizer=choice(adam,adamax)", "unknown optimizer 'adamax'"),
        ("epochs=int(0,5)", "--epochs must be at least 1, got 0"),
        ("val-fraction=float(0.1,0.3)", "'val-fraction' is not searched"),
        ("data.noise=choice(0.1,lots)", "circles: parameter 'noise' expects float, got 'lots'"),
        ("lr=uniform(0,1)", "unknown kind 'uniform'"),
    ],
)
def test_search_space_error_is_one_line_exit_2_and_no_study(entry, says, tmp_path, capsys):
    code = tk_main("tune", "circle", "--space", entry, "--runs-dir", str(tmp_path / "runs"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"tk: error: --space {entry}: ") and says in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # no storage, no study, no run


def test_tune_table_in_the_config_file(tmp_path, capsys):
    runs = tmp_path / "runs"
    cfg = tmp_path / "exp.toml"
    cfg.write_text(
        'epochs = 3\n[tune]\ntrials = 2\nstudy = "from-toml"\npruner = "none"\n'
        '[tune.space]\nlr = "log(1e-3,0.1)"\n"param.hidden" = "choice(4,8)"\n'
    )
    assert tk_main("tune", "circle", "--config", str(cfg), "--runs-dir", str(runs)) == 0
    out = capsys.readouterr().out
    assert "study from-toml in sqlite:///" in out and "2 trials (2 finished)" in out
    study = load_study(runs, "from-toml")
    assert {frozenset(t.params) for t in study.get_trials()} == {frozenset({"lr", "param.hidden"})}
    # tk train reads the same file and leaves [tune] to tk tune
    assert tk_main("train", "circle", "--config", str(cfg), "--runs-dir", str(runs), "-q") == 0
    cfg.write_text("[tune]\ntrails = 2\n")
    assert tk_main("tune", "circle", "--config", str(cfg), "--runs-dir", str(runs)) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"tk: error: config file {cfg}: unknown key tune.trails; allowed: space, trials, "
        "timeout, jobs, sampler, pruner, study, storage, sampler_seed"
    )


def test_ctrl_c_checkpoints_running_trial_and_next_tune_continues_it(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["tune", "circle", "--space", "lr=log(1e-3,0.1)", "--epochs", "400", "--trials", "3",
            "--pruner", "none", "--checkpoint-every", "50", "--runs-dir", str(runs),
            "--quiet"]  # fmt: skip
    second = runs / "circle" / "circle-tune" / "trial-0001" / "checkpoints"

    def wrote() -> bool:  # Ctrl-C once trial 1 wrote its first checkpoint
        return second.is_dir() and any(second.glob("*.safetensors"))

    assert tk_main_ctrl_c(wrote, *args) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "tk tune --study circle-tune --runs-dir " in err
    study = load_study(runs, "circle-tune")
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "FAIL", "WAITING"]
    run = second.parent
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"

    assert tk_main("tune", "--study", "circle-tune", "--runs-dir", str(runs), "--quiet") == 0
    trials = load_study(runs, "circle-tune").get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[2].user_attrs["run_dir"] == str(run)  # continued from its checkpoint
    assert trials[2].params == trials[1].params
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert json.loads((run / "trial.json").read_text())["continues"] == 1
    config = json.loads((run / "config.json").read_text())
    assert config["resumed_from"].startswith("checkpoints/")
    assert json.loads((run / "summary.json").read_text())["epochs"] == 400


def test_lr_find_suggests_a_rate_writes_a_plot_and_no_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert tk_main("lr-find", "circle", "--steps", "120", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    # circle's loss falls between ~1e-2 and ~1 (its recipe trains at 0.01 with Adam)
    assert 1e-3 < data["suggestion"] < 1, data["suggestion"]
    assert data["suggestion"] == data["valley"] and data["steepest"] is not None
    assert 10 < data["steps"] <= 120
    assert data["losses"][0] > min(data["losses"])
    assert Path("lr-find-circle.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr-find-circle.png"]  # no runs/


def test_timeout_starts_no_trial_after_it(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["tune", "circle", "--space", "lr=log(1e-3,0.1)", "--epochs", "2", "--trials", "500",
            "--timeout", "1s", "--runs-dir", str(runs)]  # fmt: skip
    assert tk_main(*args) == 0
    out = capsys.readouterr().out
    assert "--timeout reached: no new trials" in out
    done = load_study(runs, "circle-tune").get_trials()
    # The median pruner may stop a trial: every trial started ended, none is left running.
    assert 1 <= len(done) < 500 and all(t.state.name in ("COMPLETE", "PRUNED") for t in done)
    assert f"{500 - len(done)} trials to go: tk tune --study circle-tune --runs-dir " in out


def test_a_diverged_trial_fails_and_counts_while_the_study_goes_on(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["tune", "circle", "--optimizer", "sgd", "--space", "lr=choice(0.05,1e30)",
            "--sampler", "grid", "--epochs", "3", "--runs-dir", str(runs)]  # fmt: skip
    assert tk_main(*args) == 0  # the grid's two points are the study's two trials
    out = capsys.readouterr().out
    assert "failed (diverged): val loss became nan at epoch 1" in out
    trials = load_study(runs, "circle-tune").get_trials()
    by_lr = {t.params["lr"]: t for t in trials}
    assert len(trials) == 2 and by_lr[1e30].state.name == "FAIL"
    assert by_lr[1e30].user_attrs["ended"] == "diverged" and by_lr[0.05].state.name == "COMPLETE"
    assert "study circle-tune: 2 trials (" in out and "1 diverged" in out
    run = Path(by_lr[1e30].user_attrs["run_dir"])
    assert json.loads((run / "status.json").read_text())["status"] == "failed"


def test_a_trial_claimed_a_moment_ago_is_not_called_dead(tmp_path):
    """Another worker's fresh trial has ``host`` before ``pid`` is written (optuna writes
    attributes one by one): it is running, not killed. A trial whose pid is dead is."""
    import socket
    import subprocess
    import sys

    from optuna.trial import TrialState

    from toolkit.tune.study import fail_dead_trials
    from toolkit.tune.trial import whereabouts

    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    study = optuna.create_study(study_name="race", storage=storage)
    claimed = study.ask()
    claimed.set_user_attr("host", socket.gethostname())  # the pid is not written yet
    alive = study.ask()
    for key, value in whereabouts().items():
        alive.set_user_attr(key, value)
    dead = study.ask()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead.set_user_attr("pid", int(gone.stdout))
    dead.set_user_attr("host", socket.gethostname())

    assert list(whereabouts()) == ["pid", "host"]
    assert fail_dead_trials(study) == [dead.number]
    by_number = {t.number: t.state for t in study.get_trials()}
    assert by_number == {
        claimed.number: TrialState.RUNNING,
        alive.number: TrialState.RUNNING,
        dead.number: TrialState.FAIL,
    }


def test_a_study_found_before_its_definition_is_waited_for_and_a_foreign_one_refused(tmp_path):
    """Optuna creates a study, then its attributes: a second ``tk tune`` started with the
    first can find the study without tk's definition for a moment (the CI failure of
    two processes on PostgreSQL). It waits for the definition; a study optuna made
    for something else (no definition, ever) is still refused in one line."""
    from toolkit.errors import UsageError
    from toolkit.tune import study as studies

    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    definition = studies.StudyDef(
        model="circle", base={}, space=["lr=log(0.001,0.3)"], monitor="val_loss",
        direction="minimize", trials=8,
    ).to_json()  # fmt: skip
    optuna.create_study(study_name="young", storage=storage)
    late = threading.Timer(
        0.5,
        lambda: optuna.load_study(study_name="young", storage=storage).set_user_attr(
            studies.ATTR, definition
        ),
    )
    late.start()
    try:
        found = studies.load(storage, "young", wait_s=30)
    finally:
        late.join()
    assert found is not None and found[1].to_json() == definition
    # A process that lost the race to create it gets the study as the winner defined it
    # (tk tune then refuses a different definition, as for any existing study).
    other = studies.StudyDef.from_json({**definition, "space": ["lr=log(0.01,0.1)"]})
    again = studies.create(storage, "young", other)
    assert again.user_attrs[studies.ATTR] == definition
    assert "space" in (found[1].differs(other) or "")  # what the refusal names

    optuna.create_study(study_name="foreign", storage=storage)
    with pytest.raises(UsageError, match="study 'foreign' was not made by tk tune"):
        studies.load(storage, "foreign", wait_s=0.3)


def test_tune_help_and_usage_errors_name_the_command_as_typed(capsys):
    """``tk tune MODEL`` runs a hidden ``run`` command: its usage says ``tk tune``."""
    assert tk_main("tune", "--help") == 0
    assert capsys.readouterr().out.startswith("Usage: tk tune [OPTIONS] [model]\n")
    assert tk_main("tune", "circle", "--bogus") == 2
    err = capsys.readouterr().err
    assert err.endswith("(try: tk tune --help)\n") and err.count("\n") == 1, err
