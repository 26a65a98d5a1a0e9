"""Decoding one image file as training sees it: PIL, a mode, a size, uint8 (C, H, W).

The decode itself is :func:`toolkit.images.decode_pixels`, the one ``tk predict``
calls with the run's record (``inputs``: size, mode, resample).
Functions here run in worker processes too, so they are module-level and small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit import IMAGE_SUFFIXES as SUFFIXES
from toolkit import RESAMPLE, decode_pixels, open_image, unsupported_mode

__all__ = ["RESAMPLE", "SUFFIXES", "decode", "decode_chunk", "reason", "verify", "verify_chunk"]


def decode(path: str | Path, size: tuple[int, int], mode: str) -> tuple[Any, bool]:
    """(uint8 array (C, H, W), whether it was resized): :func:`toolkit.images.decode_pixels`."""
    return decode_pixels(path, size, mode, RESAMPLE)


def verify(path: str | Path) -> tuple[int, int] | str:
    """The image's (height, width) when PIL's ``verify()`` passes, else why not.

    ``verify`` reads the file's structure and checksums (PNG CRCs) without decoding
    the pixels: the cheap check for the streamed path. A mode tk cannot scale to
    8 bits (float pixels) is refused here too.
    """

    try:
        with open_image(path) as im:
            w, h = im.size
            refused = unsupported_mode(im.mode)
            im.verify()
    except Exception as exc:  # any failure of a user's file is a reason to skip it
        return reason(exc, path)
    return refused or (h, w)


def reason(exc: BaseException, path: str | Path) -> str:
    """Why a file cannot be read, in a few words (the path itself left out)."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "cannot identify image file"
    text = " ".join(str(exc).replace(repr(str(path)), "").replace(str(path), "").split())
    return f"{type(exc).__name__}: {text}"[:120] if text else type(exc).__name__


def decode_chunk(
    paths: list[str], size: tuple[int, int], mode: str
) -> tuple[Any, list[tuple[int, str]], int]:
    """Decode a chunk of files: (uint8 (n, C, H, W), [(index, why)], resized).

    Rows of unreadable files are left zero and listed, so the caller drops them.
    """
    import numpy as np

    channels = 1 if mode == "L" else 3
    out = np.zeros((len(paths), channels, *size), dtype=np.uint8)
    bad: list[tuple[int, str]] = []
    resized = 0
    for i, p in enumerate(paths):
        # No verify() first: convert() in decode reads every pixel and fails on what
        # verify would refuse, and a second open would read each file twice.
        try:
            out[i], was_resized = decode(p, size, mode)
        except Exception as exc:  # any failure of a user's file is a reason to skip it
            bad.append((i, reason(exc, p)))
            continue
        resized += was_resized
    return out, bad, resized


def verify_chunk(paths: list[str], size: tuple[int, int]) -> tuple[list[tuple[int, str]], int]:
    """``verify()`` a chunk of files: ([(index, why)], how many are not ``size``)."""
    bad: list[tuple[int, str]] = []
    other = 0
    for i, p in enumerate(paths):
        checked = verify(p)
        if isinstance(checked, str):
            bad.append((i, checked))
        else:
            other += checked != tuple(size)
    return bad, other
