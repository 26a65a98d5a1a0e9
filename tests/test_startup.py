"""The startup promise: listing commands never import torch, onnx, torchvision or a
tracker's library (tensorboard, mlflow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "sklearn",
    "matplotlib",
    "tensorboard",
    "mlflow",
    "optuna",
    "timm",
)

PROBE = """
import json, sys
from toolkit.cli import main
try:
    main({args!r})
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("PROBE" + json.dumps({{"code": code, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["list", "models"],
        ["list", "datasets"],
        ["plugins"],
        ["info", "circle"],
        ["plugins", "--json"],
        ["list", "models", "--json"],
        ["list", "trackers"],
        ["list", "formats"],
        ["info", "mlflow"],
        ["runs"],
        ["runs", "--json"],
    ],
)
def test_listing_commands_do_not_import_heavy_modules(args, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PROBE"))
    result = json.loads(line[len("PROBE") :])
    assert result["code"] in (0, None), proc.stderr
    assert result["heavy"] == [], f"tk {' '.join(args)} imported {result['heavy']}"


def test_python_dash_m_toolkit_is_tk(tk):
    res = tk("--help")
    assert res.code == 0
    for command in ("train", "list", "info", "plugins"):
        assert command in res.out
    assert "Exit codes" in res.out


def test_list_models_shows_builtins(tk):
    res = tk("list", "models")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "TASK", "INPUT"]
    names = [line.split()[0] for line in lines[1:]]
    assert {"circle", "circle-v0", "circle-v1", "circle-v2"} <= set(names)
    assert res.err == ""


def test_list_formats_names_each_format_and_its_plugin(tk):
    rows = json.loads(tk("list", "formats", "--json").out)
    builtin = {r["name"]: r for r in rows if r["plugin"] == "tk-torch"}
    assert set(builtin) == {"onnx", "torchscript", "pt2"}
    assert builtin["onnx"]["runs_code"] == "no" and builtin["pt2"]["runs_code"] != "no"
    assert builtin["torchscript"]["file"] == "model.torchscript.pt"
    text = tk("list", "formats").out.splitlines()
    assert text[0].split()[:2] == ["NAME", "FILE"]
    assert any(line.split()[0] == "pt2" and "tk-torch" in line for line in text[1:])
    info = tk("info", "ts")  # an alias is no name of its own
    assert info.code == 2 and "unknown" in info.err
    info = json.loads(tk("info", "torchscript", "--json").out)
    assert info["kind"] == "format" and info["aliases"] == "ts, jit"
    assert info["plugin"]["distribution"] == "tk-torch"


def test_json_outputs(tk):
    models = json.loads(tk("list", "models", "--json").out)
    circle = next(m for m in models if m["name"] == "circle")
    assert circle == {
        "name": "circle",
        "task": "binary",
        "input": [2],
        "dataset": "circles",
        "plugin": "tk-torch",
        "description": circle["description"],
    }
    datasets = json.loads(tk("list", "datasets", "--json").out)
    assert {"name": "circles", "target": "binary", "classes": 2, "features": [2]}.items() <= next(
        d for d in datasets if d["name"] == "circles"
    ).items()
    info = json.loads(tk("info", "circle", "--json").out)
    assert info["recipe"] == {
        "optimizer": "adam",
        "lr": 0.01,
        "epochs": 1000,
        "batch_size": "full",
        "momentum": 0.0,
        "weight_decay": 0.0,
        "scheduler": "none",
        "warmup_epochs": 0,
    }
    assert info["params"] == [
        {"name": "hidden", "type": "int", "default": 10, "help": "hidden units per layer"}
    ]
    plugins = json.loads(tk("plugins", "--json").out)
    builtin = next(p for p in plugins if p["entry_point"] == "circle")
    assert builtin["status"] == "ok" and builtin["distribution"] == "tk-torch"
    assert builtin["models"] == ["circle-v0", "circle-v1", "circle-v2", "circle"]


def test_info_unknown_name_suggests(tk):
    res = tk("info", "circel")
    assert res.code == 2
    assert res.err.strip().splitlines() == [
        "tk: error: unknown model 'circel'; did you mean 'circle'? (try: tk list models)"
    ]


def test_info_shows_a_datasets_target_dim_and_feature_scale(tk):
    from fixtures.export_models import SOURCE, load_plane

    from toolkit.commands.catalog import describe
    from toolkit.registry import DatasetSpec, Registry

    res = tk("info", "scores-5x3")
    assert res.code == 0, res.err
    assert "target_dim: 1" in res.out.splitlines()
    shown = json.loads(tk("info", "csv", "--json").out)
    assert (shown["target_dim"], shown["feature_scale"]) == ("auto", None)
    assert json.loads(tk("info", "mnist", "--json").out)["feature_scale"] == pytest.approx(1 / 255)
    reg = Registry()
    plane = DatasetSpec("plane", load_plane, (2,), "regression", target_dim=2)
    reg.add(plane, SOURCE)
    assert describe(reg, "plane")["target_dim"] == 2
