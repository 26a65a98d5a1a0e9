"""Pretrained backbones, fine-tuning controls, threads and the size of a run.

The torch hub cache (``TORCH_HOME``) is seeded with a state dict saved under the
weights enum's exact file name (``resnet18-f37072fd.pth``): tk reads it as it would
read the downloaded one, and the machine is offline (``TK_OFFLINE=1``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import tk_main
from fixtures.images import noise_folder
from fixtures.pretrained import RESNET18_FILE as FILE
from fixtures.pretrained import seed_torch_hub
from safetensors.torch import load_file
from test_data_images import write_digits

from toolkit import checkpoint
from toolkit.config import TrainConfig
from toolkit.plugins import get_registry


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Two classes of eight 16x16 RGB PNGs."""
    root = tmp_path_factory.mktemp("photos") / "photos"
    return noise_folder(root, ("cat", "dog"), 8, (16, 16, 3), seed=1)


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A TORCH_HOME whose hub cache holds ResNet-18 weights (1,000 classes, seeded)."""
    home = tmp_path_factory.mktemp("torch_home")
    return home, seed_torch_hub(home)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("TK_OFFLINE", "1")


def test_pretrained_trains_frozen_and_exports_with_its_preprocessing(
    photos, hub, offline, tmp_path, monkeypatch
):
    home, cached = hub
    monkeypatch.setenv("TORCH_HOME", str(home))
    run = tmp_path / "r18"
    code = tk_main("train", "resnet18", "--dataset", "imagefolder", "--data-param",
                   f"path={photos}", "--pretrained", "--param", "resize=24", "--freeze",
                   "backbone", "--epochs", "1", "--out", str(run), "--quiet")  # fmt: skip
    assert code == 0
    config = json.loads((run / "config.json").read_text())
    assert config["params"]["pretrained"] == "IMAGENET1K_V1"  # "default", resolved
    assert config["finetune"] == {"freeze": "backbone", "unfreeze_at": None, "head_lr": None}
    weights = load_file(run / "model.safetensors")
    # the backbone is the cached one, untouched by a frozen epoch; the head is new
    for key in ("conv1.weight", "layer2.0.conv1.weight", "layer4.1.bn2.weight"):
        assert torch.equal(weights["net." + key], cached[key]), key
    assert weights["net.fc.weight"].shape == (1, 512)  # two classes: one logit
    assert torch.allclose(weights["mean"].flatten(), torch.tensor([0.485, 0.456, 0.406]))
    # The export takes raw pixels: the resize and mean/std are inside the graph.
    assert tk_main("export", str(run), "--format", "onnx") == 0
    import onnx

    ops = {n.op_type for n in onnx.load(str(run / "model.onnx")).graph.node}
    assert {"Resize", "Sub", "Div"} <= ops
    assert tk_main("verify", str(run / "model.onnx")) == 0


def test_pretrained_weights_are_the_models_at_epoch_0(photos, hub, offline, monkeypatch):
    """Built for full fine-tuning (no --freeze), at the weights' own 224x224 input."""
    from toolkit.train.prepare import build_run, start

    home, cached = hub
    monkeypatch.setenv("TORCH_HOME", str(home))
    config = TrainConfig(model="resnet18", dataset="imagefolder", pretrained="default",
                         data_params={"path": str(photos)}, runs_dir="unused")  # fmt: skip
    built = build_run(start(config, get_registry()).plan)
    model = built.model
    assert torch.equal(model.net.conv1.weight, cached["conv1.weight"])
    assert model.size == (224, 224) and all(p.requires_grad for p in model.parameters())
    assert built.plan.params["pretrained"] == "IMAGENET1K_V1"


