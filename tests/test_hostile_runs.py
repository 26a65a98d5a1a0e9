"""Hostile inputs against "never lose a user's work" and "run references stay in the runs root".

Every case asserts the exit code, one ``tk: error:`` line without a traceback, and
that nothing changed outside the files it expects (``tests/hostile.py``). tk runs in
this process except where the process boundary is the point: a second writer while
a real training runs, Ctrl-C, a SIGKILL in the middle of a write.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tk_main
from hostile import assert_one_line, assert_unchanged, run, snapshot

from toolkit import checkpoint, runs
from toolkit.runs.lock import LOCK
from toolkit.testing import popen_tk, wait_for_checkpoint

TS = "model.torchscript.pt"
EXPORT = ("--format", "torchscript", "--no-verify")  # the fastest export: ~0.1 s


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished circle run (3 epochs, its final checkpoint) with a TorchScript export."""
    root = tmp_path_factory.mktemp("hostile-runs") / "runs"
    assert (
        tk_main("train", "circle", "--epochs", "3", "--runs-dir", str(root), "--name", "done", "-q")
        == 0
    )
    run_dir = root / "circle" / "done"
    assert tk_main("export", str(run_dir), *EXPORT, "--runs-dir", str(root)) == 0
    return run_dir


def copy_run(trained: Path, root: Path, name: str = "done") -> Path:
    """A private copy of the trained run at ``root/circle/NAME`` (the manifest is relative)."""
    dest = root / "circle" / name
    shutil.copytree(trained, dest, symlinks=True)
    return dest


@pytest.fixture
def points(tmp_path: Path) -> Path:
    p = tmp_path / "points.csv"
    p.write_text("0.1,0.2\n0.5,-0.3\n")
    return p


# ------------------------------------------------ --overwrite replaces runs only
def _train_over(capsys, root: Path, target: Path, *more: str):
    """``tk train circle --epochs 2 --runs-dir ROOT --out TARGET --overwrite``."""
    return run(capsys, "train", "circle", "--epochs", "2", "--runs-dir", str(root),
               "--out", str(target), "--overwrite", *more)  # fmt: skip


def _refused_overwrite(
    capsys, tmp_path: Path, target: Path, *needles: str, root=None, verb="refusing to replace"
) -> None:
    root = root or tmp_path / "runs"
    before = snapshot(tmp_path)
    out = _train_over(capsys, root, target)
    assert_one_line(out, 2, verb, *needles)
    assert_unchanged(before, snapshot(tmp_path))


def test_overwrite_refuses_a_folder_of_theses(capsys, tmp_path):
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("\\chapter{Five years}")
    (thesis / "chapters" / "one.tex").write_text("...")
    _refused_overwrite(capsys, tmp_path, thesis, "not a tk run directory")


def test_overwrite_refuses_a_folder_faking_a_config(capsys, tmp_path):
    fake = tmp_path / "project"
    fake.mkdir()
    (fake / "config.json").write_text('{"debug": true}')
    (fake / "status.json").write_text('{"ok": 1}')
    (fake / "main.py").write_text("print('mine')")
    _refused_overwrite(capsys, tmp_path, fake, "not a tk run directory")


