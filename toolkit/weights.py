"""Weights files: written as safetensors, read without ever unpickling.

The one place tk reads a ``.pt`` file uses ``torch.load(..., weights_only=True)``
explicitly, which an environment variable cannot turn off.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.errors import UsageError, one_line
from toolkit.integrity import IntegrityError, check_file

if TYPE_CHECKING:
    import torch


def state_dict_bytes(model: torch.nn.Module) -> bytes:
    """A model's weights as safetensors bytes; the same weights always give the same bytes.

    One metadata key only: safetensors keeps metadata in a hash map, so several keys
    come out in random order and the same weights would hash differently.
    """
    from safetensors.torch import save

    # Clone: safetensors refuses tensors that share storage (tied weights).
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return save(tensors, metadata={"format": "pt"})


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` or a plain tensor ``.pt``/``.pth`` file.

    ``.pt`` files go through ``torch.load(weights_only=True)`` — passed explicitly, so
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it off — and anything that is not
    plain tensors is refused; there is no fallback to unsafe loading.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file {path} not found")
    check_file(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise IntegrityError(f"{path} is not a valid safetensors file: {exc}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise IntegrityError(
            f"refusing {path}: it is not a plain weights file and loading it could run code "
            f"({one_line(exc, 200)})",
            "convert it to .safetensors in a trusted environment",
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise IntegrityError(f"{path} does not hold a state dict of tensors")
    return obj
