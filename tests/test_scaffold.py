"""`tk new-plugin`: the generated package, really installed, lists, trains and passes its tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import run_tk

from toolkit.errors import UsageError
from toolkit.scaffold import names_for, new_plugin


def _pip_install_editable(package: Path, target: Path) -> None:
    """``pip install -e`` offline into ``target`` (no deps: tk is already importable)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            "-e",
            str(package),
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    # Tiny models gain nothing from intra-op threads, and on a shared 2-core runner
    # they lose a lot: threads spin-wait for cores that other processes hold.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``tk new-plugin tk-hello`` through the real CLI, then ``pip install -e`` of it."""
    root = tmp_path_factory.mktemp("scaffold")
    res = run_tk("new-plugin", "tk-hello", cwd=root)
    assert res.code == 0, res.err
    package = root / "tk-hello"
    site = root / "site"
    _pip_install_editable(package, site)
    # An editable install puts a .pth file in `site`; Python reads .pth files only in
    # site-packages, not in PYTHONPATH entries, so the source directory (what the
    # .pth file would add) goes on the path too. The entry point comes from `site`.
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(package)])}
    return {"root": root, "package": package, "site": site, "env": env, "out": res.out}  # type: ignore[dict-item]


def test_generated_package_layout(hello):
    package = hello["package"]
    files = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    written = [f for f in files if not f.startswith(("build/", "tk_hello.egg-info/"))]
    assert written == [
        "README.md",
        "pyproject.toml",
        "tests/test_tk_hello.py",
        "tk_hello/__init__.py",
    ]
    pyproject = tomllib.loads((package / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "tk-hello"
    assert pyproject["project"]["entry-points"]["tk"] == {"hello": "tk_hello"}
    assert "tk train hello-mlp" in hello["out"] and "pip install -e ." in hello["out"]


def test_installed_scaffold_is_listed_and_trains(hello):
    env = hello["env"]
    listed = run_tk("list", "models", "--json", cwd=hello["root"], env=env)
    assert listed.code == 0, listed.err
    row = next(m for m in json.loads(listed.out) if m["name"] == "hello-mlp")
    assert row["plugin"] == "tk-hello" and row["dataset"] == "hello-blobs"

    trained = run_tk("train", "hello-mlp", "--name", "first", cwd=hello["root"], env=env)
    assert trained.code == 0, trained.err
    assert "Done: 60 epochs" in trained.out
    summary = json.loads((hello["root"] / "runs/hello-mlp/first/summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.9


def test_generated_tests_pass(hello):
    """The package's own tests, including tk's conformance check (train, export, verify)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TK_")}
    env.update(hello["env"])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=hello["package"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout


def test_new_plugin_refuses_an_existing_directory(tk):
    existing = tk.cwd / "tk-taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    res = tk("new-plugin", "tk-taken")
    assert res.code == 2
    assert res.err.strip().splitlines() == [
        f"tk: error: {Path('tk-taken')} already exists; tk new-plugin never overwrites files "
        "(try: tk new-plugin tk-taken --dir <new directory>)"
    ]
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    assert tk("new-plugin", "tk-other", "--dir", "tk-taken").code == 2


def test_new_plugin_into_an_empty_directory(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    files = new_plugin("tk-empty-ok", target)
    assert (target / "tk_empty_ok" / "__init__.py") in files


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Bad Name", "invalid plugin name"),
        ("9lives", "invalid plugin name"),
        ("tk--double", "invalid plugin name"),
        ("class", "a Python keyword"),
        ("toolkit", "module named 'toolkit' is already importable"),
    ],
)
def test_new_plugin_rejects_bad_names(tmp_path, name, message):
    with pytest.raises(UsageError, match=message):
        new_plugin(name, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_names_drop_the_tk_prefix():
    n = names_for("tk-hello")
    assert (n.dist, n.package, n.entry_point, n.model, n.dataset) == (
        "tk-hello",
        "tk_hello",
        "hello",
        "hello-mlp",
        "hello-blobs",
    )
    assert names_for("acme").model == "acme-mlp"
