"""Training-time augmentation of images: presets, a parser, and two ways of applying it.

``--augment`` names a preset (``none``, ``light``, ``standard``) or a list such as
``crop=0.8,flip,rotate=10,color=0.2,trivial,erase=0.25,mixup=0.2,cutmix=1.0``
(a preset may start a list: ``standard,flip``).
Only training batches are augmented: validation, test and exported graphs never.

- In-memory (uint8) splits are augmented per batch on the training device
  (:class:`BatchAugment`): every sample draws its own crop, angle, flip, colour
  factors and erased box from one generator, and one ``affine_grid`` /
  ``grid_sample`` call moves the whole batch; no per-sample Python. TrivialAugment
  (torchvision ``transforms.v2``) runs once per group of samples, and MixUp /
  CutMix (``transforms.v2``) once per batch, as they are defined.
- Streamed folders are augmented per sample in the DataLoader workers with the
  same operations from ``transforms.v2`` (:func:`sample_transform`,
  :class:`AugmentedItems`); MixUp / CutMix still run per batch on the device.

Every draw is seeded from (seed, epoch, batch or sample position, rank), so a run
is deterministic under its seed and a resumed run (even mid-epoch) augments
exactly as the uninterrupted one did: there is no generator state to save.

Flips are never in a preset: a flipped 2, 3, 7 or a flipped word is another
thing (or nothing). Ask for ``flip`` when mirror images mean the same class.

torch and torchvision are imported inside functions only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from toolkit.errors import UsageError

if TYPE_CHECKING:
    import torch

# name -> (default value, lowest, highest, what the value means); None: takes no value.
OPS: dict[str, tuple[float | None, float, float, str]] = {
    "crop": (0.8, 0.05, 1.0, "smallest area kept by the random resized crop"),
    "flip": (None, 0, 0, "horizontal flip, half of the samples"),
    "rotate": (10.0, 0.0, 180.0, "largest rotation in degrees"),
    "color": (0.2, 0.0, 1.0, "brightness, contrast and saturation jitter"),
    "trivial": (None, 0, 0, "TrivialAugmentWide (one random operation per sample group)"),
    "erase": (0.25, 0.0, 1.0, "probability of erasing a random box"),
    "mixup": (0.2, 1e-3, 10.0, "MixUp's Beta(alpha, alpha)"),
    "cutmix": (1.0, 1e-3, 10.0, "CutMix's Beta(alpha, alpha)"),
}
# No flips in a preset: they change the meaning of digits and text.
PRESETS = {
    "none": "",
    "light": "crop=0.9,color=0.1",
    "standard": "crop=0.8,rotate=10,color=0.2",
}
MIXING = ("mixup", "cutmix")
GROUPS = 8  # TrivialAugment draws one operation per group of samples


@dataclass(frozen=True)
class Augmentation:
    """A parsed ``--augment``: what was asked and the operations it means, in order."""

    spec: str
    ops: tuple[tuple[str, float | None], ...]

    def value(self, name: str) -> float | None:
        """The value of operation ``name`` (None when absent or valueless)."""
        return dict(self.ops).get(name)

    def has(self, name: str) -> bool:
        """True when operation ``name`` is asked for."""
        return any(k == name for k, _ in self.ops)

    def to_json(self) -> dict[str, Any]:
        """What ``config.json`` records."""
        return {"spec": self.spec, "ops": {k: v for k, v in self.ops}}


def parse(spec: str | None) -> Augmentation | None:
    """A preset or a comma-separated list; None for no augmentation (``none``)."""
    if spec is None:
        return None
    text = spec.strip().lower()
    # A preset may be extended: "standard,mixup=0.2".
    items = ",".join(PRESETS.get(p.strip(), p) for p in text.split(","))
    ops: dict[str, float | None] = {}
    for item in filter(None, (p.strip() for p in items.split(","))):
        name, _, raw = item.partition("=")
        name = name.strip()
        if name not in OPS:
            raise UsageError(
                f"--augment: unknown operation '{name}'; choose presets "
                f"{', '.join(PRESETS)} or operations {', '.join(OPS)}",
                "--augment standard",
            )
        ops[name] = _value(name, raw.strip())
    if not ops:
        return None
    order = [k for k in OPS if k in ops]  # applied in a fixed order, whatever was typed
    return Augmentation(spec.strip(), tuple((k, ops[k]) for k in order))


def _value(name: str, raw: str) -> float | None:
    default, lo, hi, meaning = OPS[name]
    if default is None:
        if raw:
            raise UsageError(f"--augment: '{name}' takes no value, got '{name}={raw}'")
        return None
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (lo <= value <= hi):
        raise UsageError(
            f"--augment: {name}={raw} is out of range; {name} is the {meaning}, "
            f"in [{lo:g}, {hi:g}]",
            f"--augment {name}={default:g}",
        )
    return value


def check(aug: Augmentation, shape: tuple[int, ...], target: str, integer: bool) -> None:
    """Refuse what cannot apply to a dataset: non-images, mixing without classes."""
    if len(shape) != 3:
        raise UsageError(
            f"--augment applies to images (channels, height, width); this dataset's samples "
            f"have shape {tuple(shape)}",
            "drop --augment",
        )
    mixing = [k for k in MIXING if aug.has(k)]
    if mixing and target != "multiclass":
        raise UsageError(
            f"--augment {mixing[0]} mixes class labels: it needs a multiclass dataset, "
            f"this one is {target}",
            "drop mixup/cutmix from --augment",
        )
    if aug.has("trivial") and not integer:
        raise UsageError(
            "--augment trivial needs 8-bit images (TrivialAugment's operations are defined "
            "on pixel values 0..255)",
            "drop trivial from --augment",
        )


def seed_for(seed: int, epoch: int, position: int, rank: int = 0) -> int:
    """The seed of one batch (or one sample): the same numbers on every run and resume."""
    return ((((seed * 1_000_003) + epoch) * 1_000_033 + position) * 1_009 + rank) % (2**62)


class BatchAugment:
    """Augments a training batch on its device; targets become soft for MixUp/CutMix.

    :param aug: the operations.
    :param classes: outputs of a multiclass model (MixUp/CutMix's one-hot width).
    :param clamp: keep values in [0, 1] (images scaled from integers).
    :param mixing_only: streamed data: the workers did the per-sample operations.
    """

    def __init__(
        self, aug: Augmentation, seed: int, classes: int, clamp: bool, mixing_only: bool = False
    ) -> None:
        self.aug, self.seed, self.classes, self.clamp = aug, seed, classes, clamp
        self.mixing_only = mixing_only
        self.gen: Any = None
        self.mix = _mixer(aug, classes)

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, epoch: int, index: int, rank: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, targets for the loss)`` of batch ``index`` of ``epoch``."""
        import torch

        s = seed_for(self.seed, epoch, index, rank)
        if self.gen is None or self.gen.device != x.device:
            self.gen = torch.Generator(device=x.device)
        self.gen.manual_seed(s)
        with torch.no_grad():
            if not self.mixing_only:
                x = self._per_sample(x, s)
            if self.mix is not None:
                with torch.random.fork_rng(devices=[]):
                    torch.default_generator.manual_seed(s)
                    x, y = self.mix(x, y.long())
        return x, y

    def _per_sample(self, x: torch.Tensor, s: int) -> torch.Tensor:
        a, g = self.aug, self.gen
        if a.has("crop") or a.has("rotate") or a.has("flip"):
            x = geometric(x, g, a.value("crop"), a.value("rotate"), a.has("flip"))
        if a.has("trivial"):
            x = trivial(x, s)
        if a.has("color"):
            x = color(x, g, float(a.value("color") or 0), self.clamp)
        if a.has("erase"):
            x = erase(x, g, float(a.value("erase") or 0))
        return x


def _uniform(g: Any, n: int, lo: float, hi: float, device: Any) -> torch.Tensor:
    import torch

    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def geometric(
    x: torch.Tensor, g: Any, crop: float | None, degrees: float | None, flip: bool
) -> torch.Tensor:
    """Random resized crop, rotation and flip of every sample: one grid_sample call."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    dev = x.device
    sx = sy = torch.ones(n, device=dev)
    if crop is not None:
        area = _uniform(g, n, crop, 1.0, dev)
        ratio = torch.exp(_uniform(g, n, math.log(3 / 4), math.log(4 / 3), dev))
        sx = torch.sqrt(area * ratio).clamp(max=1.0)
        sy = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (_uniform(g, n, -1.0, 1.0, dev)) * (1 - sx)
    cy = (_uniform(g, n, -1.0, 1.0, dev)) * (1 - sy)
    angle = _uniform(g, n, -(degrees or 0.0), degrees or 0.0, dev) * (math.pi / 180)
    if flip:
        sx = sx * torch.where(torch.rand(n, generator=g, device=dev) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # The rotation is in pixels (a square turn on a wide image stays square), expressed
    # in the normalized coordinates affine_grid maps: diag(1/w, 1/h) R diag(w, h) S.
    theta = torch.stack(
        [
            torch.stack([cos * sx, -sin * sy * h / w, cx], 1),
            torch.stack([sin * sx * w / h, cos * sy, cy], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def color(x: torch.Tensor, g: Any, jitter: float, clamp: bool) -> torch.Tensor:
    """Brightness, contrast and (for RGB) saturation factors drawn per sample."""
    n, c = x.shape[:2]
    shape = (n, 1, 1, 1)
    b = _uniform(g, n, 1 - jitter, 1 + jitter, x.device).view(shape)
    k = _uniform(g, n, 1 - jitter, 1 + jitter, x.device).view(shape)
    s = _uniform(g, n, 1 - jitter, 1 + jitter, x.device).view(shape)
    x = _clamped(x * b, clamp)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = _clamped((x - mean) * k + mean, clamp)
    if c == 3:
        gray = _gray(x)
        x = _clamped((x - gray) * s + gray, clamp)
    return x


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x
    r, gr, b = x.unbind(1)
    return (0.2989 * r + 0.587 * gr + 0.114 * b).unsqueeze(1)


def _clamped(x: torch.Tensor, clamp: bool) -> torch.Tensor:
    return x.clamp(0.0, 1.0) if clamp else x


def erase(x: torch.Tensor, g: Any, p: float) -> torch.Tensor:
    """RandomErasing's box (2-33% of the area, aspect 0.3-3.3) zeroed with probability p."""
    import torch

    n, _, h, w = x.shape
    dev = x.device
    area = _uniform(g, n, 0.02, 0.33, dev) * (h * w)
    ratio = torch.exp(_uniform(g, n, math.log(0.3), math.log(3.3), dev))
    bh = torch.sqrt(area * ratio).clamp(1, h).floor()
    bw = torch.sqrt(area / ratio).clamp(1, w).floor()
    top = (torch.rand(n, generator=g, device=dev) * (h - bh + 1)).floor()
    left = (torch.rand(n, generator=g, device=dev) * (w - bw + 1)).floor()
    on = torch.rand(n, generator=g, device=dev) < p
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    box = (
        (rows >= top.view(n, 1, 1))
        & (rows < (top + bh).view(n, 1, 1))
        & (cols >= left.view(n, 1, 1))
        & (cols < (left + bw).view(n, 1, 1))
        & on.view(n, 1, 1)
    )
    return x.masked_fill(box.unsqueeze(1), 0.0)


def trivial(x: torch.Tensor, s: int) -> torch.Tensor:
    """``transforms.v2.TrivialAugmentWide`` on 8-bit pixels, one operation per group."""
    import torch
    from torchvision.transforms import v2

    op = v2.TrivialAugmentWide()
    pixels = (x * 255).round_().clamp_(0, 255).to(torch.uint8)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(s)
        parts = [op(chunk) for chunk in pixels.chunk(min(GROUPS, len(pixels)))]
    return torch.cat(parts).to(x.dtype).div_(255)


def _mixer(aug: Augmentation, classes: int) -> Any:
    """MixUp and/or CutMix from ``transforms.v2`` (one of them per batch when both)."""
    chosen = [(k, aug.value(k)) for k in MIXING if aug.has(k)]
    if not chosen:
        return None
    from torchvision.transforms import v2

    made = [
        v2.MixUp(alpha=float(v or 0), num_classes=classes)
        if k == "mixup"
        else v2.CutMix(alpha=float(v or 0), num_classes=classes)
        for k, v in chosen
    ]
    return made[0] if len(made) == 1 else v2.RandomChoice(made)


def sample_transform(aug: Augmentation, shape: tuple[int, ...]) -> Any:
    """The per-sample operations as a ``transforms.v2`` pipeline (uint8 C x H x W in and
    out), for DataLoader workers; MixUp/CutMix stay per batch."""
    from torchvision.transforms import v2

    c, h, w = shape
    steps: list[Any] = []
    if aug.has("crop"):
        steps.append(v2.RandomResizedCrop((h, w), scale=(float(aug.value("crop") or 1), 1.0)))
    if aug.has("flip"):
        steps.append(v2.RandomHorizontalFlip())
    if aug.has("rotate"):
        steps.append(v2.RandomRotation(float(aug.value("rotate") or 0)))
    if aug.has("trivial"):
        steps.append(v2.TrivialAugmentWide())
    if aug.has("color"):
        j = float(aug.value("color") or 0)
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j if c == 3 else 0))
    if aug.has("erase"):
        steps.append(v2.RandomErasing(p=float(aug.value("erase") or 0)))
    return v2.Compose(steps) if steps else None


class AugmentedItems:
    """A Dataset split read by ``(index, seed)`` keys: ``split[index]`` with the per-sample
    transform drawn from ``seed``, so workers, their number and a resume all agree.

    A map-style dataset for ``DataLoader`` (``__getitem__`` and ``__len__``); the
    global RNG of the process it runs in is left as it was.
    """

    def __init__(self, split: Any, transform: Any) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        import torch

        index, seed = key
        x, y = self.split[index]
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            x = self.transform(x)
        return x, y