def test_offline_and_not_cached_is_one_line_exit_2_and_no_run(
    photos, offline, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    runs = str(tmp_path / "runs")
    code = tk_main("train", "resnet18", "--dataset", "imagefolder", "--data-param",
                   f"path={photos}", "--pretrained", "--runs-dir", runs)  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert FILE in err and str(tmp_path / "empty" / "hub" / "checkpoints") in err
    assert not (tmp_path / "runs").exists()


def test_unknown_weights_and_models_without_them_are_usage_errors(tmp_path, photos, capsys):
    data = (
        "--dataset",
        "imagefolder",
        "--data-param",
        f"path={photos}",
        "--runs-dir",
        str(tmp_path),
    )
    assert tk_main("train", "resnet18", *data, "--pretrained", "IMAGENET9K") == 2
    assert "no pretrained weights 'IMAGENET9K'; choose imagenet1k_v1" in capsys.readouterr().err
    assert tk_main("train", "cnn", *data, "--pretrained") == 2
    assert "model 'cnn' has no pretrained weights" in capsys.readouterr().err
    assert tk_main("train", "cnn", *data, "--unfreeze-at", "2") == 2
    assert "--unfreeze-at needs --freeze backbone" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return write_digits(tmp_path_factory.mktemp("ft") / "digits15", per_class=15)


def _head(state: dict[str, torch.Tensor]) -> str:
    """The cnn's head: its last Linear (the last 2-D weight)."""
    return [k for k, v in state.items() if v.ndim == 2][-1].rsplit(".", 1)[0] + "."


def _backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The cnn's trained parameters except its head (running statistics still move)."""
    head = _head(state)
    return {
        k: v
        for k, v in state.items()
        if not k.startswith(head) and "running" not in k and "num_batches" not in k
    }


def test_freeze_then_thaw_with_a_head_learning_rate(digits, tmp_path):
    run = tmp_path / "ft"
    code = tk_main("train", "cnn", "--dataset", "imagefolder", "--data-param", f"path={digits}",
                   "--data-param", "grayscale=true", "--epochs", "3", "--freeze", "backbone",
                   "--unfreeze-at", "3", "--head-lr", "0.01", "--checkpoint-every", "1",
                   "--out", str(run), "--quiet")  # fmt: skip
    assert code == 0
    states = [checkpoint.load(p) for p in checkpoint.list_checkpoints(run)]
    assert [s.epoch for s in states] == [1, 2, 3]
    one, two, three = (s.model_state for s in states)
    assert all(torch.equal(v, _backbone(two)[k]) for k, v in _backbone(one).items())  # frozen
    head = _head(one) + "weight"
    assert not torch.equal(one[head], two[head])  # the head trained
    assert not all(torch.equal(v, _backbone(three)[k]) for k, v in _backbone(two).items())
    groups = states[0].optimizer_state["param_groups"]
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"])


def test_a_run_keeps_one_copy_of_equal_weights(digits, tmp_path):
    run = tmp_path / "small"
    args = ("--dataset", "imagefolder", "--data-param", f"path={digits}", "--data-param",
            "grayscale=true", "--quiet")  # fmt: skip
    assert tk_main("train", "cnn", *args, "--epochs", "2", "--out", str(run)) == 0
    summary = json.loads((run / "summary.json").read_text())
    final = checkpoint.load(checkpoint.list_checkpoints(run)[-1])
    best = final.callbacks["best"]
    if summary["selected"]["epoch"] == 2:
        # the selected weights are the last: one file, two names; stored once in the checkpoint
        assert os.stat(run / "model.safetensors").st_ino == os.stat(run / "last.safetensors").st_ino
        assert best["same"] is True and best["weights"] == {}
    # ... and a resume that extends the run still knows the best weights
    assert tk_main("train", "--resume", str(run), "--epochs", "3", "--quiet") == 0
    after = json.loads((run / "summary.json").read_text())
    assert after["epochs"] == 3 and after["selected"]["epoch"] >= 1


def test_threads_are_chosen_by_the_work_of_a_step_and_recorded(digits, tmp_path, monkeypatch):
    from torchvision.models import resnet18

    from toolkit.data import Data, Split
    from toolkit.registry import DatasetSpec
    from toolkit.train import build
    from toolkit.train.build import ONE_THREAD_FLOPS, sample_flops, set_threads

    def data(shape):
        spec = DatasetSpec("d", dict, feature_shape=shape, target="multiclass", num_classes=10)
        return Data(spec, {"train": Split(torch.zeros(64, *shape), torch.zeros(64).long())})

    small = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    big = resnet18(num_classes=10)
    assert 64 * sample_flops(small, data((64,))) < ONE_THREAD_FLOPS
    assert 64 * sample_flops(big, data((3, 32, 32))) > ONE_THREAD_FLOPS
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        cpu = torch.device("cpu")
        assert set_threads(None, small, data((64,)), cpu, 64) == 1
        cores = len(os.sched_getaffinity(0))
        others = build.runnable_others()
        assert others >= 0  # read from /proc/loadavg: this process is not counted
        busy = min(os.getloadavg()[0], others)
        assert set_threads(None, big, data((3, 32, 32)), cpu, 64) in {
            max(1, min(cores, round(cores - busy) + d)) for d in (-1, 0, 1)
        }
        monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # an idle machine
        assert set_threads(None, big, data((3, 32, 32)), cpu, 64) == cores
        # A busy one: both the average and the processes runnable now say so.
        monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
        monkeypatch.setattr(build, "runnable_others", lambda: 9.0)
        assert set_threads(None, big, data((3, 32, 32)), cpu, 64) == 1
        # Work that ended a moment ago (the average still high, nothing runnable now)
        # leaves the cores idle.
        monkeypatch.setattr(build, "runnable_others", lambda: 0.0)
        assert set_threads(None, big, data((3, 32, 32)), cpu, 64) == cores
        assert set_threads(3, small, data((64,)), cpu, 64) == 3
        run = tmp_path / "t"
        assert tk_main("train", "digits-mlp", "--epochs", "1", "--threads", "2", "--out",
                       str(run), "--quiet") == 0  # fmt: skip
        assert json.loads((run / "summary.json").read_text())["torch_threads"] == 2
        assert tk_main("train", "digits-mlp", "--threads", "0", "--runs-dir", str(tmp_path)) == 2
    finally:
        torch.set_num_threads(before)
