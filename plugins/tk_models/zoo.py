"""torchvision's classification models by name, sized to the dataset.

``num_classes`` is the task's outputs and the first convolution takes the dataset's
channels. ``pretrained=NAME`` (``tk train ... --pretrained [NAME]``) is one of the
model's torchvision weights enum members (``default``: its DEFAULT): the model
becomes ``toolkit.pretrained.Pretrained`` (the weights' resize and mean/std as its
first operation) and training loads the weights from the torch hub cache.
"""

from __future__ import annotations

from typing import Any

from tk_models.cnn import image_shape

# name -> one line for `tk list models`. Registered explicitly, not discovered:
# a torchvision upgrade never changes what tk offers.
MODELS = {
    "resnet18": "ResNet-18 (torchvision; --pretrained: ImageNet)",
    "resnet34": "ResNet-34 (torchvision; --pretrained: ImageNet)",
    "resnet50": "ResNet-50 (torchvision; --pretrained: ImageNet)",
    "mobilenet_v2": "MobileNetV2 (torchvision; --pretrained: ImageNet)",
    "mobilenet_v3_small": "MobileNetV3-Small (torchvision; --pretrained: ImageNet)",
    "mobilenet_v3_large": "MobileNetV3-Large (torchvision; --pretrained: ImageNet)",
    "efficientnet_b0": "EfficientNet-B0 (torchvision; --pretrained: ImageNet)",
    "convnext_tiny": "ConvNeXt-Tiny (torchvision; --pretrained: ImageNet)",
}


def build_zoo(
    name: str,
    pretrained: str = "",
    resize: int = 0,
    *,
    input_shape: tuple[int, ...],
    outputs: int,
) -> Any:
    """torchvision's ``name`` for ``input_shape`` images and ``outputs`` logits.

    ``pretrained``: a weights enum member, wrapped with its preprocessing; ``resize``:
    the side the images are resized to first (0: the weights' own; -1: none).
    """
    from torchvision import models

    channels, _, _ = image_shape(name, input_shape)
    model = models.get_model(name, weights=None, num_classes=outputs)
    if channels != 3:
        _adapt_first_conv(model, channels)
    if not pretrained:
        return model
    return _pretrained(name, model, _weights(name, pretrained), resize, channels)


def _weights(name: str, wanted: str) -> Any:
    """The weights enum member called ``wanted`` (``default``: the model's DEFAULT)."""
    from torchvision import models

    from toolkit import UsageError

    enum = models.get_model_weights(name)
    key = wanted.strip().upper()
    if key not in enum.__members__:
        raise UsageError(
            f"model '{name}' has no pretrained weights '{wanted}'; choose "
            f"{', '.join(m.lower() for m in enum.__members__)}",
            f"tk train {name} --pretrained",
        )
    return enum[key]


def _pretrained(name: str, net: Any, weights: Any, resize: int, channels: int) -> Any:
    """``net`` behind ``weights``' preprocessing, its file from the torch hub cache."""
    from toolkit import HubFile, Pretrained, head_names

    pre = weights.transforms()
    side = int(pre.crop_size[0]) if resize == 0 else resize
    mean, std = list(pre.mean), list(pre.std)
    if channels == 1:  # grayscale: the summed first convolution sees the mean channel
        mean, std = [sum(mean) / 3], [sum(std) / 3]
    member = weights.name
    head = head_names(net)[0].rsplit(".", 1)[0]
    return Pretrained(
        net,
        size=(side, side) if side > 0 else None,
        mean=mean,
        std=std,
        head=head,
        weights_name=member,
        source=HubFile(weights.url, f"{name} weights {member}"),
    )


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
