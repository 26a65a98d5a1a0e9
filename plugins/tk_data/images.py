"""The ``imagefolder`` dataset: torchvision's ImageFolder layout, decoded with PIL.

``DIR/<class>/<image>`` (then a seeded, stratified test split), or
``DIR/train/<class>/...`` with optional ``val/`` and ``test/`` beside it. A folder
whose uint8 pixels fit in ``max-memory-mb`` is decoded once, in parallel worker
processes, into one uint8 array (the fast path: after that an epoch is an index
gather on the device). A larger one is streamed: a torch Dataset that decodes in
``__getitem__``, so ``tk train --workers N`` decodes in N processes.

Every file is checked before training starts: in memory by PIL's ``verify()`` and
a full decode, streamed by ``verify()`` (``check=full`` decodes those too). An
unreadable file is skipped and counted (``DataInfo.skipped``; ``--strict-data``
refuses the dataset instead), so an epoch never stops on one bad file.

Imported only when a loader runs: numpy, PIL and torch are imported inside functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tk_data.decode import RESAMPLE, SUFFIXES, decode_chunk, verify, verify_chunk
from tk_data.holdout import check_fraction, split_rows
from toolkit import LEAVING, DataInfo, ImageInputs, Seen, UsageError, Walk, walk_images

DEFAULT_MEMORY_MB = 1024
CHUNK = 256  # files per task sent to a decoding process
POOL_MIN_FILES = 2000  # fewer files decode faster than a pool starts
MAX_POOL = 8
SPLITS = ("train", "val", "test")


@dataclass
class Folder:
    """What a scan found: class names and, per split (or ``all``), (file, label) pairs."""

    root: Path
    classes: list[str]
    items: dict[str, list[tuple[str, int]]]
    layout: str
    left_out: Walk = field(default_factory=Walk)  # links and duplicates not followed


@dataclass
class Part:
    """One split as read: its files and labels, and the pixels when held in memory."""

    files: list[str]
    labels: Any  # int64 numpy array
    pixels: Any = None  # uint8 (n, C, H, W), or None when streamed
    bad: list[tuple[str, str]] = field(default_factory=list)
    resized: int = 0

    def take(self, rows: Any) -> Part:
        """The rows ``rows`` of this split."""
        pixels = None if self.pixels is None else self.pixels[rows]
        return Part([self.files[i] for i in rows], self.labels[rows], pixels)


def load_imagefolder(
    path: str = "",
    size: str = "",
    grayscale: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_memory_mb: int = DEFAULT_MEMORY_MB,
    check: str = "auto",
    decode_workers: int = 0,
) -> dict[str, Any]:
    """Train/(val)/test splits of an image folder, and what the folder taught."""
    check_fraction(test_fraction, "imagefolder")
    folder = scan(_root(path))
    mode = "L" if grayscale else "RGB"
    hw = parse_size(size) if size else _first_size(folder)
    shape = (1 if grayscale else 3, *hw)
    total = sum(len(v) for v in folder.items.values())
    nbytes = total * shape[0] * hw[0] * hw[1]
    stream = nbytes > max_memory_mb * 2**20
    workers = decode_workers or (_cpus() if total >= POOL_MIN_FILES else 1)
    parts = {
        name: _read(items, hw, mode, stream, check == "full", workers)
        for name, items in folder.items.items()
    }
    bad = [b for p in parts.values() for b in p.bad]
    resized = sum(p.resized for p in parts.values())
    parts = _splits(parts, folder, test_fraction, seed)
    binary = len(folder.classes) == 2
    out: dict[str, Any] = {n: _convert(p, hw, mode, binary) for n, p in parts.items()}
    where = f"streamed from disk ({nbytes / 2**20:.0f} MB > max-memory-mb={max_memory_mb})"
    if not stream:
        where = f"in memory ({nbytes / 2**20:.1f} MB uint8)"
    notes = [
        f"{folder.root}: {total - len(bad)} images, {len(folder.classes)} classes "
        f"({folder.layout}); {hw[0]}x{hw[1]} {mode}, {where}"
    ]
    if resized:
        how = "size=" + size if size else "the first image's size; size=HxW to choose"
        notes.append(f"resized {resized} images to {hw[0]}x{hw[1]} ({how})")
    if folder.left_out.skipped:
        notes.append(folder.left_out.summary(folder.root))
    out["info"] = _info(folder, shape, mode, bad, notes)
    return out


def _info(
    folder: Folder, shape: tuple[int, ...], mode: str, bad: list[tuple[str, str]], notes: list[str]
) -> DataInfo:
    """What the folder taught; a skip count first among the notes (--strict-data names it)."""
    if bad:
        notes = [f"skipped {len(bad)} unreadable images (first: {bad[0][0]}: {bad[0][1]})", *notes]
    return DataInfo(
        feature_shape=shape,
        target="binary" if len(folder.classes) == 2 else "multiclass",
        num_classes=len(folder.classes),
        class_names=list(folder.classes),
        feature_scale=1 / 255,
        inputs=ImageInputs(size=tuple(shape[1:]), mode=mode, resample=RESAMPLE, scale=1 / 255),
        notes=notes,
        skipped=len(bad),
    )


def _cpus() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(MAX_POOL, n))


def _root(path: str) -> Path:
    if not path:
        raise UsageError("imagefolder: no folder given", "--data-param path=DIR")
    root = Path(path).expanduser()
    if not root.exists():
        raise UsageError(f"imagefolder: folder not found: {root}", "--data-param path=DIR")
    if not root.is_dir():
        raise UsageError(f"imagefolder: {root} is a file, not a folder of class folders")
    return root


def parse_size(size: str) -> tuple[int, int]:
    """``"32x32"``, ``"28x32"`` (height x width) or ``"32"`` (square)."""
    parts = size.lower().replace(" ", "").split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        hw = ()
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or min(hw) < 1:
        raise UsageError(f"imagefolder: size must be HxW, e.g. 32x32; got {size!r}")
    return hw[0], hw[1]


def scan(root: Path) -> Folder:
    """Classes and files of ``root`` (ImageFolder layout, or train/val/test folders).

    Each file is read once across every class and split, and symbolic links are
    followed only inside their class folder (:func:`toolkit.images.walk_images`):
    a link to a parent, to ``/`` or to another class is left out and counted.
    """
    present = [s for s in SPLITS if (root / s).is_dir()]
    if present and "train" not in present:
        raise UsageError(f"imagefolder: {root} has {'/, '.join(present)}/ but no train/")
    base = root / "train" if present else root
    left_out, seen = Walk(), Seen()
    classes = _class_dirs(base, root, left_out)
    if not present:
        items = {"all": _files(root, classes, seen, left_out)}
        return Folder(root, classes, items, "class folders", left_out)
    items = {"train": _files(base, classes, seen, left_out)}
    for split in present[1:]:
        extra = sorted(set(_class_dirs(root / split, root, left_out, check=False)) - set(classes))
        if extra:
            raise UsageError(
                f"imagefolder: {root / split / extra[0]}: class '{extra[0]}' is not in "
                f"{base}/ (classes: {', '.join(classes)})"
            )
        items[split] = _files(root / split, classes, seen, left_out, subset=True)
    layout = "folders " + ", ".join(f"{s}/" for s in present)
    return Folder(root, classes, items, layout, left_out)


def _class_dirs(base: Path, root: Path, left_out: Walk, check: bool = True) -> list[str]:
    """The class folders of ``base``; a link to a folder outside ``root`` is left out."""
    top = os.path.realpath(root) + os.sep
    here = os.path.realpath(base) + os.sep
    names = []
    for e in os.scandir(base):
        if e.name.startswith(".") or not e.is_dir():
            continue
        target = os.path.realpath(e.path) + os.sep
        if e.is_symlink() and not target.startswith(top):
            left_out.skipped.append((e.path, LEAVING))
        elif e.is_symlink() and here.startswith(target):
            left_out.skipped.append((e.path, "links to a parent folder (a loop)"))
        else:
            names.append(e.name)
    names.sort()
    if check and not names:
        raise UsageError(
            f"imagefolder: {base} has no class folders (expected {base}/<class>/<image>.png)"
        )
    if check and len(names) == 1:
        raise UsageError(
            f"imagefolder: {base} has one class folder ('{names[0]}'); "
            "a classifier needs at least two"
        )
    return names


def _files(
    base: Path, classes: list[str], seen: Seen, left_out: Walk, subset: bool = False
) -> list[tuple[str, int]]:
    """(file, label) for every image under ``base/<class>/`` (sorted, recursive)."""
    out = []
    for label, name in enumerate(classes):
        folder = base / name
        if subset and not folder.is_dir():
            continue
        walk = walk_images(folder, folder, seen)
        left_out.skipped += walk.skipped
        if not walk.files and not subset:
            why = f" ({walk.summary(folder)})" if walk.skipped else ""
            raise UsageError(
                f"imagefolder: {folder} has no images ({', '.join(SUFFIXES[:4])}, ...){why}"
            )
        out += [(f, label) for f in walk.files]
    if not out:
        raise UsageError(f"imagefolder: {base} has no images")
    return out


def _first_size(folder: Folder) -> tuple[int, int]:
    """The (height, width) of the first readable image: the default ``size``."""
    for items in folder.items.values():
        for path, _ in items:
            checked = verify(path)
            if not isinstance(checked, str):
                return checked
    raise UsageError(f"imagefolder: no readable image under {folder.root}")


def _read(
    items: list[tuple[str, int]],
    hw: tuple[int, int],
    mode: str,
    stream: bool,
    full: bool,
    workers: int,
) -> Part:
    """Check every file (and decode it, in memory); unreadable ones are dropped."""
    import numpy as np

    files = [f for f, _ in items]
    labels = np.asarray([label for _, label in items], dtype=np.int64)
    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    decoding = not stream or full
    if decoding:
        results = _map(decode_chunk, [(c, hw, mode) for c in chunks], workers)
    else:
        results = _map(verify_chunk, [(c, hw) for c in chunks], workers)
    pixels = None if stream else np.empty((len(files), 1 if mode == "L" else 3, *hw), np.uint8)
    bad_rows, bad, resized = [], [], 0
    for k, result in enumerate(results):
        chunk_bad, n_resized = result[-2], result[-1]
        bad_rows += [k * CHUNK + i for i, _ in chunk_bad]
        bad += [(chunks[k][i], why) for i, why in chunk_bad]
        resized += n_resized
        if pixels is not None:  # one array filled chunk by chunk: no second full copy
            pixels[k * CHUNK : k * CHUNK + len(chunks[k])] = result[0]
    part = Part(files, labels, pixels)
    if bad_rows:
        part = part.take(np.setdiff1d(np.arange(len(files)), np.asarray(bad_rows)))
    part.bad, part.resized = bad, resized
    return part


def _map(fn: Any, tasks: list[tuple[Any, ...]], workers: int) -> list[Any]:
    """``fn(*task)`` for every task, in worker processes when there are several."""
    if workers <= 1 or len(tasks) <= 1:
        return [fn(*t) for t in tasks]
    import multiprocessing as mp

    # fork: the children need no re-import, and run only PIL and numpy.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(min(workers, len(tasks))) as pool:
        return pool.starmap(fn, tasks)


def _splits(parts: dict[str, Part], folder: Folder, fraction: float, seed: int) -> dict[str, Part]:
    """train/(val)/test: as the folders say, the test split carved when there is none."""
    source = "all" if "all" in parts else "train"
    if source == "all" or "test" not in parts:
        whole = parts.pop(source)
        train, test = split_rows(len(whole.labels), fraction, whole.labels, seed)
        parts["train"], parts["test"] = whole.take(train), whole.take(test)
    for name, part in parts.items():
        if not len(part.labels):
            raise UsageError(f"imagefolder: {folder.root}: no readable images in the {name} split")
    missing = sorted(set(range(len(folder.classes))) - set(parts["train"].labels.tolist()))
    if missing:
        raise UsageError(
            f"imagefolder: {folder.root}: class '{folder.classes[missing[0]]}' has no "
            "readable training images"
        )
    return {n: parts[n] for n in SPLITS if n in parts}


def _convert(part: Part, hw: tuple[int, int], mode: str, binary: bool) -> Any:
    """In memory: (uint8 pixels, labels); streamed: a torch Dataset over the files."""
    import numpy as np

    labels = part.labels.astype(np.float32) if binary else part.labels
    if part.pixels is not None:
        return part.pixels, labels
    from tk_data.imagefiles import ImageFiles

    return ImageFiles(part.files, part.labels, hw, mode)
