"""Image data (tk_vision): FashionMNIST/MNIST through torchvision's real loader on IDX
files written here, the missing-files error, and the digits targets (MLP >= 97%,
CNN >= 98% test accuracy on the fixed stratified split)."""

from __future__ import annotations

import gzip
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import tk_vision

from toolkit.config import TrainConfig
from toolkit.errors import UsageError
from toolkit.models import load_data
from toolkit.plugins import get_registry
from toolkit.train import train

IMAGE_MAGIC = 0x00000803  # IDX: unsigned bytes, 3 dimensions
LABEL_MAGIC = 0x00000801  # IDX: unsigned bytes, 1 dimension


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write a uint8 array as an IDX file (the format of the MNIST distribution)."""
    magic = IMAGE_MAGIC if array.ndim == 3 else LABEL_MAGIC
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def fake_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 uint8 images a model can learn: class k lights a 7x7 block at a k-th spot."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, k in enumerate(labels):
        r, c = divmod(int(k), 5)
        images[i, 2 + 12 * r : 9 + 12 * r, 1 + 5 * c : 8 + 5 * c] = 255
    return images, labels.astype(np.uint8)


def write_dataset(root: Path, tv_name: str, compress: bool = False) -> Path:
    """Four IDX files in torchvision's layout: ``root/<tv_name>/raw/``."""
    raw = root / tv_name / "raw"
    x_train, y_train = fake_images(300, seed=0)
    x_test, y_test = fake_images(100, seed=1)
    write_idx(raw / "train-images-idx3-ubyte", x_train, compress)
    write_idx(raw / "train-labels-idx1-ubyte", y_train, compress)
    write_idx(raw / "t10k-images-idx3-ubyte", x_test, compress)
    write_idx(raw / "t10k-labels-idx1-ubyte", y_test, compress)
    return raw


def _train(tmp_path: Path, model: str, **options):
    config = TrainConfig(
        model=model, quiet=True, runs_dir=str(tmp_path / "runs"), device="cpu", **options
    )
    return train(config)


def test_fashion_mnist_trains_from_idx_files_through_torchvision(tmp_path):
    write_dataset(tmp_path / "data", "FashionMNIST")
    # The default recipe (Adam, batch 64) on 300 synthetic images, 3 epochs.
    result = _train(
        tmp_path, "fashion-mnist-mlp", epochs=3, data_params={"data_dir": str(tmp_path / "data")}
    )
    test = result.summary["test"]
    assert test["accuracy"] >= 0.9, test
    assert result.summary["steps"] == 3 * 5  # ceil(300 / 64) batches per epoch
    config = (result.run_dir / "config.json").read_text()
    assert '"Ankle boot"' in config and '"feature_scale": 0.00392156' in config


def test_idx_images_stay_uint8_and_are_scaled_per_batch(tmp_path):
    import torch

    write_dataset(tmp_path, "FashionMNIST")
    spec = get_registry().dataset("fashion-mnist")
    data = load_data(spec, {"data_dir": str(tmp_path)})
    x = data.train.x
    assert x.dtype == torch.uint8 and tuple(x.shape) == (300, 1, 28, 28)
    # One byte per pixel: 60,000 images would be 60000 * 784 bytes = 47 MB.
    assert x.element_size() * x.nelement() == 300 * 784
    batch = data.features(x[:8])
    assert batch.dtype == torch.float32 and float(batch.max()) == 1.0


def test_mnist_reads_gzipped_idx_files_and_the_same_model_trains(tmp_path):
    raw = write_dataset(tmp_path / "data", "MNIST", compress=True)
    result = _train(
        tmp_path,
        "fashion-mnist-mlp",
        dataset="mnist",
        epochs=2,
        params={"hidden": 64},
        data_params={"data_dir": str(tmp_path / "data")},
    )
    assert result.summary["dataset"] == "mnist"
    assert (raw / "train-images-idx3-ubyte").is_file()  # decompressed next to the .gz
    assert not list(raw.glob(".*tmp"))


def test_missing_idx_files_exit_2_fast_naming_dir_and_files(tk):
    start = time.perf_counter()
    res = tk("train", "fashion-mnist-mlp", "--data-dir", "nowhere")
    elapsed = time.perf_counter() - start
    assert res.code == 2, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    expected_dir = str(Path("nowhere") / "FashionMNIST" / "raw")
    assert expected_dir in lines[0]
    for name in tk_vision.IDX_FILES:
        assert name in lines[0]
    assert "no IDX files" in lines[0] and "does not download" in lines[0]
    assert not (tk.cwd / "runs").exists()
    assert not (tk.cwd / "nowhere").exists()  # nothing created, no download started
    assert elapsed < 30  # torch's import dominates (~2 s); no network wait


def test_some_missing_and_broken_idx_files_are_usage_errors(tmp_path):
    raw = write_dataset(tmp_path, "MNIST")
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UsageError, match="missing t10k-labels-idx1-ubyte in"):
        tk_vision.load_mnist(str(tmp_path))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x64" + b"\x01" * 7)
    with pytest.raises(UsageError, match="cannot be read"):
        tk_vision.load_mnist(str(tmp_path))


def test_digits_split_is_fixed_and_stratified():
    a = tk_vision.load_digits()
    b = tk_vision.load_digits()
    np.testing.assert_array_equal(a["test"][0], b["test"][0])
    x_train, y_train = a["train"]
    x_test, y_test = a["test"]
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 360
    assert x_train.dtype == np.uint8 and x_train.shape[1:] == (1, 8, 8) and x_train.max() == 16
    # Stratified: every class has the same share (within one image) in both splits.
    for k in range(10):
        share_train = np.mean(y_train == k) * len(x_test)
        assert abs(share_train - np.sum(y_test == k)) <= 1


def test_digits_mlp_reaches_97_percent(tmp_path):
    result = _train(tmp_path, "digits-mlp")
    assert result.summary["test"]["accuracy"] >= 0.97


def test_digits_cnn_reaches_98_percent(tmp_path):
    result = _train(tmp_path, "digits-cnn")
    assert result.summary["test"]["accuracy"] >= 0.98
