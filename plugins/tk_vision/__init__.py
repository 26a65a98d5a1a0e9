"""Built-in plugin: image classification (FashionMNIST, MNIST, scikit-learn's digits).

FashionMNIST and MNIST are read by torchvision's own dataset classes from local raw
IDX files (``download=False`` always: tk never reaches for the network). The
digits are scikit-learn's ``load_digits``: 1,797 real 8x8 scans shipped inside
scikit-learn, the image data that is available offline.

Images are returned as uint8 and the specs set ``feature_scale``, so the training
loop keeps them uint8 on the device and scales each batch to [0, 1]: 60,000 28x28
images cost 47 MB instead of a float copy (188 MB).

Nothing here imports torch, torchvision, numpy or sklearn at import time.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from toolkit import DatasetSpec, InputSpec, ModelSpec, Param, Recipe, UsageError, hookimpl

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(i) for i in range(10))


# --------------------------------------------------------------------- IDX data
def raw_folder(data_dir: str | Path, tv_name: str) -> Path:
    """Where torchvision's ``tv_name`` class reads raw files: ``<data_dir>/<tv_name>/raw``."""
    return Path(data_dir) / tv_name / "raw"


def ensure_idx_files(data_dir: str | Path, tv_name: str, dataset: str) -> Path:
    """Check that the four raw IDX files are there, before torchvision is imported.

    A ``.gz`` next to a missing file (the form the files are published in) is
    decompressed in place, as torchvision's own download step would do. Anything
    else missing is a one-line UsageError (exit 2) naming the directory and the
    four files: tk never tries to download.
    """
    raw = raw_folder(data_dir, tv_name)
    missing = []
    for name in IDX_FILES:
        path = raw / name
        packed = raw / f"{name}.gz"
        if path.is_file():
            continue
        if packed.is_file():
            _gunzip(packed, path)
            continue
        missing.append(name)
    if missing:
        what = "no IDX files" if len(missing) == len(IDX_FILES) else f"missing {', '.join(missing)}"
        raise UsageError(
            f"{dataset}: {what} in {raw}/; expected {', '.join(IDX_FILES)} (or .gz); "
            "tk does not download",
            f"--data-dir DIR where DIR/{tv_name}/raw/ holds them",
        )
    return raw


