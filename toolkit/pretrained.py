"""Pretrained backbones: the weights' preprocessing inside the model, and the weights file.

A model built from pretrained weights is ``Pretrained(net)``: its first operation is
the weights' own preprocessing (resize to their input size, then their mean/std), so
the weights file, every export and ``tk predict`` take raw pixels in [0, 1], as tk's
standardization already does for tables (``toolkit.preprocess``). The new head (the
last linear layer, sized to the dataset's classes) is not loaded; everything else is.

Weights files are read from a local cache only through the safe loader
(``torch.load(weights_only=True)`` or safetensors). A file not in the cache is
downloaded there when the machine is online; offline (``TK_OFFLINE=1``, or no
network), the error is one line naming the file and the folder to put it in.

This module imports torch at import time: only model builders import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.errors import UsageError, one_line
from toolkit.weights import load_weights_file

DOWNLOAD_TIMEOUT = 20.0  # seconds for the first byte: an offline machine fails fast


def offline() -> bool:
    """True when downloads must not be tried (``TK_OFFLINE``/``HF_HUB_OFFLINE`` set)."""
    return any(os.environ.get(k, "") not in ("", "0") for k in ("TK_OFFLINE", "HF_HUB_OFFLINE"))


@dataclass(frozen=True)
class HubFile:
    """A torch hub checkpoint: ``<TORCH_HOME>/hub/checkpoints/<file>``, from ``url``."""

    url: str
    what: str  # e.g. "resnet18 weights IMAGENET1K_V1"

    @property
    def path(self) -> Path:
        """Where torch hub keeps it (TORCH_HOME, else ~/.cache/torch)."""
        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(self.url)

    def locate(self) -> Path:
        """The cached file, downloaded first when missing and the machine is online."""
        path = self.path
        if path.is_file():
            return path
        if not offline():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                _download(self.url, path)
                return path
            except Exception as exc:
                reason = one_line(exc, 120)
            else:  # pragma: no cover
                reason = ""
        else:
            reason = "offline (TK_OFFLINE)"
        raise UsageError(
            f"{self.what} are not cached and cannot be downloaded ({reason}): "
            f"put {path.name} in {path.parent}/ (TORCH_HOME={Path(torch.hub.get_dir()).parent})",
            f"download {self.url} there on a machine that is online",
        )

    def read(self, path: Path) -> dict[str, torch.Tensor]:
        """The state dict in the file (safe loading only)."""
        return load_weights_file(path)


def _download(url: str, path: Path) -> None:
    import socket

    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=False)
    finally:
        socket.setdefaulttimeout(before)


class Pretrained(nn.Module):
    """``net`` behind its weights' preprocessing: resize to ``size``, then (x - mean) / std.

    :param head: the name of the new last layer (not loaded from the weights file).
    :param source: where the weights file comes from (``locate()`` and ``read(path)``);
        None when the model is only rebuilt (its trained weights come from the run).
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        size: tuple[int, int] | None,
        mean: list[float],
        std: list[float],
        head: str,
        weights_name: str,
        source: Any = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.size = tuple(size) if size else None
        self.head = head
        self.weights_name = weights_name
        self.source = source
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Resize (when the images differ from the weights' size), standardize, run."""
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.net((x - self.mean) / self.std)

    def load_pretrained(self) -> Path:
        """Load the weights file into ``net`` (all but the head); returns the file read."""
        if self.source is None:
            raise UsageError(f"no pretrained weights file is known for {self.weights_name}")
        path = self.source.locate()
        load_matching(self.net, self.source.read(path), self.head, str(path))
        return path


def load_matching(net: nn.Module, state: dict[str, torch.Tensor], head: str, origin: str) -> None:
    """Load ``state`` into ``net`` except the ``head`` layer; a 3-channel first convolution
    is summed over its input channels for grayscale images (timm's way)."""
    own = net.state_dict()
    picked = {}
    for key, value in state.items():
        if key.startswith(head + "."):
            continue
        mine = own.get(key)
        grayscale = (
            mine is not None and value.ndim == 4 and tuple(mine.shape[:2]) != tuple(value.shape[:2])
        )
        if grayscale and mine.shape[1] == 1 and value.shape[1] == 3:
            value = value.sum(dim=1, keepdim=True)
        picked[key] = value
    missing = [k for k in own if k not in picked and not k.startswith(head + ".")]
    try:
        unexpected = net.load_state_dict(picked, strict=False).unexpected_keys
    except RuntimeError as exc:
        raise UsageError(
            f"{origin} does not fit the model: {one_line(exc, 200, typed=False)}"
        ) from None
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise UsageError(
            f"{origin} does not fit the model: {len(missing)} missing and {len(unexpected)} "
            f"unexpected tensors (first: {first})"
        )


def head_names(model: nn.Module) -> list[str]:
    """The parameter names of a model's head: a Pretrained model's own, else its last
    linear layer's (what ``--freeze backbone`` leaves trainable)."""
    prefix = None
    for name, module in model.named_modules():
        if isinstance(module, Pretrained):
            prefix = (name + ".net." if name else "net.") + module.head
    if prefix is None:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise UsageError(
                "--freeze backbone needs a head: this model has no linear layer",
                "drop --freeze",
            )
        prefix = linear[-1]
    names = [n for n, _ in model.named_parameters() if n.startswith(prefix + ".")]
    return names
