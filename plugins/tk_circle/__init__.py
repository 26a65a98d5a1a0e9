"""Built-in plugin: the circle-classification experiment from the PyTorch workflow notes.

Registered through the ``tk`` entry point group like any third-party plugin.
Nothing here imports torch at import time: factories import it when called.
"""

from __future__ import annotations

from toolkit import DatasetSpec, InputSpec, ModelSpec, Param, Recipe, hookimpl

# The seed notes' recipe is SGD lr=0.1 (ends near 91% for circle-v2); the default
# recipe, Adam lr=0.01, reaches 100% test accuracy in the same 1000 full-batch epochs.
SEED_RECIPE = Recipe(optimizer="sgd", lr=0.1, epochs=1000, batch_size=None)
GOOD_RECIPE = Recipe(optimizer="adam", lr=0.01, epochs=1000, batch_size=None)


def load_circles(n_samples: int = 1000, noise: float = 0.03, factor: float = 0.8, seed: int = 42):
    """``make_circles`` with the notes' 80/20 split (``random_state=42``).

    scikit-learn's arrays exactly, from :mod:`toolkit.sampling` (no sklearn import).
    """
    from toolkit import make_circles, train_test_split

    x, y = make_circles(n_samples, noise=noise, factor=factor, seed=seed)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype("float32"), y.astype("float32"), test_size=0.2, seed=seed
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def circle_v0():
    """Linear(2,5) -> Linear(5,1): linear, cannot separate circles (~50%)."""
    from torch import nn

    return nn.Sequential(nn.Linear(2, 5), nn.Linear(5, 1))


def circle_v1():
    """Linear(2,10) -> Linear(10,10) -> Linear(10,1): deeper, still linear."""
    from torch import nn

    return nn.Sequential(nn.Linear(2, 10), nn.Linear(10, 10), nn.Linear(10, 1))


def circle_v2(hidden: int = 10):
    """Linear(2,h) -> ReLU -> Linear(h,h) -> ReLU -> Linear(h,1): the non-linear model."""
    from torch import nn

    return nn.Sequential(
        nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
    )


HIDDEN = Param("hidden", int, 10, "hidden units per layer")
POINT = InputSpec((2,), name="points")


@hookimpl
def tk_register_models(register):
    """circle-v0/v1/v2 as in the notes (seed recipe), and ``circle``: v2 with a good recipe."""
    common = {"input": POINT, "task": "binary", "default_dataset": "circles"}
    register(
        ModelSpec(
            name="circle-v0",
            build=circle_v0,
            recipe=SEED_RECIPE,
            description="Linear(2,5)-Linear(5,1), linear baseline (~50%)",
            **common,
        )
    )
    register(
        ModelSpec(
            name="circle-v1",
            build=circle_v1,
            recipe=SEED_RECIPE,
            description="Linear(2,10)-Linear(10,10)-Linear(10,1), still linear",
            **common,
        )
    )
    register(
        ModelSpec(
            name="circle-v2",
            build=circle_v2,
            params=[HIDDEN],
            recipe=SEED_RECIPE,
            description="2-10-10-1 ReLU MLP with the notes' recipe (SGD lr=0.1, ~87-91%)",
            **common,
        )
    )
    register(
        ModelSpec(
            name="circle",
            build=circle_v2,
            params=[HIDDEN],
            recipe=GOOD_RECIPE,
            description="circle-v2 with Adam lr=0.01: 100% test accuracy",
            **common,
        )
    )


@hookimpl
def tk_register_datasets(register):
    """``circles``: sklearn's make_circles, 1000 points, 80/20 split."""
    register(
        DatasetSpec(
            name="circles",
            load=load_circles,
            feature_shape=(2,),
            target="binary",
            num_classes=2,
            class_names=("outer", "inner"),
            params=[
                Param("n_samples", int, 1000, "points in total"),
                Param("noise", float, 0.03, "Gaussian noise added to the points"),
                Param("factor", float, 0.8, "inner/outer circle radius ratio"),
                Param("seed", int, 42, "random_state for the points and the split"),
            ],
            description="two concentric circles (make_circles), 800 train / 200 test",
        )
    )
