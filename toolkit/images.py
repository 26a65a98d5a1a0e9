"""Image files as tk reads them: which files count, in which order, and one decode.

Training (the ``imagefolder`` dataset, in memory or streamed) and ``tk predict``
call the same :func:`decode_pixels`, so a deployed model sees the pixels its run
was trained on: PIL, ``convert(mode)``, a resize when the size differs, uint8
``(C, H, W)``. Nothing here imports numpy or PIL at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
RESAMPLE = "bilinear"  # the resize filter training uses, recorded in every image run


def walk_images(folder: str | Path) -> list[str]:
    """Every image below ``folder``: sorted, recursive, hidden files and folders skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in SUFFIXES
        ]
    return found


def decode_pixels(
    path: str | Path, size: tuple[int, int], mode: str, resample: str = RESAMPLE
) -> tuple[Any, bool]:
    """(uint8 array (C, H, W), whether it was resized) of one image file.

    ``convert`` decodes every pixel, so a truncated or corrupt file raises here
    (PIL's own exception: the caller words it).
    """
    import numpy as np
    from PIL import Image

    h, w = size
    with Image.open(path) as im:
        img = im.convert(mode)
    resized = img.size != (w, h)
    if resized:
        img = img.resize((w, h), Image.Resampling[resample.upper()])
    a = np.array(img)  # a writable copy: torch.from_numpy warns on a read-only one
    return (a[None] if a.ndim == 2 else a.transpose(2, 0, 1)), resized
