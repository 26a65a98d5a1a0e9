"""tk-spirals: an example third-party tk plugin, written only against docs/plugins.md.

- dataset ``spirals``: three interleaved spiral arms in the plane, made with numpy.
- dataset ``bars``: 16x16 grayscale images (uint8) of a horizontal, vertical or
  diagonal bar in noise.
- model ``spiral-mlp``: a 2-64-64-3 MLP for ``spirals``.
- model ``bars-cnn``: two conv layers and a linear head for ``bars``.
- tracker ``jsonl``: every event of a run as one JSON line (docs/plugins.md's own).

Nothing here imports torch at import time: tk imports this module to *list* models,
and listing must stay fast. The factories import torch when they are called.
"""

from __future__ import annotations

import json
from pathlib import Path

from toolkit import (
    DatasetSpec,
    InputSpec,
    ModelSpec,
    Param,
    Recipe,
    Tolerance,
    TrackerSpec,
    hookimpl,
)

ARMS = ("arm-0", "arm-1", "arm-2")
BARS = ("horizontal", "vertical", "diagonal")
SIZE = 16  # bars images are SIZE x SIZE; the CNN's head depends on it


# ---------------------------------------------------------------------- datasets
def _split(x, y, rng, train_fraction=0.8):
    """Shuffle, then cut into train and test."""
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    cut = int(train_fraction * len(x))
    return {"train": (x[:cut], y[:cut]), "test": (x[cut:], y[cut:])}


def load_spirals(points_per_arm: int = 300, noise: float = 0.2, seed: int = 0):
    """Three spiral arms, each a class (the classic CS231n toy problem)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for arm in range(len(ARMS)):
        radius = np.linspace(0.0, 1.0, points_per_arm)
        angle = np.linspace(arm * 4.0, (arm + 1) * 4.0, points_per_arm)
        angle = angle + rng.normal(scale=noise, size=points_per_arm)
        xs.append(np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1))
        ys.append(np.full(points_per_arm, arm))
    return _split(np.concatenate(xs).astype("float32"), np.concatenate(ys), rng)


def load_bars(n_samples: int = 1500, seed: int = 0):
    """Noisy 16x16 images with one bright bar; the class is the bar's direction.

    Pixels are uint8: tk keeps them as they are and scales each batch by the
    dataset's ``feature_scale`` (1/255), so no float copy of the set is stored.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(BARS), size=n_samples)
    images = rng.normal(loc=40.0, scale=25.0, size=(n_samples, 1, SIZE, SIZE))
    where = rng.integers(2, SIZE - 2, size=n_samples)
    idx = np.arange(SIZE)
    for i in range(n_samples):
        if y[i] == 0:
            images[i, 0, where[i], :] += 160.0
        elif y[i] == 1:
            images[i, 0, :, where[i]] += 160.0
        else:
            images[i, 0, idx, (idx + where[i]) % SIZE] += 160.0
    return _split(np.clip(images, 0, 255).astype("uint8"), y, rng)


# ------------------------------------------------------------------------ models
def build_spiral_mlp(hidden: int = 64, activation: str = "relu"):
    """2 -> hidden -> hidden -> 3 logits."""
    from torch import nn

    act = nn.ReLU if activation == "relu" else nn.Tanh
    return nn.Sequential(
        nn.Linear(2, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, 3)
    )


def build_bars_cnn(channels: int = 8):
    """Conv-ReLU-pool twice (16 -> 8 -> 4 pixels), then a linear head for 3 classes."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * channels * (SIZE // 4) ** 2, len(BARS)),
    )


# ------------------------------------------------------------------------- hooks
@hookimpl
def tk_register_models(register):
    """``spiral-mlp`` and ``bars-cnn``."""
    register(
        ModelSpec(
            name="spiral-mlp",
            build=build_spiral_mlp,
            input=InputSpec((2,), name="points"),
            task="multiclass",
            default_dataset="spirals",
            params=[
                Param("hidden", int, 64, "hidden units per layer"),
                Param("activation", str, "relu", "hidden activation", choices=("relu", "tanh")),
            ],
            recipe=Recipe(optimizer="adam", lr=0.01, epochs=300),
            description="2-64-64-3 MLP for the three-arm spirals",
        )
    )
    register(
        ModelSpec(
            name="bars-cnn",
            build=build_bars_cnn,
            input=InputSpec((1, SIZE, SIZE), name="image"),
            task="multiclass",
            default_dataset="bars",
            params=[Param("channels", int, 8, "channels of the first conv layer")],
            recipe=Recipe(optimizer="adam", lr=0.01, epochs=5, batch_size=64),
            description="2-layer CNN: which way does the bar run?",
            # Convolutions sum in a different order in each runtime: float32 error
            # grows with the number of terms, so this model allows a little more.
            tolerance=Tolerance(atol=1e-4, rtol=1e-3),
        )
    )


@hookimpl
def tk_register_datasets(register):
    """``spirals`` and ``bars``, both generated with numpy (nothing is downloaded)."""
    register(
        DatasetSpec(
            name="spirals",
            load=load_spirals,
            feature_shape=(2,),
            target="multiclass",
            num_classes=len(ARMS),
            class_names=ARMS,
            params=[
                Param("points_per_arm", int, 300, "points per arm"),
                Param("noise", float, 0.2, "noise added to each point's angle"),
                Param("seed", int, 0, "random seed of the points and the split"),
            ],
            description="three interleaved spiral arms in 2-D, 720 train / 180 test",
        )
    )
    register(
        DatasetSpec(
            name="bars",
            load=load_bars,
            feature_shape=(1, SIZE, SIZE),
            target="multiclass",
            num_classes=len(BARS),
            class_names=BARS,
            params=[
                Param("n_samples", int, 1500, "images in total"),
                Param("seed", int, 0, "random seed of the images and the split"),
            ],
            feature_scale=1 / 255,
            description="16x16 uint8 images of a bar: horizontal, vertical or diagonal",
        )
    )


# ---------------------------------------------------------------------- tracker
class JsonLinesTracker:
    """Every event of a run as one JSON line, in ``path`` (default: RUN/events.jsonl)."""

    def __init__(self, path=""):
        self.path = path

    def start(self, run_config):
        self.file = Path(self.path or Path(run_config["run_dir"]) / "events.jsonl")
        self._write({"event": "start", "model": run_config["model"]})

    def log_metrics(self, epoch, metrics):
        self._write({"event": "epoch", "epoch": epoch, **metrics})

    def log_artifact(self, path):
        self._write({"event": "artifact", "file": path.name})

    def finish(self, summary):
        self._write({"event": "finish", "status": summary["status"]})

    def _write(self, record):
        with self.file.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


@hookimpl
def tk_register_trackers(register):
    """``jsonl``: the tracker of docs/plugins.md, with its ``path`` option."""
    register(
        TrackerSpec(
            name="jsonl",
            factory=JsonLinesTracker,
            options=[Param("path", str, "", "file to append to")],
            description="every event as one JSON line",
        )
    )
