"""torchvision's classification models by name, sized to the dataset.

``weights=None`` always (tk never downloads); ``num_classes`` is the task's outputs
and the first convolution takes the dataset's channels. Pretrained weights come
from a local file through ``tk train ... --init-weights FILE``.
"""

from __future__ import annotations

from typing import Any

from tk_models.cnn import image_shape

# name -> one line for `tk list models`. Registered explicitly, not discovered:
# a torchvision upgrade never changes what tk offers.
MODELS = {
    "resnet18": "ResNet-18 (torchvision, weights=None)",
    "resnet34": "ResNet-34 (torchvision, weights=None)",
    "resnet50": "ResNet-50 (torchvision, weights=None)",
    "mobilenet_v2": "MobileNetV2 (torchvision, weights=None)",
    "mobilenet_v3_small": "MobileNetV3-Small (torchvision, weights=None)",
    "mobilenet_v3_large": "MobileNetV3-Large (torchvision, weights=None)",
    "efficientnet_b0": "EfficientNet-B0 (torchvision, weights=None)",
    "convnext_tiny": "ConvNeXt-Tiny (torchvision, weights=None)",
}


def build_zoo(name: str, *, input_shape: tuple[int, ...], outputs: int) -> Any:
    """torchvision's ``name`` for ``input_shape`` images and ``outputs`` logits."""
    from torchvision import models

    channels, _, _ = image_shape(name, input_shape)
    model = models.get_model(name, weights=None, num_classes=outputs)
    if channels != 3:
        _adapt_first_conv(model, channels)
    return model


def _adapt_first_conv(model: Any, channels: int) -> None:
    """Replace the first Conv2d by one taking ``channels`` inputs (same geometry)."""
    from torch import nn

    for parent in model.modules():
        for key, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                setattr(
                    parent,
                    key,
                    nn.Conv2d(
                        channels,
                        child.out_channels,
                        child.kernel_size,
                        stride=child.stride,
                        padding=child.padding,
                        dilation=child.dilation,
                        groups=1,
                        bias=child.bias is not None,
                    ),
                )
                return
