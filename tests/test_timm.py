"""The tk-timm plugin: timm's models as ``timm/<name>``, listed without importing timm,
pretrained from a seeded Hugging Face cache. (``timm/resnet10t`` and others train,
export to every format and verify in tests/test_export.py's contract.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tk_main
from fixtures.images import noise_folder
from fixtures.pretrained import RESNET10T_REPO as REPO_ID
from fixtures.pretrained import seed_hf_cache

from toolkit.config import TrainConfig
from toolkit.plugins import get_registry


def test_the_plugin_is_a_real_distribution_and_lists_with_wildcards(capsys):
    reg = get_registry()
    assert reg.source("model", "timm/resnet10t").distribution == "tk-timm"
    assert tk_main("list", "models", "timm/*resnet1*", "--json") == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert "timm/resnet10t" in names and "timm/resnet18" in names
    assert all(n.startswith("timm/") and "resnet1" in n for n in names)
    assert tk_main("list", "models") == 0  # one row stands for the plugin's 1,300 models
    rows = [r for r in capsys.readouterr().out.splitlines() if "tk-timm" in r]
    assert len(rows) == 1 and "timm/*" in rows[0] and "tk list models 'timm/*'" in rows[0]
    assert tk_main("list", "models", "nothing*") == 2
    assert "no model matches 'nothing*'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos") / "photos"
    return noise_folder(root, ("a", "b", "c"), 4, (16, 16), seed=2)


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """An HF_HOME whose hub cache holds resnet10t's model.safetensors (seeded weights)."""
    home = tmp_path_factory.mktemp("hf")
    return home, seed_hf_cache(home)


def test_pretrained_from_the_hf_cache_on_grayscale_images(photos, hf_home, monkeypatch):
    from toolkit.train.prepare import build_run, start

    home, cached = hf_home
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("TK_OFFLINE", "1")
    data = {"path": str(photos), "grayscale": "true"}
    config = TrainConfig(model="timm/resnet10t", dataset="imagefolder", pretrained="default",
                         data_params=data, runs_dir="unused")  # fmt: skip
    built = build_run(start(config, get_registry()).plan)
    model = built.model
    assert built.plan.params["pretrained"] == "c3_in1k" and model.size == (176, 176)
    # one input channel: the 3-channel first convolution summed over its inputs (timm's way)
    first = model.net.conv1[0].weight
    assert torch.equal(first, cached["conv1.0.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.net.layer4[0].conv2.weight, cached["layer4.0.conv2.weight"])
    assert model.net.fc.weight.shape == (3, 512)


def test_offline_and_not_cached_names_the_file_and_exits_2(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TK_OFFLINE", "1")
    runs = str(tmp_path / "runs")
    code = tk_main("train", "timm/resnet10t", "--dataset", "imagefolder", "--data-param",
                   f"path={photos}", "--pretrained", "--runs-dir", runs)  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "model.safetensors" in err and str(tmp_path / "hf" / "hub") in err and REPO_ID in err
    assert not (tmp_path / "runs").exists()
