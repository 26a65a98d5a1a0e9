"""``tk new-plugin NAME``: write a pip-installable plugin package that works as generated.

The package has a pyproject with the ``tk`` entry point, one module registering a
small MLP and a synthetic dataset, a conformance test and a README::

    tk-hello/
        pyproject.toml
        README.md
        tk_hello/__init__.py
        tests/test_tk_hello.py

Then ``pip install -e tk-hello`` makes ``tk list models`` show ``hello-mlp``,
``tk train hello-mlp`` trains it and ``pytest`` in the package passes.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from toolkit import __version__
from toolkit.errors import UsageError

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")

PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A tk plugin: the $model model and the $dataset dataset."
readme = "README.md"
requires-python = ">=3.10"
# tk-torch is tk itself; install this package into the environment tk runs in.
dependencies = ["tk-torch>=$tk_version", "numpy"]

[project.optional-dependencies]
test = ["pytest"]

# This is what makes it a tk plugin: tk loads every module named in this group.
[project.entry-points.tk]
$entry_point = "$package"

[tool.setuptools]
packages = ["$package"]
""")

MODULE = Template('''\
"""tk plugin $dist: the $model model and the $dataset dataset.

tk finds this module through the entry point in pyproject.toml
([project.entry-points.tk]) and calls its @hookimpl functions. Nothing here imports
torch when the module is imported, so `tk list models` stays fast: the factories
import it when a command needs a model.
"""

from toolkit import DatasetSpec, InputSpec, ModelSpec, Param, Recipe, hookimpl

CLASSES = ("left", "right", "top")


def load_blobs(n_samples: int = 600, seed: int = 0):
    """Three Gaussian blobs in the plane: 80% train, 20% test."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], dtype="float32")
    y = rng.integers(0, len(CLASSES), size=n_samples)
    x = (centers[y] + rng.normal(scale=0.7, size=(n_samples, 2))).astype("float32")
    cut = int(0.8 * n_samples)
    return {"train": (x[:cut], y[:cut]), "test": (x[cut:], y[cut:])}


def build_mlp(hidden: int = 16):
    """2 features -> hidden ReLU units -> one logit per class."""
    from torch import nn

    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, len(CLASSES)))


@hookimpl
def tk_register_models(register):
    """The $model model: `tk train $model`."""
    register(
        ModelSpec(
            name="$model",
            build=build_mlp,
            input=InputSpec((2,)),
            task="multiclass",
            default_dataset="$dataset",
            params=[Param("hidden", int, 16, "hidden units")],
            recipe=Recipe(optimizer="adam", lr=0.05, epochs=60),
            description="2-16-3 ReLU MLP for the $dataset dataset",
        )
    )


@hookimpl
def tk_register_datasets(register):
    """The $dataset dataset: generated with numpy, nothing is downloaded."""
    register(
        DatasetSpec(
            name="$dataset",
            load=load_blobs,
            feature_shape=(2,),
            target="multiclass",
            num_classes=len(CLASSES),
            class_names=CLASSES,
            params=[
                Param("n_samples", int, 600, "points in total"),
                Param("seed", int, 0, "random seed of the points"),
            ],
            description="three Gaussian blobs in 2-D, 480 train / 120 test",
        )
    )
''')

TEST = Template('''\
"""Tests for $dist. Run them with `pytest` after `pip install -e .`."""

from toolkit.testing import check_plugin, load_plugin

from $package import load_blobs


def test_dataset_has_the_declared_shape():
    data = load_blobs(n_samples=100)
    x, y = data["train"]
    assert x.shape == (80, 2) and x.dtype == "float32"
    assert set(y.tolist()) <= {0, 1, 2}


def test_registered_through_the_entry_point():
    plugin = load_plugin("$dist")
    assert "$model" in plugin.models
    assert "$dataset" in plugin.datasets


def test_conformance(tmp_path):
    """Every model and dataset: built, trained a few epochs, exported, verified."""
    report = check_plugin("$dist", workdir=tmp_path)
    assert report.ok, report.format()
''')

README = Template("""\
# $dist

A plugin for tk (the tk-torch toolkit): the `$model` model (a small MLP) and the
`$dataset` dataset (three Gaussian blobs, generated with numpy).

## Install

In the environment where `tk` is installed:

    pip install -e .
    tk list models            # $model, from $dist
    tk plugins                # $entry_point  $dist  0.1.0  ok

## Use

    tk train $model
    tk export --format all
    tk verify runs/$model/<run>/model.onnx

## Test

    pip install -e ".[test]"
    pytest                    # includes tk's conformance check
    tk plugins check $dist    # the same check from the command line

## Publish

    python -m build && twine upload dist/*

Users then `pip install $dist` and `tk list models` shows `$model`.
`TK_LOAD_PLUGINS=$dist tk ...` loads only this plugin.
""")


@dataclass(frozen=True)
class Names:
    """Every name the generated package uses, derived from ``tk new-plugin NAME``."""

    dist: str  # distribution, as given: tk-hello
    package: str  # import name: tk_hello
    short: str  # NAME without a tk- prefix: hello
    entry_point: str  # the entry point's name: hello
    model: str  # hello-mlp
    dataset: str  # hello-blobs


def names_for(name: str) -> Names:
    """Derive package, entry point, model and dataset names; UsageError on a bad NAME."""
    dist = name.strip().lower()
    if not _NAME.match(dist):
        raise UsageError(
            f"invalid plugin name {name!r}: use lowercase letters, digits and single "
            "dashes, starting with a letter",
            "tk new-plugin tk-hello",
        )
    package = dist.replace("-", "_")
    if keyword.iskeyword(package):
        raise UsageError(
            f"invalid plugin name {name!r}: a Python keyword", "tk new-plugin tk-hello"
        )
    short = re.sub(r"^tk[-_]", "", dist) or dist
    short = short.replace("_", "-")
    return Names(dist, package, short, short.replace("-", "_"), f"{short}-mlp", f"{short}-blobs")


def new_plugin(name: str, directory: str | Path | None = None) -> list[Path]:
    """Write a new plugin package and return the files written.

    :param name: the distribution name, e.g. ``tk-hello`` (the import package is
        ``tk_hello``; the model ``hello-mlp``, the dataset ``hello-blobs``).
    :param directory: the directory to create (default ``./NAME``). It must not
        exist, or be empty: nothing is ever overwritten.
    :raises UsageError: a bad name, an existing non-empty directory, or a package name
        that is already importable here (it would shadow, or be shadowed by, that one).
    """
    n = names_for(name)
    root = Path(directory) if directory is not None else Path(n.dist)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UsageError(
            f"{root} already exists; tk new-plugin never overwrites files",
            f"tk new-plugin {n.dist} --dir <new directory>",
        )
    if importlib.util.find_spec(n.package) is not None:
        raise UsageError(
            f"a module named '{n.package}' is already importable here; the plugin's "
            "package would clash with it",
            "tk new-plugin <another name>",
        )
    values = {**n.__dict__, "tk_version": __version__}
    files = {
        root / "pyproject.toml": PYPROJECT.substitute(values),
        root / "README.md": README.substitute(values),
        root / n.package / "__init__.py": MODULE.substitute(values),
        root / "tests" / f"test_{n.package}.py": TEST.substitute(values),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)
