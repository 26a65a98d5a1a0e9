"""Reading image files for a run trained on images: decoded exactly as training did.

A run trained on an image folder records how it decoded (``inputs``, ``kind:
"image"``): the size (height, width), the PIL mode (``L`` or ``RGB``), the resample
filter and the scale. Here a file, or every image in a folder (sorted, recursive,
the order :func:`image_files` gives), goes through the same steps: PIL decode,
``convert(mode)``, a bilinear resize when the size differs, uint8 -> float32 times
the scale. A file that cannot be decoded is one line naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import UsageError
from toolkit.images import RESAMPLE, SUFFIXES, decode_pixels, walk_images

if TYPE_CHECKING:
    import numpy as np


def image_files(path: str | Path) -> list[Path]:
    """The files ``predict`` reads: ``path`` itself, or a folder's images in sorted order."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise UsageError(f"input not found: {p}", "--input image.png, or a folder of images")
    found = [Path(f) for f in walk_images(p)]
    if not found:
        raise UsageError(f"{p} has no images ({', '.join(SUFFIXES[:4])}, ...)")
    return found


def decode(path: Path, inputs: dict[str, Any]) -> np.ndarray:
    """One file as uint8 ``(C, H, W)``, the way the training folder was decoded."""
    from PIL import UnidentifiedImageError

    size = tuple(int(d) for d in inputs["size"])
    try:
        pixels, _ = decode_pixels(path, size, inputs.get("mode", "RGB"),
                                  str(inputs.get("resample", RESAMPLE)))  # fmt: skip
    except UnidentifiedImageError:
        raise UsageError(f"{path}: cannot identify image file") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise UsageError(f"{path}: cannot decode it: {' '.join(str(exc).split())[:120]}") from None
    return pixels


def read_images(path: str | Path, inputs: dict[str, Any]) -> np.ndarray:
    """Every image of ``path`` as float32 ``(N, C, H, W)``, scaled as in training."""
    import numpy as np

    files = image_files(path)
    h, w = (int(d) for d in inputs["size"])
    channels = 1 if inputs.get("mode", "RGB") == "L" else 3
    out = np.empty((len(files), channels, h, w), dtype=np.float32)
    for i, f in enumerate(files):
        out[i] = decode(f, inputs)
    out *= np.float32(inputs.get("scale", 1 / 255))
    return out
