"""``cnn``: a small convolutional network for any (C, H, W) images.

``blocks`` of 3x3 conv -> BatchNorm -> ReLU, the channels doubling each block and
a 2x2 max-pool after each while the image is at least 8 pixels across; then the
remaining grid is flattened when it is small (4x4 or less: small images keep
their layout) or averaged (large images), and one linear layer gives the outputs.
"""

from __future__ import annotations

from typing import Any

from toolkit import UsageError

POOL_MIN = 8  # pool only while the image is at least this wide and high
FLATTEN_MAX = 16  # flatten a grid of at most this many cells; average a larger one


def image_shape(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of an image input, or a UsageError naming the shape the data has."""
    if len(input_shape) != 3:
        raise UsageError(
            f"model '{model}' takes images (channels, height, width); the dataset's samples "
            f"have shape {tuple(input_shape)}",
            "tk train mlp, or an image dataset such as --dataset imagefolder",
        )
    c, h, w = (int(d) for d in input_shape)
    return c, h, w


def build_cnn(
    channels: int = 32,
    blocks: int = 3,
    dropout: float = 0.1,
    *,
    input_shape: tuple[int, ...],
    outputs: int,
) -> Any:
    """The CNN for images of ``input_shape`` and ``outputs`` logits or values."""
    from torch import nn

    cin, h, w = image_shape("cnn", input_shape)
    if channels < 1 or blocks < 1:
        raise UsageError("cnn: channels and blocks must be at least 1", "--param channels=32")
    layers: list[nn.Module] = []
    for i in range(blocks):
        cout = channels * 2**i
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        if min(h, w) >= POOL_MIN:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        cin = cout
    if h * w > FLATTEN_MAX:
        layers.append(nn.AdaptiveAvgPool2d(1))
        h = w = 1
    layers.append(nn.Flatten())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(cin * h * w, outputs))
    return nn.Sequential(*layers)
