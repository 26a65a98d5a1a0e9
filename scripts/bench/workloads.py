"""The data every section trains on, as tensors and as tk ``Data``."""

from __future__ import annotations

from typing import Any

import torch

# The tutorial's recipe for the FashionMNIST MLP (sections 2, 4, 5 and 6).
FASHION_RECIPE = {"optimizer": "sgd", "lr": 1e-3, "epochs": 1, "batch_size": 64}


def circle_data() -> tuple[Any, dict[str, torch.Tensor]]:
    """The circles dataset through tk's own loader: (tk Data, the same tensors by name)."""
    from toolkit.data import prepare
    from toolkit.plugins import load_plugins

    registry = load_plugins(warn=False).registry
    spec = registry.dataset("circles")
    data = prepare(spec, spec.load(**spec.resolve_params({})))
    tensors = {
        "x_train": data.train.x,
        "y_train": data.train.y,
        "x_test": data.test.x,
        "y_test": data.test.y,
    }
    return data, tensors


def fashion_tensors(n_train: int, n_test: int) -> dict[str, torch.Tensor]:
    """Random uint8 28x28 images and labels shaped like FashionMNIST (fixed seed)."""
    g = torch.Generator().manual_seed(0)
    return {
        "x_train": torch.randint(0, 256, (n_train, 1, 28, 28), dtype=torch.uint8, generator=g),
        "y_train": torch.randint(0, 10, (n_train,), generator=g),
        "x_test": torch.randint(0, 256, (n_test, 1, 28, 28), dtype=torch.uint8, generator=g),
        "y_test": torch.randint(0, 10, (n_test,), generator=g),
    }


def fashion_data(t: dict[str, torch.Tensor]) -> Any:
    """The tensors as tk Data: uint8 images kept as they are, scaled by 1/255 per batch."""
    from toolkit.data import Data, Split
    from toolkit.registry import DatasetSpec

    spec = DatasetSpec(
        name="fashion-shaped",
        load=lambda: {},
        feature_shape=(1, 28, 28),
        target="multiclass",
        num_classes=10,
        feature_scale=1 / 255,
    )
    splits = {
        "train": Split(t["x_train"], t["y_train"]),
        "test": Split(t["x_test"], t["y_test"]),
    }
    return Data(spec, splits)


def fashion_recipe() -> Any:
    """FASHION_RECIPE as a tk Recipe."""
    from toolkit.registry import Recipe

    return Recipe(**FASHION_RECIPE)


def last_epoch(history: Any) -> dict[str, float]:
    """The final epoch's metrics of a ``fit`` History."""
    return history.epochs[-1] if history.epochs else {}
