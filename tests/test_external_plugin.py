"""The example external plugin (plugins/tk-spirals) and `tk plugins check`, with real installs.

tk-spirals is its own distribution: its wheel is built from a copy of its sources,
installed into a temporary directory, and only subprocesses with that directory on
their path can see it. Nothing here registers it in-process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import REPO, build_wheel, pip_install_target, pythonpath

from toolkit import InputSpec, ModelSpec, hookimpl
from toolkit.testing import check_plugin, load_plugin

SPIRALS = REPO / "plugins" / "tk-spirals"

# A model that leaves torch in forward() (values go through Python floats): it trains,
# but no exporter can record it.
UNEXPORTABLE = """
import math

from toolkit import DatasetSpec, InputSpec, ModelSpec, Recipe, hookimpl

def load():
    import numpy as np
    x = np.random.default_rng(0).normal(size=(100, 2)).astype("float32")
    return {"train": (x[:80], (x[:80, 0] > 0)), "test": (x[80:], (x[80:, 0] > 0))}

def build():
    import torch
    from torch import nn

    class PythonMath(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, x):
            rows = [[math.tanh(v) for v in row] for row in x.tolist()]
            return self.lin(torch.tensor(rows, dtype=x.dtype))

    return PythonMath()

@hookimpl
def tk_register_models(register):
    register(ModelSpec(name="python-math", build=build, input=InputSpec((2,)),
                       task="binary", default_dataset="half-plane", recipe=Recipe(epochs=2)))

@hookimpl
def tk_register_datasets(register):
    register(DatasetSpec(name="half-plane", load=load, feature_shape=(2,), target="binary"))
"""

# Specs that do not match what the code does: a model declaring 3 input features
# but built for 2, and a dataset declaring 2 features but returning 3.
MISMATCH = """
from toolkit import DatasetSpec, InputSpec, ModelSpec, hookimpl