def test_overwrite_refuses_the_working_directory(capsys, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.md").write_text("mine")
    monkeypatch.chdir(work)
    _refused_overwrite(capsys, tmp_path, Path("."), "working directory")


def test_overwrite_refuses_the_runs_root(capsys, tmp_path, trained):
    root = tmp_path / "runs"
    copy_run(trained, root)
    _refused_overwrite(capsys, tmp_path, root, "the runs root")


def test_overwrite_refuses_a_parent_of_the_runs_root(capsys, tmp_path, trained):
    root = tmp_path / "lab" / "runs"
    copy_run(trained, root)
    _refused_overwrite(
        capsys, tmp_path, tmp_path / "lab", "a folder above the runs root", root=root
    )


def test_overwrite_refuses_the_home_directory(capsys, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("export PATH")
    monkeypatch.setenv("HOME", str(home))
    _refused_overwrite(capsys, tmp_path, home, "home directory")


def test_overwrite_refuses_a_file(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    # Found while planning, before --overwrite is considered (tests/test_hostile_cli.py).
    _refused_overwrite(capsys, tmp_path, notes, "is a file, not a run directory", verb="--out")


def test_overwrite_refuses_a_symlink_to_a_run(capsys, tmp_path, trained):
    target = copy_run(trained, tmp_path / "runs")
    link = tmp_path / "link"
    link.symlink_to(target)
    _refused_overwrite(capsys, tmp_path, link, "symlink")


def test_name_overwrite_refuses_a_folder_that_is_not_a_run(capsys, tmp_path):
    mine = tmp_path / "runs" / "circle" / "mine"
    mine.mkdir(parents=True)
    (mine / "data.csv").write_text("a,b\n1,2\n")
    before = snapshot(tmp_path)
    out = run(
        capsys,
        "train",
        "circle",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        "mine",
        "--overwrite",
    )
    assert_one_line(out, 2, "refusing to replace", "not a tk run directory")
    assert_unchanged(before, snapshot(tmp_path))


def test_overwrite_replaces_a_tk_run_directory(capsys, tmp_path, trained):
    root = tmp_path / "runs"
    old = copy_run(trained, root)
    out = _train_over(capsys, root, old, "-q")
    assert out.code == 0, out.err
    assert json.loads((old / "summary.json").read_text())["epochs"] == 2
    assert not (old / TS).exists()  # the old run's files went with it


def test_export_overwrite_refuses_a_file_tk_did_not_write(capsys, tmp_path, trained):
    run_dir = copy_run(trained, tmp_path / "runs")
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"my own model, not tk's")
    before = snapshot(tmp_path)
    out = run(capsys, "export", str(run_dir), *EXPORT, "--out", str(mine), "--overwrite")
    assert_one_line(out, 2, "refusing to replace", "not a file tk exported")
    assert_unchanged(before, snapshot(tmp_path))


# ----------------------------------------- references never leave the runs root
OUTSIDE = {
    "export latest": ["export", "latest", *EXPORT],
    "export RUNS/latest": ["export", "{root}/latest", *EXPORT],
    "train --resume latest": ["train", "--resume", "latest", "--epochs", "9"],
    "predict latest": ["predict", "latest", "--input", "{points}"],
    "verify --run latest": ["verify", "{root}/circle/mine/" + TS, "--run", "latest"],
    "verify RUNS/latest/FILE": ["verify", "{root}/latest/" + TS],
    "bench RUNS/latest/FILE": ["bench", "{root}/latest/" + TS],
    "plot latest": ["plot", "latest"],
    "runs show latest": ["runs", "show", "latest"],
    "runs compare latest": ["runs", "compare", "latest", "circle/mine"],
    "runs rm latest": ["runs", "rm", "latest", "--yes"],
    "export MODEL/NAME symlinked out": ["export", "circle/link", *EXPORT],
    "train --resume MODEL/NAME symlinked out": [
        "train",
        "--resume",
        "circle/link",
        "--epochs",
        "9",
    ],
}


@pytest.mark.parametrize("case", list(OUTSIDE))
def test_references_leading_outside_the_runs_root_are_refused(
    capsys, tmp_path, trained, points, case
):
    root = tmp_path / "runs"
    copy_run(trained, root, "mine")
    victim = copy_run(trained, tmp_path / "victim")  # a real run, elsewhere: never touched
    (root / runs.LATEST).symlink_to(victim)
    (root / "circle" / "link").symlink_to(victim)
    args = [a.format(root=root, points=points) for a in OUTSIDE[case]]
    before = snapshot(tmp_path)
    out = run(capsys, *args, "--runs-dir", str(root))
    assert_one_line(out, 2, "outside the runs root")
    assert_unchanged(before, snapshot(tmp_path))


# ------------------------------------------------------------ one writer at a time
@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, trained: Path):
    """A real ``tk train`` writing ``runs/circle/live``, beside a finished older run."""
    root = tmp_path_factory.mktemp("live") / "runs"
    older = copy_run(trained, root, "older")
    (root / runs.LATEST).symlink_to("circle/older")
    run_dir = root / "circle" / "live"
    args = ["train", "circle", "--epochs", "1000000", "--checkpoint-every", "200", "-q"]
    proc = popen_tk([*args, "--runs-dir", str(root), "--name", "live"], root.parent)
    try:
        assert wait_for_checkpoint(run_dir, proc), proc.communicate()[1] if proc.poll() else "slow"
        yield proc, root, run_dir, older
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


SECOND_WRITERS = {
    "train --overwrite": ["train", "circle", "--name", "live", "--overwrite"],
    "train --resume": ["train", "--resume", "circle/live"],
    "train --resume latest": ["train", "--resume", "latest"],
    "export": ["export", "circle/live", *EXPORT],
    "runs rm": ["runs", "rm", "circle/live", "--yes"],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SECOND_WRITERS))
