"""Building a timm model for a dataset, and its pretrained weights from the HF cache.

Imports timm and torch inside functions only (``tk list`` imports this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit import UsageError


def build_timm(
    name: str,
    pretrained: str = "",
    resize: int = 0,
    *,
    input_shape: tuple[int, ...],
    outputs: int,
) -> Any:
    """timm's ``name`` for ``input_shape`` images (C, H, W) and ``outputs`` logits."""
    import timm

    if len(input_shape) != 3:
        raise UsageError(
            f"model 'timm/{name}' takes images (channels, height, width); the dataset's "
            f"samples have shape {tuple(input_shape)}",
            "an image dataset such as --dataset imagefolder",
        )
    channels = int(input_shape[0])
    net = timm.create_model(name, pretrained=False, num_classes=outputs, in_chans=channels)
    if not pretrained:
        return net
    return _pretrained(name, net, _cfg(name, pretrained), resize, channels)


def _cfg(name: str, tag: str) -> Any:
    """The pretrained config of ``name.tag`` (``default``: timm's first tag)."""
    from timm.models import get_pretrained_cfg, list_pretrained

    tags = [t.split(".", 1)[1] for t in list_pretrained(name) if t.split(".", 1)[0] == name]
    want = tags[0] if tag.lower() == "default" and tags else tag
    cfg = get_pretrained_cfg(f"{name}.{want}") if want in tags else None
    if cfg is None or not cfg.hf_hub_id:
        choose = ", ".join(tags) or "none on the Hugging Face hub"
        raise UsageError(
            f"model 'timm/{name}' has no pretrained weights '{tag}'; choose {choose}",
            f"tk train timm/{name} --pretrained",
        )
    return cfg


def _pretrained(name: str, net: Any, cfg: Any, resize: int, channels: int) -> Any:
    from toolkit import Pretrained

    side = int(cfg.input_size[-1]) if resize == 0 else resize
    mean, std = list(cfg.mean), list(cfg.std)
    if channels == 1:
        mean, std = [sum(mean) / 3], [sum(std) / 3]
    head = cfg.classifier if isinstance(cfg.classifier, str) else cfg.classifier[0]
    return Pretrained(
        net,
        size=(side, side) if side > 0 else None,
        mean=mean,
        std=std,
        head=head,
        weights_name=cfg.tag,
        source=HubRepoFile(cfg.hf_hub_id, cfg.hf_hub_filename or "model.safetensors"),
    )


def hub_cache() -> Path:
    """The Hugging Face hub cache as huggingface_hub finds it, read now (not at import):
    HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    import os

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")) / "hub"


@dataclass(frozen=True)
class HubRepoFile:
    """A file of a Hugging Face hub repository, read from the local HF cache."""

    repo: str
    filename: str

    def locate(self) -> Path:
        """The cached file, downloaded first when missing and the machine is online."""
        import huggingface_hub as hf

        from toolkit import offline

        cache = hub_cache()
        found = hf.try_to_load_from_cache(self.repo, self.filename, cache_dir=cache)
        if isinstance(found, str):
            return Path(found)
        reason = "offline (TK_OFFLINE)"
        if not offline():
            try:
                return Path(
                    hf.hf_hub_download(self.repo, self.filename, cache_dir=cache, etag_timeout=20)
                )
            except Exception as exc:
                reason = f"{type(exc).__name__}"
        raise UsageError(
            f"timm weights {self.repo} are not cached and cannot be downloaded ({reason}): "
            f"put {self.filename} in the Hugging Face cache {cache}/ "
            f"(models--{self.repo.replace('/', '--')}/snapshots/<revision>/)",
            f"huggingface-cli download {self.repo} {self.filename} on a machine that is online",
        )

    def read(self, path: Path) -> dict[str, Any]:
        """The state dict in the file (safetensors, or a weights-only .bin)."""
        from toolkit import load_weights_file

        return load_weights_file(path)
