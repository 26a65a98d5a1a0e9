"""What only a CUDA device can show (skipped without one; scripts/gpu_check runs them):
augmentation on the device, mixed precision and compile with augmentation, and a
pretrained model's export verified by onnxruntime's CUDA provider where installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tk_main
from test_data_images import write_digits

from toolkit.augment import BatchAugment, parse

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return write_digits(tmp_path_factory.mktemp("cuda") / "digits", per_class=30)


def test_batch_augmentation_runs_on_the_device_and_repeats():
    x = torch.rand(64, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (64,), device="cuda")
    aug = BatchAugment(parse("standard,flip,erase,trivial,mixup"), 3, 10, clamp=True)
    a, ya = aug(x, y, epoch=2, index=5)
    b, yb = aug(x, y, epoch=2, index=5)
    assert a.device.type == "cuda" and ya.shape == (64, 10)
    assert torch.equal(a, b) and torch.equal(ya, yb)


@pytest.mark.parametrize("extra", [[], ["--precision", "bf16"], ["--precision", "fp16"],
                                   ["--compile"]])  # fmt: skip
def test_augmented_training_on_cuda(digits, tmp_path, extra):
    run = tmp_path / "run"
    code = tk_main("train", "cnn", "--dataset", "imagefolder", "--data-param", f"path={digits}",
                   "--data-param", "grayscale=true", "--data-param", "size=32x32", "--device",
                   "cuda", "--epochs", "3", "--augment", "standard,mixup", "--out", str(run),
                   "--quiet", *extra)  # fmt: skip
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] > 0.5


def test_streamed_folder_with_workers_and_pinned_memory(digits, tmp_path):
    code = tk_main("train", "cnn", "--dataset", "imagefolder", "--data-param", f"path={digits}",
                   "--data-param", "grayscale=true", "--data-param", "max-memory-mb=0",
                   "--device", "cuda", "--workers", "2", "--epochs", "2", "--augment",
                   "standard", "--out", str(tmp_path / "s"), "--quiet")  # fmt: skip
    assert code == 0


def test_export_verifies_with_the_cuda_provider_when_installed(digits, tmp_path):
    import onnxruntime as ort

    run = tmp_path / "r18"
    assert tk_main("train", "resnet18", "--dataset", "imagefolder", "--data-param",
                   f"path={digits}", "--data-param", "size=32x32", "--device", "cuda",
                   "--epochs", "1", "--out", str(run), "--quiet") == 0  # fmt: skip
    assert tk_main("export", str(run), "--format", "onnx") == 0
    from toolkit.verify.main import verify_file

    report = verify_file(run / "model.onnx")
    assert report.passed
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert "onnxruntime-cuda" in report.runtimes
