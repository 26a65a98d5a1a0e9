"""``mlp``, ``cnn`` and the torchvision zoo: sized from the dataset, or refused.

A model refuses a dataset it cannot take (a vector for an image model) by naming
the shape, before any run directory exists.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from toolkit.errors import UsageError
from toolkit.plugins import load_plugins

REGISTRY = load_plugins(warn=False).registry


def _build(name: str, shape: tuple[int, ...], outputs: int, task: str = "multiclass", **params):
    spec = REGISTRY.model(name).sized(shape, outputs, task)
    return spec.build(**spec.resolve_params(params))


def test_generic_models_size_themselves_and_take_any_task():
    for name in ("mlp", "cnn", "resnet18", "mobilenet_v3_small", "efficientnet_b0"):
        spec = REGISTRY.model(name)
        assert spec.input is None and spec.task is None, name
        assert spec.recipe.scheduler == "cosine" and spec.recipe.batch_size == 64


def test_mlp_widths_linear_and_options():
    mlp = _build("mlp", (13,), 3, hidden="32,16", dropout=0.2, batchnorm=True)
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert mlp(torch.randn(5, 13)).shape == (5, 3)
    linear = _build("mlp", (30,), 1, task="binary", hidden="")
    assert [type(m).__name__ for m in linear] == ["Linear"]
    images = _build("mlp", (1, 8, 8), 10)  # any sample shape: flattened first
    assert images(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(UsageError, match="comma-separated widths"):
        _build("mlp", (4,), 2, hidden="64,x")


@pytest.mark.parametrize(
    ("shape", "pooled"), [((1, 8, 8), False), ((3, 32, 32), False), ((3, 96, 96), True)]
)
def test_cnn_fits_small_and_large_images(shape, pooled):
    cnn = _build("cnn", shape, 7)
    assert cnn.eval()(torch.randn(2, *shape)).shape == (2, 7)
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in cnn) == pooled


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_image_models_refuse_vectors_naming_the_shape(name):
    with pytest.raises(UsageError, match=r"takes images .* have shape \(13,\)"):
        _build(name, (13,), 3)


def test_zoo_first_conv_takes_the_dataset_channels():
    gray = _build("resnet18", (1, 32, 32), 10)
    assert gray.conv1.in_channels == 1 and gray.fc.out_features == 10
    assert gray.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    small = _build("mobilenet_v3_small", (1, 32, 32), 1, task="binary")
    assert small.features[0][0].in_channels == 1
    assert small.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 1)


def test_init_weights_takes_a_bare_torchvision_state_dict(tmp_path):
    from torchvision.models import resnet18

    from toolkit.train.build import load_init_weights

    torch.manual_seed(3)
    reference = resnet18(weights=None, num_classes=4)
    path = tmp_path / "resnet18.pt"
    torch.save(reference.state_dict(), path)
    model = _build("resnet18", (3, 32, 32), 4)
    load_init_weights(model, str(path), "resnet18")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.eval()(x), reference.eval()(x))
