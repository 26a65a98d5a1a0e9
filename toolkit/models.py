"""Building a registered model, loading a registered dataset, and rebuilding a run's model.

Train builds; export, verify, predict and plot rebuild. Both go through here, so
a model is always made the same way from the same config, and nothing outside
the loop needs to import the loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from toolkit import runs
from toolkit.data import Data, prepare
from toolkit.errors import TrainingError, UsageError

if TYPE_CHECKING:
    import torch

    from toolkit.registry import DatasetSpec, ModelSpec, Registry


def build_model(spec: ModelSpec, params: dict[str, Any], seed: int) -> torch.nn.Module:
    """Build a model from its factory with torch seeded, so weights are reproducible."""
    import torch

    torch.manual_seed(seed)
    model = spec.build(**params)
    if not isinstance(model, torch.nn.Module):
        raise TrainingError(
            f"model '{spec.name}': build() returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def load_data(spec: DatasetSpec, params: dict[str, Any]) -> Data:
    """Run a dataset's loader and convert its output (CPU tensors)."""
    return prepare(spec, spec.load(**params))


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from toolkit.plugins import get_registry

    return get_registry()


def rebuild_model(run: runs.Run, registry: Registry | None = None) -> torch.nn.Module:
    """The eager model of a run: built through the registry, weights loaded, in eval()."""
    from safetensors.torch import load_file

    from toolkit.integrity import check_file

    registry = _registry(registry)
    cfg = run.config
    spec = registry.model(cfg["model"])
    model = build_model(spec, spec.resolve_params(cfg.get("params", {})), cfg.get("seed", 0))
    if not run.weights.is_file():
        raise UsageError(f"{run.path} has no {runs.WEIGHTS} (the run did not finish)")
    check_file(run.weights)  # refuses weights that no longer match the run's manifest
    state = load_file(str(run.weights))  # safetensors: no pickle, no code runs
    model.load_state_dict(state)
    return model.eval()


def run_data(config: dict[str, Any], registry: Registry | None = None) -> Data:
    """The dataset a run was trained on, loaded again from its ``config.json``."""
    registry = _registry(registry)
    spec = registry.dataset(config["dataset"])
    return load_data(spec, spec.resolve_params(config.get("data_params", {})))
