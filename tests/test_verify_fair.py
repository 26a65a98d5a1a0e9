"""Verification that judges fairly: the run's recorded tolerance, a float64 reference on
the out-of-distribution inputs, and `tk plugins check` naming the task's own metric."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
import torch
from conftest import quiet
from fixtures.export_models import train_run

from toolkit.export import export_run
from toolkit.formats import Runner
from toolkit.formats.runtime import eager_runner
from toolkit.hookspecs import hookimpl
from toolkit.plugins import load_plugins
from toolkit.registry import InputSpec, ModelSpec, Tolerance
from toolkit.testing import check_plugin
from toolkit.trust import read_metadata
from toolkit.verify import run_checks, verify_file
from toolkit.verify.reference import float64_runner


@pytest.fixture(scope="module")
def circle_run(tmp_path_factory):
    registry = load_plugins(warn=False).registry
    return train_run(registry, "circle", tmp_path_factory.mktemp("fair") / "runs", epochs=20)


def test_the_tolerance_recorded_with_the_run_is_applied_and_a_change_is_named(circle_run, tmp_path):
    # The plugin was upgraded after training and now declares a looser tolerance.
    registry = load_plugins(warn=False).registry
    spec = registry.models["circle"]
    registry.models["circle"] = dataclasses.replace(spec, tolerance=Tolerance(0.5, 0.25))
    errors: list[str] = []
    (result,) = export_run(
        circle_run, "onnx", out=tmp_path / "m.onnx", registry=registry,
        echo=quiet, echo_err=errors.append,
    )  # fmt: skip
    assert result.written and result.verify.atol == 1e-5 and result.verify.rtol == 1e-4
    assert read_metadata(result.path)["tolerance"] == {"atol": 1e-5, "rtol": 1e-4}
    named = [e for e in errors if "atol 0.5 rtol 0.25" in e]
    assert len(named) == 1 and "recorded atol 1e-05 rtol 0.0001" in named[0], errors

    report = verify_file(result.path, run=circle_run, registry=registry)
    assert (report.atol, report.rtol) == (1e-5, 1e-4)
    assert any("atol 0.5 rtol 0.25" in n and "atol 1e-05" in n for n in report.notes)
    assert "which is the one applied" in report.text()
    # An explicit tolerance still wins, and an unchanged plugin says nothing.
    assert verify_file(result.path, run=circle_run, registry=registry, atol=0.1).atol == 0.1
    plain = verify_file(result.path, run=circle_run, registry=load_plugins(warn=False).registry)
    assert not any("plugin now declares" in n for n in plain.notes)


class Cancels(torch.nn.Module):
    """``(x**3 + 0.1) - x**3``: 0.1, but float32 loses it once x**3 is large."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cube = x * x * x
        return (cube + 0.1) - cube


def test_out_of_distribution_inputs_are_judged_against_float64():
    model = Cancels().eval()
    # A runtime nearer the truth than float32 eager (as onnxruntime's fused kernels
    # can be): it returns the exact answer, rounded once to float32.
    exact = float64_runner(model)
    nearer = Runner("nearer-runtime", lambda x: [o.astype(np.float32) for o in exact.run(x)])
    kw = dict(input_shape=[3], task="regression", batch_sizes=[64], atol=1e-5, rtol=1e-4)
    kw["heldout"] = None
    before = run_checks([nearer], eager_runner(model), **kw)
    failed = {c.inputs for c in before if not c.passed}
    assert failed == {"ood-large", "ood-negative"}  # float32 eager's own error, blamed on it

    notes: list[str] = []
    after = run_checks([nearer], eager_runner(model), reference64=exact, notes=notes, **kw)
    assert all(c.passed for c in after) and not notes
    assert {c.inputs: c.reference for c in after} == {
        "random": "eager",
        "ood-large": "eager-float64",
        "ood-negative": "eager-float64",
    }
    assert all(c.expected_dtype == "float32" for c in after)  # dtype still float32 eager's
    # A file that is wrong stays wrong against float64.
    wrong = Runner("wrong", lambda x: [o + np.float32(0.5) for o in nearer.run(x)])
    judged = run_checks([wrong], eager_runner(model), reference64=exact, **kw)
    assert not any(c.passed for c in judged)
    assert {c.inputs: c.reference for c in judged}["ood-large"] == "eager-float64"


def test_a_file_that_matches_float32_eager_never_pays_for_float64(circle_run):
    registry = load_plugins(warn=False).registry
    (result,) = export_run(circle_run, "onnx", registry=registry, echo=quiet, echo_err=quiet)
    report = verify_file(result.path, registry=registry, batch_sizes=[7])
    assert report.passed, report.summary()
    assert {c["reference"] for c in report.to_json()["checks"]} == {"eager"}


class Float32Only(Cancels):
    """Cancels, plus a float32 tensor of its own: its float64 copy cannot run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + x @ torch.zeros(3, 3)


def test_a_model_float64_breaks_keeps_the_float32_verdict_with_a_note():
    model = Float32Only().eval()
    exact = float64_runner(Cancels().eval())
    nearer = Runner("nearer-runtime", lambda x: [o.astype(np.float32) for o in exact.run(x)])
    notes: list[str] = []
    checks = run_checks(
        [nearer], eager_runner(model), input_shape=[3], task="regression",
        batch_sizes=[64, 7], atol=1e-5, rtol=1e-4, heldout=None,
        reference64=float64_runner(model), notes=notes,
    )  # fmt: skip
    assert {c.inputs for c in checks if not c.passed} == {"ood-large", "ood-negative"}
    assert {c.reference for c in checks} == {"eager"}
    assert len(notes) == 1 and notes[0].startswith("no float64 reference (RuntimeError"), notes
    assert notes[0].endswith("out-of-distribution inputs judged against float32 eager only")


@hookimpl
def tk_register_models(register):
    register(
        ModelSpec(
            name="tiny-classifier",
            build=lambda: torch.nn.Linear(2, 1),
            input=InputSpec((2,)),
            task="binary",
            default_dataset="circles",
        )
    )


def test_plugins_check_prints_the_classifiers_accuracy(tmp_path):
    plugin = types.SimpleNamespace(tk_register_models=tk_register_models)
    report = check_plugin(plugin, formats=(), workdir=tmp_path)
    assert report.ok, report.format()
    (trained,) = [c for c in report.checks if c.step == "train"]
    assert "test accuracy" in trained.detail and "MAE" not in trained.detail, trained.detail


def test_verify_says_when_float64_judged(circle_run):
    from toolkit import runs
    from toolkit.verify import verify_loaded

    exact = float64_runner(Cancels().eval())
    nearer = Runner("nearer-runtime", lambda x: [o.astype(np.float32) for o in exact.run(x)])
    meta = {"input": {"shape": ["batch", 3]}, "task": "regression", "format": "test"}
    report = verify_loaded(
        [nearer], meta, runs.open_run(circle_run), path="cancels", batch_sizes=[64],
        atol=None, rtol=None, registry=load_plugins(warn=False).registry,
        model=Cancels().eval(), heldout=None,
    )  # fmt: skip
    assert report.passed, report.summary()
    (said,) = [n for n in report.notes if "float64" in n]
    assert said.startswith("2 out-of-distribution checks failed against float32 eager")
    assert "note: 2 out-of-distribution checks" in report.text()
