"""Reading image files for a run trained on images: decoded exactly as training did.

A run trained on an image folder records how it decoded (``inputs``, ``kind:
"image"``): the size (height, width), the PIL mode (``L`` or ``RGB``), the resample
filter and the scale. Here a file, or every image in a folder (sorted, recursive,
links followed only inside the folder, each file once: the order
:func:`image_files` gives), goes through the same steps: PIL decode, 16-bit pixels
to 8, ``convert(mode)``, a bilinear resize when the size differs, uint8 -> float32
times the scale. A single file that cannot be decoded is one line naming it; in a
folder such a file is skipped, as training skips it, and one warning names it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import UsageError
from toolkit.images import RESAMPLE, SUFFIXES, Walk, decode_pixels, walk_images

if TYPE_CHECKING:
    import numpy as np

SHOWN = 3  # skipped files named in the warning


def _walk(path: str | Path) -> Walk:
    """``path`` itself, or a folder's images in sorted order (what was left out with them)."""
    p = Path(path)
    if p.is_file():
        return Walk([str(p)])
    if not p.is_dir():
        raise UsageError(f"input not found: {p}", "--input image.png, or a folder of images")
    walk = walk_images(p)
    if not walk.files:
        why = f" ({walk.summary(p)})" if walk.skipped else ""
        raise UsageError(f"{p} has no images ({', '.join(SUFFIXES[:4])}, ...){why}")
    return walk


def image_files(path: str | Path) -> list[Path]:
    """The files ``predict`` reads: ``path`` itself, or a folder's images in sorted order."""
    return [Path(f) for f in _walk(path).files]


def decode(path: Path, inputs: dict[str, Any]) -> np.ndarray:
    """One file as uint8 ``(C, H, W)``, the way the training folder was decoded."""
    from PIL import UnidentifiedImageError

    size = tuple(int(d) for d in inputs["size"])
    try:
        pixels, _ = decode_pixels(path, size, inputs.get("mode", "RGB"),
                                  str(inputs.get("resample", RESAMPLE)))  # fmt: skip
    except UnidentifiedImageError:
        raise UsageError(f"{path}: cannot identify image file") from None
    except Exception as exc:  # a user's file: a bomb, truncated, 32-bit float pixels...
        what = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise UsageError(f"{path}: cannot decode it: {what}") from None
    return pixels


def read_images(path: str | Path, inputs: dict[str, Any]) -> np.ndarray:
    """Every readable image of ``path`` as float32 ``(N, C, H, W)``, scaled as in training."""
    return read_image_rows(path, inputs)[0]


def read_image_rows(path: str | Path, inputs: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """(float32 ``(N, C, H, W)``, each row's file relative to the folder given).

    A file of a folder that cannot be decoded is skipped and named in one
    ``tk: warning:`` line, as are links the walk did not follow; a folder with no
    readable image, or a single file that cannot be read, is a UsageError.
    """
    import numpy as np

    p = Path(path)
    walk = _walk(p)
    h, w = (int(d) for d in inputs["size"])
    channels = 1 if inputs.get("mode", "RGB") == "L" else 3
    out = np.empty((len(walk.files), channels, h, w), dtype=np.float32)
    kept, bad = [], []
    for f in walk.files:
        try:
            out[len(kept)] = decode(Path(f), inputs)
        except UsageError as exc:
            if p.is_file():
                raise
            bad.append(exc.message)
            continue
        kept.append(f)
    base = p if p.is_dir() else p.parent
    if bad and not kept:
        raise UsageError(f"{p}: no readable image among {len(bad)} (first: {bad[0]})")
    _warn(base, walk, bad)
    out = out[: len(kept)]
    out *= np.float32(inputs.get("scale", 1 / 255))
    return out, [str(Path(f).relative_to(base)) for f in kept]


def _warn(base: Path, walk: Walk, bad: list[str]) -> None:
    """One warning line for the unreadable files skipped, one for links not followed."""
    if bad:
        shown = "; ".join(bad[:SHOWN]) + ("; ..." if len(bad) > SHOWN else "")
        print(
            f"tk: warning: skipped {len(bad)} of {len(walk.files)} images that cannot be "
            f"read: {shown}",
            file=sys.stderr,
        )
    if walk.skipped:
        print(f"tk: warning: {walk.summary(base)}", file=sys.stderr)
