"""Image files as tk reads them: which files count, in which order, and one decode.

Training (the ``imagefolder`` dataset, in memory or streamed) and ``tk predict``
walk folders with the same :func:`walk_images` (links followed only inside the
folder, each file once, never a loop) and call the same :func:`decode_pixels`, so
a deployed model sees the pixels its run was trained on: PIL, 16-bit pixels to 8
(:func:`eight_bit`), ``convert(mode)``, a resize when the size differs, uint8
``(C, H, W)``. Nothing here imports numpy or PIL at import time.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
RESAMPLE = "bilinear"  # the resize filter training uses, recorded in every image run
LEAVING = "symbolic links leaving their folder"  # why a link is not followed


@dataclass
class Walk:
    """What a walk found: image files in order, and what it left out and why."""

    files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    def summary(self, base: str | Path) -> str:
        """One line counting what was left out, by reason, with the first of each."""
        reasons: dict[str, list[str]] = {}
        for path, why in self.skipped:
            reasons.setdefault(why, []).append(os.path.relpath(path, base))
        parts = [
            f"{why}: {len(p)} ({p[0]}{', ...' if len(p) > 1 else ''})" for why, p in reasons.items()
        ]
        return f"left out {len(self.skipped)} paths under {base}: " + "; ".join(parts)


@dataclass
class Seen:
    """Files and folders already walked, by (device, inode): shared across walks."""

    files: set[tuple[int, int]] = field(default_factory=set)
    folders: set[tuple[int, int]] = field(default_factory=set)


def walk_images(
    folder: str | Path, root: str | Path | None = None, seen: Seen | None = None
) -> Walk:
    """Every image below ``folder``: sorted, recursive, hidden files and folders skipped.

    Symbolic links are followed only to a file or folder inside ``root`` (default:
    ``folder``), so a link to ``/`` or to another class's folder is left out, never
    walked; each file is taken once (by device and inode: a second link or hard
    link to it is left out), and a folder already walked (a link to a parent: a
    loop) is not walked again. Pass the same ``seen`` (a :class:`Seen`) to several
    walks to take each file once across them (a dataset's classes and splits).
    """
    walk = Walk()
    seen = seen if seen is not None else Seen()
    top = os.path.realpath(root if root is not None else folder)
    stat = os.stat(folder)
    seen.folders.add((stat.st_dev, stat.st_ino))
    _walk(str(folder), top, seen, walk)
    return walk


def _walk(folder: str, top: str, seen: Seen, walk: Walk) -> None:
    """Each folder's files, then its sub-folders, depth first: the order ``os.walk`` gives."""
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            walk.skipped.append((current, f"unreadable folders ({exc.strerror})"))
            continue
        folders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            sub = _take(entry, top, seen, walk)
            if sub:
                folders.append(sub)
        stack += reversed(folders)


def _take(entry: os.DirEntry, top: str, seen: Seen, walk: Walk) -> str:
    """Record an image file in ``walk``; return a folder still to walk, else ``""``."""
    try:
        is_dir = entry.is_dir()
    except OSError:
        is_dir = False
    if not is_dir and os.path.splitext(entry.name)[1].lower() not in SUFFIXES:
        return ""  # not an image: not read, so not reported
    why = _outside(entry, top)
    if why:
        walk.skipped.append((entry.path, why))
        return ""
    try:
        st = entry.stat()  # follows a link (already known to stay inside ``top``)
    except OSError:
        walk.skipped.append((entry.path, "broken links"))
        return ""
    key = (st.st_dev, st.st_ino)
    if is_dir:
        if key in seen.folders:
            walk.skipped.append((entry.path, "folders already walked (a link loop)"))
            return ""
        seen.folders.add(key)
        return entry.path
    if key in seen.files:
        walk.skipped.append((entry.path, "files already read through another path"))
    else:
        seen.files.add(key)
        walk.files.append(entry.path)
    return ""


def _outside(entry: os.DirEntry, top: str) -> str:
    """Why a symbolic link is not followed (it leaves ``top``), or ``""``."""
    if not entry.is_symlink():
        return ""
    target = os.path.realpath(entry.path)
    if target == top or target.startswith(top.rstrip(os.sep) + os.sep):
        return ""
    return LEAVING


def decode_pixels(
    path: str | Path, size: tuple[int, int], mode: str, resample: str = RESAMPLE
) -> tuple[Any, bool]:
    """(uint8 array (C, H, W), whether it was resized) of one image file.

    ``convert`` decodes every pixel, so a truncated or corrupt file raises here
    (PIL's own exception: the caller words it). 16-bit pixels are scaled to 8 bits
    first (:func:`eight_bit`): PIL's own ``convert`` would clip them at 255.
    """
    import numpy as np
    from PIL import Image

    h, w = size
    with open_image(path) as im:
        img = eight_bit(im).convert(mode)
    resized = img.size != (w, h)
    if resized:
        img = img.resize((w, h), Image.Resampling[resample.upper()])
    a = np.array(img)  # a writable copy: torch.from_numpy warns on a read-only one
    return (a[None] if a.ndim == 2 else a.transpose(2, 0, 1)), resized


def open_image(path: str | Path) -> Any:
    """``PIL.Image.open``, with an image over PIL's ``MAX_IMAGE_PIXELS`` an error.

    PIL only warns up to twice that limit (and raises beyond): a decompression bomb
    either way, refused like any unreadable file rather than decoded, and never a
    Python warning printed in the middle of tk's output.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


# Grayscale modes wider than 8 bits: PIL opens a 16-bit grayscale PNG as I;16.
WIDE_GRAY = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def unsupported_mode(mode: str) -> str:
    """Why tk refuses to decode a PIL mode, or ``""``: float pixels have no fixed range."""
    if mode == "F" or mode.startswith("F;"):
        return f"mode {mode}: 32-bit float pixels (tk reads 8- and 16-bit images)"
    return ""


def eight_bit(im: Any) -> Any:
    """``im`` with 8-bit channels: 16-bit grayscale kept by its high byte (``v >> 8``).

    The high byte is what PIL itself keeps of a 16-bit RGB(A) PNG, so a 16-bit gray
    image and the same image saved as 16-bit RGB decode to the same pixels. Mode
    ``I`` (32-bit integers) is read as 16-bit when its values fit 0..65535, else
    refused, as are float pixels (a ValueError the caller words).
    """
    import numpy as np
    from PIL import Image

    why = unsupported_mode(im.mode)
    if why:
        raise ValueError(why)
    if im.mode not in WIDE_GRAY:
        return im
    a = np.asarray(im)
    if a.size and (int(a.min()) < 0 or int(a.max()) > 0xFFFF):
        raise ValueError(
            f"mode {im.mode}: values {int(a.min())}..{int(a.max())} do not fit 16 bits "
            "(tk reads 8- and 16-bit images)"
        )
    return Image.fromarray((a.astype(np.uint32) >> 8).astype(np.uint8), "L")