def _gunzip(packed: Path, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(path)  # atomic: a half-written file is never taken for data
    except (OSError, EOFError) as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot decompress {packed}: {exc}") from None


def _load_torchvision(tv_name: str, dataset: str, data_dir: str):
    raw = ensure_idx_files(data_dir, tv_name, dataset)
    from torchvision import datasets

    cls = getattr(datasets, tv_name)
    out = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = cls(root=str(data_dir), train=train, download=False)
        except (AssertionError, ValueError, TypeError, RuntimeError) as exc:
            # torchvision asserts on a truncated file and raises on a wrong magic number.
            raise UsageError(
                f"{dataset}: the IDX files in {raw}/ cannot be read ({split}): "
                f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
            ) from None
        # ds.data is uint8 (N, 28, 28); add the channel axis ToTensor would add.
        out[split] = (ds.data.unsqueeze(1), ds.targets)
    return out


def load_fashion_mnist(data_dir: str = "data"):
    """FashionMNIST from ``<data_dir>/FashionMNIST/raw/`` via torchvision, as uint8."""
    return _load_torchvision("FashionMNIST", "fashion-mnist", data_dir)


def load_mnist(data_dir: str = "data"):
    """MNIST from ``<data_dir>/MNIST/raw/`` via torchvision, as uint8."""
    return _load_torchvision("MNIST", "mnist", data_dir)


def load_digits(test_size: float = 0.2, seed: int = 42):
    """scikit-learn's 1,797 8x8 digits (pixel values 0..16) as uint8 (N, 1, 8, 8).

    The split is stratified by class with a fixed ``random_state``, so every run
    and the scikit-learn baselines in docs/results.md see the same rows.
    """
    import numpy as np
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = bunch.images.astype(np.uint8)[:, None, :, :]
    x_train, x_test, y_train, y_test = train_test_split(
        images, bunch.target, test_size=test_size, random_state=seed, stratify=bunch.target
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


# ----------------------------------------------------------------------- models
def image_mlp(pixels: int = 784, hidden: int = 512, classes: int = 10):
    """Flatten -> Linear(pixels, h) -> ReLU -> Linear(h, h) -> ReLU -> Linear(h, classes).

    With the defaults this is the PyTorch basics tutorial's NeuralNetwork.
    """
    from torch import nn

    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(pixels, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, classes),
    )


def fashion_mnist_mlp(hidden: int = 512):
    """The tutorial's 784-512-512-10 MLP."""
    return image_mlp(784, hidden, 10)


def digits_mlp(hidden: int = 256):
    """The same MLP shape for 8x8 digits: 64-h-h-10."""
    return image_mlp(64, hidden, 10)


def digits_cnn(channels: int = 32):
    """A small CNN for 8x8 digits: two 3x3 convs, one 2x2 pool, two linear layers."""
    from torch import nn

    c = channels
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 8x8 -> 4x4
        nn.Flatten(),
        nn.Linear(2 * c * 16, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


# The tutorial: SGD lr=1e-3, batch 64 (~51% after 2 epochs, `--optimizer sgd`);
# Adam at the same lr is the usual fix (~88-89% test accuracy in 5 epochs).
# Cosine decay: the usual schedule for a few epochs of Adam on images (digits-cnn
# 98.33% test accuracy with it and without; the last epochs settle at a lower rate).
MNIST_RECIPE = Recipe(optimizer="adam", lr=1e-3, epochs=5, batch_size=64, scheduler="cosine")
DIGITS_MLP_RECIPE = Recipe(optimizer="adam", lr=1e-3, epochs=50, batch_size=64)
DIGITS_CNN_RECIPE = Recipe(optimizer="adam", lr=1e-3, epochs=20, batch_size=32, scheduler="cosine")
IMAGE_28 = InputSpec((1, 28, 28), name="image")
IMAGE_8 = InputSpec((1, 8, 8), name="image")


@hookimpl
def tk_register_models(register):
    """The tutorial MLP (FashionMNIST, MNIST) and an MLP and a CNN for the digits."""
    hidden_512 = Param("hidden", int, 512, "units in each hidden layer")
    for name, dataset in (("fashion-mnist-mlp", "fashion-mnist"), ("mnist-mlp", "mnist")):
        register(
            ModelSpec(
                name=name,
                build=fashion_mnist_mlp,
                input=IMAGE_28,
                task="multiclass",
                params=[hidden_512],
                default_dataset=dataset,
                recipe=MNIST_RECIPE,
                description="Flatten-784-512-512-10 (PyTorch tutorial), Adam, batch 64",
            )
        )
    register(
        ModelSpec(
            name="digits-mlp",
            build=digits_mlp,
            input=IMAGE_8,
            task="multiclass",
            params=[Param("hidden", int, 256, "units in each hidden layer")],
            default_dataset="digits",
            recipe=DIGITS_MLP_RECIPE,
            description="Flatten-64-256-256-10 MLP on the 8x8 digits",
        )
    )
    register(
        ModelSpec(
            name="digits-cnn",
            build=digits_cnn,
            input=IMAGE_8,
            task="multiclass",
            params=[Param("channels", int, 32, "channels of the first conv (second: 2x)")],
            default_dataset="digits",
            recipe=DIGITS_CNN_RECIPE,
            description="conv32-conv64-pool-128-10 CNN on the 8x8 digits",
        )
    )


@hookimpl
def tk_register_datasets(register):
    """fashion-mnist and mnist (local IDX files, ``--data-dir``) and the sklearn digits."""
    data_dir = Param(
        "data_dir", str, "data", "torchvision root: DIR/<Name>/raw/ has IDX files", path=True
    )
    register(
        DatasetSpec(
            name="fashion-mnist",
            load=load_fashion_mnist,
            feature_shape=(1, 28, 28),
            target="multiclass",
            num_classes=10,
            class_names=FASHION_CLASSES,
            params=[data_dir],
            feature_scale=1 / 255,
            description="FashionMNIST 60k/10k 28x28 from local IDX files (--data-dir)",
        )
    )
    register(
        DatasetSpec(
            name="mnist",
            load=load_mnist,
            feature_shape=(1, 28, 28),
            target="multiclass",
            num_classes=10,
            class_names=DIGIT_CLASSES,
            params=[data_dir],
            feature_scale=1 / 255,
            description="MNIST 60k/10k 28x28 from local IDX files (--data-dir)",
        )
    )
    register(
        DatasetSpec(
            name="digits",
            load=load_digits,
            feature_shape=(1, 8, 8),
            target="multiclass",
            num_classes=10,
            class_names=DIGIT_CLASSES,
            params=[
                Param("test_size", float, 0.2, "held-out fraction (stratified)"),
                Param("seed", int, 42, "random_state of the split"),
            ],
            feature_scale=1 / 16,
            description="scikit-learn's 1,797 real 8x8 digits, stratified 80/20 split",
        )
    )