def load(columns=3):
    import numpy as np
    x = np.random.default_rng(0).normal(size=(50, columns)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    return {"train": (x[:40], y[:40]), "test": (x[40:], y[40:])}

def build():
    from torch import nn
    return nn.Linear(2, 1)

@hookimpl
def tk_register_models(register):
    register(ModelSpec(name="says-three", build=build, input=InputSpec((3,)),
                       task="binary", default_dataset="three-columns"))

@hookimpl
def tk_register_datasets(register):
    register(DatasetSpec(name="three-columns", load=load, feature_shape=(3,), target="binary"))
    register(DatasetSpec(name="says-two", load=load, feature_shape=(2,), target="binary"))
"""


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    # Tiny models gain nothing from intra-op threads, and on a shared 2-core runner
    # they lose a lot: threads spin-wait for cores that other processes hold.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def spirals_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tk-spirals: a wheel built with pip from its own pyproject, installed into a target."""
    root = tmp_path_factory.mktemp("tk-spirals")
    src = root / "src"
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources,
    # and the repository may be in use by other work at the same time.
    shutil.copytree(
        SPIRALS, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(root / "wheels"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((root / "wheels").glob("tk_spirals-0.1.0-*.whl"))
    return pip_install_target(wheel, root / "site")


@pytest.fixture(scope="session")
def bad_sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two installed distributions that load fine but fail the conformance check."""
    root = tmp_path_factory.mktemp("bad-plugins")
    out = {}
    for key, dist, module, src in [
        ("unexportable", "tk-test-unexportable", "tk_test_unexportable", UNEXPORTABLE),
        ("mismatch", "tk-test-mismatch", "tk_test_mismatch", MISMATCH),
    ]:
        wheel = build_wheel(root / "wheels", dist, "0.2.0", {f"{module}.py": src}, {key: module})
        out[key] = pip_install_target(wheel, root / key)
    return out


def test_discovered_through_its_entry_point(tk, spirals_site):
    # Only the subprocesses see the plugin: this process never imported or registered it.
    assert importlib.util.find_spec("tk_spirals") is None
    env = pythonpath(spirals_site)
    plugins = {p["entry_point"]: p for p in json.loads(tk("plugins", "--json", env=env).out)}
    row = plugins["spirals"]
    assert (row["distribution"], row["version"], row["module"], row["status"]) == (
        "tk-spirals",
        "0.1.0",
        "tk_spirals",
        "ok",
    )
    assert row["models"] == ["spiral-mlp", "bars-cnn"]
    assert row["datasets"] == ["spirals", "bars"]

    listed = tk("list", "models", env=env)
    assert listed.code == 0 and listed.err == ""
    rows = {line.split()[0]: line.split() for line in listed.out.splitlines()[1:]}
    assert rows["bars-cnn"][:5] == ["bars-cnn", "multiclass", "1x16x16", "bars", "tk-spirals"]
    assert rows["spiral-mlp"][:5] == ["spiral-mlp", "multiclass", "2", "spirals", "tk-spirals"]
    assert "circle" in rows  # the built-ins are still there

    info = json.loads(tk("info", "bars-cnn", "--json", env=env).out)
    assert info["tolerance"] == {"atol": 1e-4, "rtol": 1e-3}
    assert info["input"] == {"name": "image", "shape": ["batch", 1, 16, 16], "dtype": "float32"}


def test_train_export_verify_through_the_cli(tk, spirals_site):
    env = pythonpath(spirals_site)
    # Its own tracker, given an option with --tracker-param as any tracker is.
    trained = tk("train", "spiral-mlp", "--epochs", "40", "--name", "cli", "--tracker", "jsonl",
                 "--tracker-param", "jsonl.path=events.jsonl", env=env)  # fmt: skip
    assert trained.code == 0, trained.err
    run = tk.cwd / "runs" / "spiral-mlp" / "cli"
    events = [json.loads(x) for x in (tk.cwd / "events.jsonl").read_text().splitlines()]
    assert events[0] == {"event": "start", "model": "spiral-mlp"}
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == list(range(1, 41))
    assert events[-1] == {"event": "finish", "status": "finished"}
    config = json.loads((run / "config.json").read_text())
    assert config["versions"]["model_plugin"]["distribution"] == "tk-spirals"
    assert config["versions"]["dataset_plugin"]["version"] == "0.1.0"

    exported = tk("export", "--format", "all", env=env)
    assert exported.code == 0, exported.err
    files = [run / "model.onnx", run / "model.torchscript.pt", run / "model.pt2"]
    assert all(f.is_file() for f in files), exported.out
    for f in files:
        verified = tk("verify", str(f), env=env)
        assert verified.code == 0, f"{f.name}: {verified.out}{verified.err}"
        assert "PASS" in verified.out


def test_plugins_check_passes_for_every_model(tk, spirals_site):
    res = tk("plugins", "check", "tk-spirals", env=pythonpath(spirals_site))
    assert res.code == 0, res.out + res.err
    lines = res.out.splitlines()
    for model in ("spiral-mlp", "bars-cnn"):
        for step in ("input", "train", "export onnx", "verify torchscript", "verify pt2"):
            assert any(
                line.split()[:2] == ["ok", "model"] and model in line and step in line
                for line in lines
            ), f"no passing '{step}' line for {model}:\n{res.out}"
    assert lines[-1].startswith("tk-spirals: all 19 checks passed")


def test_plugins_check_fails_on_a_model_that_does_not_export(tk, bad_sites):
    res = tk("plugins", "check", "tk-test-unexportable", env=pythonpath(bad_sites["unexportable"]))
    assert res.code == 1
    failed = [line for line in res.out.splitlines() if line.startswith("FAILED")]
    assert [line.split()[3:5] for line in failed] == [
        ["export", "onnx"],
        ["export", "torchscript"],
        ["export", "pt2"],
    ]
    err = res.err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(
        "tk: error: tk-test-unexportable: 3 of 7 checks failed; "
        "first: model 'python-math' export onnx: cannot export"
    )
    assert err[0].endswith("(try: fix the plugin, then tk plugins check tk-test-unexportable)")


def test_plugins_check_fails_on_specs_that_do_not_match_the_code(tk, bad_sites):
    res = tk("plugins", "check", "mismatch", env=pythonpath(bad_sites["mismatch"]))
    assert res.code == 1
    failed = {line.split()[2]: line for line in res.out.splitlines() if line.startswith("FAILED")}
    assert set(failed) == {"says-two", "says-three"}
    assert "features have shape (3,), the spec declares (2,)" in failed["says-two"]
    assert "cannot take its declared input of shape (batch, 3)" in failed["says-three"]
    assert "tk: error: tk-test-mismatch" not in res.err  # named as the user named it
    assert res.err.startswith("tk: error: mismatch: 2 of 4 checks failed")


def test_plugins_check_unknown_name_is_a_usage_error(tk, spirals_site):
    res = tk("plugins", "check", "tk-spiral", env=pythonpath(spirals_site))
    assert res.code == 2
    assert res.err.strip() == (
        "tk: error: no installed plugin named 'tk-spiral'; did you mean 'tk-spirals'? "
        "(try: pip install -e <plugin directory>, then tk plugins)"
    )


def test_three_broken_distributions_at_once(tk, plugin_site, spirals_site):
    """Import error, raising hook and a clash with a built-in, all installed together."""
    env = pythonpath(
        plugin_site["broken-import"],
        plugin_site["broken-hook"],
        plugin_site["duplicate"],
        spirals_site,
    )
    listed = tk("list", "models", env=env)
    assert listed.code == 0
    names = {line.split()[0] for line in listed.out.splitlines()[1:]}
    assert {"circle", "circle-v0", "circle-v1", "circle-v2", "spiral-mlp", "bars-cnn"} <= names
    circle = next(line for line in listed.out.splitlines() if line.startswith("circle "))
    assert "tk-torch" in circle
    warnings = [line for line in listed.err.splitlines() if line.startswith("tk: warning")]
    assert len(warnings) == 3, listed.err
    for dist, error in [
        ("tk-test-broken-import 0.3.1", "RuntimeError: boom at import"),
        ("tk-test-broken-hook 0.3.1", "ValueError: hook exploded"),
        ("tk-test-duplicate 0.3.1", "model 'circle' is registered by both tk-torch and"),
    ]:
        assert any(dist in w and error in w for w in warnings), (dist, listed.err)

    table = tk("plugins", env=env)
    assert table.code == 0
    rows = {line.split()[0]: line for line in table.out.splitlines()[1:]}
    assert "failed: RuntimeError: boom at import" in rows["broken"]
    assert "failed: ValueError: hook exploded" in rows["brokenhook"]
    assert "failed: PluginError: model 'circle' is registered by both" in rows["dup"]
    assert " ok " in rows["spirals"] and " ok " in rows["circle"]

    # The conformance check reports a plugin that cannot load as a failed check.
    checked = tk("plugins", "check", "tk-test-broken-import", env=env)
    assert checked.code == 1
    assert "RuntimeError: boom at import" in checked.err


# ------------------------------------------------------------ in-process helpers
def _undecorated(register):
    raise AssertionError("never called: not a hookimpl")


@hookimpl
def _typo(register):
    raise AssertionError("never called: not a hook name")


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (
            types.SimpleNamespace(tk_register_models=_undecorated),
            "'tk_register_models' is not decorated with @hookimpl, so tk never calls it",
        ),
        (
            types.SimpleNamespace(tk_register_model=_typo),
            "'tk_register_model' is not a tk hook (known: tk_register_datasets, "
            "tk_register_formats, tk_register_models, tk_register_trackers)",
        ),
    ],
)
def test_check_names_hook_mistakes_pluggy_would_ignore(plugin, message):
    report = check_plugin(plugin, builtins=False)
    assert not report.ok
    assert [(c.kind, c.step) for c in report.checks] == [("plugin", "load")]
    assert message in report.checks[0].detail


def test_load_plugin_takes_a_module_object():
    @hookimpl
    def tk_register_models(register):
        register(ModelSpec(name="m1", build=lambda: None, input=InputSpec((2,)), task="binary"))

    plugin = load_plugin(types.SimpleNamespace(tk_register_models=tk_register_models))
    assert plugin.models == ["m1"] and plugin.datasets == []
    assert "circle" in plugin.registry.models  # the built-ins come along by default
    assert plugin.label == "SimpleNamespace (in-process)"


def test_the_plugins_own_tests_pass_against_its_installed_wheel(spirals_site, tmp_path):
    """plugins/tk-spirals/tests, collected: run as its README says, with the wheel installed.

    Its ``test_conformance`` is ``tk plugins check tk-spirals``, which
    test_plugins_check_passes_for_every_model runs already; it is deselected here so the
    suite does not pay for the same 19 checks twice.
    """
    shutil.copytree(SPIRALS / "tests", tmp_path / "tests")
    env = {**os.environ, **pythonpath(spirals_site), "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
         "--deselect", "tests/test_tk_spirals.py::test_conformance"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 passed, 1 deselected" in res.stdout
