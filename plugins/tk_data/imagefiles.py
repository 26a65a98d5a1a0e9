"""A folder too large for memory, as a torch Dataset: one image decoded per item.

This module imports torch at import time (a Dataset is a torch class, and worker
processes must find it by name); only the ``imagefolder`` loader imports it, and
only for a folder it streams.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tk_data.decode import decode, reason
from toolkit import UsageError


class ImageFiles(torch.utils.data.Dataset):
    """``(uint8 (C, H, W), label)`` per file, decoded as the in-memory path decodes.

    Pixels stay uint8 through the DataLoader (a quarter of float32's bytes between
    processes); the loop scales each batch on the device (``feature_scale``).
    """

    def __init__(self, files: list[str], labels: Any, size: tuple[int, int], mode: str) -> None:
        self.files = list(files)
        # Read by tk's validation split to stratify by class without decoding.
        self.targets = [int(v) for v in labels]
        self.size = (int(size[0]), int(size[1]))
        self.mode = mode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.files[index]
        try:
            pixels, _ = decode(path, self.size, self.mode)
        except Exception as exc:  # passed verify() at load time, yet the pixels are bad
            raise UsageError(
                f"imagefolder: {path}: {reason(exc, path)} (passed verify() when loaded)",
                "fix or remove it, or --data-param check=full to decode every file up front",
            ) from None
        return torch.from_numpy(np.ascontiguousarray(pixels)), self.targets[index]