def test_a_second_writer_is_refused_naming_the_pid(capsys, live, case):
    proc, root, run_dir, _ = live
    assert proc.poll() is None
    config = runs.sha256_file(run_dir / runs.CONFIG)
    out = run(capsys, *SECOND_WRITERS[case], "--runs-dir", str(root))
    assert_one_line(out, 2, f"pid {proc.pid}")
    assert runs.sha256_file(run_dir / runs.CONFIG) == config and proc.poll() is None


@pytest.mark.slow
def test_latest_is_the_run_cut_off_and_resuming_it_leaves_the_older_run_alone(capsys, live):
    proc, root, run_dir, older = live
    # latest moved when the run started, not when it finishes
    assert runs.resolve_run(runs.LATEST, root).resolve() == run_dir.resolve()
    listed = json.loads(run(capsys, "runs", "--json", "--runs-dir", str(root)).out)
    assert {r["run"]: r["status"] for r in listed} == {
        "circle/older": "finished",
        "circle/live": "running",
    }
    before = snapshot(older)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    done = checkpoint.load(checkpoint.list_checkpoints(run_dir)[-1]).epoch
    out = run(
        capsys,
        "train",
        "--resume",
        "latest",
        "--epochs",
        str(done + 1),
        "-q",
        "--runs-dir",
        str(root),
    )
    assert out.code == 0, out.err
    assert json.loads((run_dir / runs.SUMMARY).read_text())["epochs"] == done + 1
    assert_unchanged(before, snapshot(older))


def test_a_dead_writers_pid_in_status_json_is_not_a_live_run(capsys, tmp_path, trained):
    """pid reuse: status.json says running with a live pid (this one), but nobody holds the lock."""
    root = tmp_path / "runs"
    run_dir = copy_run(trained, root)
    status = json.loads((run_dir / runs.STATUS).read_text())
    runs.atomic_write_json(
        run_dir / runs.STATUS, {**status, "status": "running", "pid": os.getpid()}
    )
    listed = json.loads(run(capsys, "runs", "--json", "--runs-dir", str(root)).out)
    assert [r["status"] for r in listed] == ["finished"]  # summary.json was written: it finished
    out = run(capsys, "runs", "rm", "circle/done", "--yes", "--runs-dir", str(root))
    assert out.code == 0, out.err
    assert not run_dir.exists()


def test_a_symlink_planted_as_the_lock_file_is_never_followed(capsys, tmp_path, trained):
    run_dir = copy_run(trained, tmp_path / "runs")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run_dir / LOCK).unlink()
    (run_dir / LOCK).symlink_to(victim)
    before = snapshot(tmp_path)
    out = run(capsys, "export", str(run_dir), *EXPORT, "--runs-dir", str(tmp_path / "runs"))
    assert_one_line(out, 2, "cannot lock run directory")
    assert_unchanged(before, snapshot(tmp_path))


# --------------------------------------------------------------- finished runs
def test_resuming_a_finished_run_is_refused_saying_how_to_extend_it(capsys, tmp_path, trained):
    root = tmp_path / "runs"
    run_dir = copy_run(trained, root)
    before = snapshot(tmp_path)
    out = run(capsys, "train", "--resume", str(run_dir), "--runs-dir", str(root))
    line = assert_one_line(out, 2, "is a finished run (3 epochs)", "--epochs N, with N above 3")
    assert "failed" not in line
    assert_unchanged(before, snapshot(tmp_path))


def test_a_finished_run_is_extended_with_more_epochs(capsys, tmp_path, trained):
    root = tmp_path / "runs"
    run_dir = copy_run(trained, root)
    out = run(
        capsys, "train", "--resume", str(run_dir), "--epochs", "5", "-q", "--runs-dir", str(root)
    )
    assert out.code == 0, out.err
    assert json.loads((run_dir / runs.SUMMARY).read_text())["epochs"] == 5


# ------------------------------------------------------------ edited run files
def _edit_lr(run_dir: Path) -> None:
    config = json.loads((run_dir / runs.CONFIG).read_text())
    config["recipe"]["lr"] = 0.5
    (run_dir / runs.CONFIG).write_text(json.dumps(config, indent=2))


@pytest.mark.parametrize("command", ["resume", "export"])
def test_an_edited_config_is_refused_naming_it(capsys, tmp_path, trained, command):
    root = tmp_path / "runs"
    run_dir = copy_run(trained, root)
    _edit_lr(run_dir)
    before = snapshot(tmp_path)
    if command == "resume":
        args = ["train", "--resume", str(run_dir), "--epochs", "5"]
    else:
        args = ["export", str(run_dir), *EXPORT, "--out", str(tmp_path / "out.pt")]
    out = run(capsys, *args, "--runs-dir", str(root))
    assert_one_line(out, 3, str(run_dir / runs.CONFIG), "does not match its sha256")
    assert_unchanged(before, snapshot(tmp_path))  # status.json still says finished


@pytest.mark.parametrize("command", ["export", "predict", "verify"])
def test_flipped_weights_without_a_manifest_are_refused(capsys, tmp_path, trained, points, command):
    root = tmp_path / "runs"
    run_dir = copy_run(trained, root)
    (run_dir / "manifest.json").unlink()
    weights = bytearray((run_dir / runs.WEIGHTS).read_bytes())
    weights[-1] ^= 0x01  # one bit of one weight: still a loadable safetensors file
    (run_dir / runs.WEIGHTS).write_bytes(bytes(weights))
    args = {
        "export": ["export", str(run_dir), *EXPORT, "--out", str(tmp_path / "out.pt")],
        "predict": ["predict", str(run_dir), "--input", str(points)],
        # the file's own sha256 check passes (its run lost its manifest): the run's weights do not
        "verify": ["verify", str(run_dir / TS), "--run", str(run_dir)],
    }[command]
    before = snapshot(tmp_path)
    out = run(capsys, *args, "--runs-dir", str(root))
    if command == "verify":  # verify compares the file's recorded weights sha256 first
        assert_one_line(out, 2, "holds different weights")
    else:
        assert_one_line(out, 3, "summary.json", "manifest.json is missing")
    assert_unchanged(before, snapshot(tmp_path))


def test_resume_without_a_manifest_is_refused_and_deletes_no_checkpoint(capsys, tmp_path, trained):
    root = tmp_path / "runs"
    run_dir = copy_run(trained, root)
    (run_dir / "manifest.json").unlink()
    before = snapshot(tmp_path)
    out = run(capsys, "train", "--resume", str(run_dir), "--epochs", "5", "--runs-dir", str(root))
    assert_one_line(out, 3, "manifest.json is missing")
    assert_unchanged(before, snapshot(tmp_path))


# -------------------------------------------------- temp files of a killed writer
SLOW_DISK = """
import os, sys, time
os.fsync = lambda fd: time.sleep(600)  # a disk that never finishes: the write stays open
from toolkit import integrity
integrity.record(sys.argv[1], os.path.join(sys.argv[1], "model.safetensors"))
"""


def _writer_with_open_temp(run_dir: Path) -> tuple[subprocess.Popen, Path]:
    """A process inside tk's own atomic write of ``manifest.json``, and its temp file."""
    proc = subprocess.Popen([sys.executable, "-c", SLOW_DISK, str(run_dir)])
    deadline = time.time() + 60
    while time.time() < deadline:
        temps = list(run_dir.glob(f".manifest.json.tmp-{proc.pid}-*"))
        if temps:
            return proc, temps[0]
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the writer never opened its temp file")


@pytest.mark.slow
def test_a_killed_writers_temp_is_cleaned_by_the_next_writer_a_live_ones_kept(
    capsys, tmp_path, trained
):
    run_dir = copy_run(trained, tmp_path / "runs")
    dead, dead_tmp = _writer_with_open_temp(run_dir)
    dead.send_signal(signal.SIGKILL)  # in the middle of the write
    dead.wait()
    live, live_tmp = _writer_with_open_temp(run_dir)
    try:
        assert dead_tmp.exists()
        out = run(capsys, "export", str(run_dir), *EXPORT, "--out", str(tmp_path / "x.pt"))
        assert out.code == 0, out.err
        assert not dead_tmp.exists()  # a dead writer's leftovers: cleaned
        assert live_tmp.exists()  # a live writer's temp file: never touched
    finally:
        live.kill()
        live.wait()
