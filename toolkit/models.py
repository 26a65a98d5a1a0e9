"""Building a registered model, loading a registered dataset, and rebuilding a run's model.

Train builds; export, verify, predict and plot rebuild. Both go through here, so
a model is always made the same way from the same config, and nothing outside
the loop needs to import the loop. A model that sizes itself from its dataset is
rebuilt from the input shape, outputs and task its run's ``config.json`` recorded;
preprocessing fitted on the training rows is part of the model (its first layer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from toolkit import runs
from toolkit.data import Data, prepare
from toolkit.errors import TrainingError, UsageError

if TYPE_CHECKING:
    import torch

    from toolkit.registry import DatasetSpec, ModelSpec, Registry

LAST_WEIGHTS = "last.safetensors"
WEIGHTS_CHOICES = ("best", "last")


def build_model(
    spec: ModelSpec, params: dict[str, Any], seed: int, preprocess: dict[str, Any] | None = None
) -> torch.nn.Module:
    """Build a model from its factory with torch seeded, so weights are reproducible.

    ``preprocess`` (standardization statistics) wraps it as its first and last layer.
    """
    import torch

    torch.manual_seed(seed)
    model = spec.build(**params)
    if not isinstance(model, torch.nn.Module):
        raise TrainingError(
            f"model '{spec.name}': build() returned {type(model).__name__}, not a torch.nn.Module"
        )
    if preprocess:
        from toolkit.preprocess import wrap

        model = wrap(model, preprocess)
    return model


def load_data(spec: DatasetSpec, params: dict[str, Any]) -> Data:
    """Run a dataset's loader and convert its output (CPU tensors)."""
    return prepare(spec, spec.load(**params))


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from toolkit.plugins import get_registry

    return get_registry()


def run_model_spec(config: dict[str, Any], registry: Registry | None = None) -> ModelSpec:
    """The model spec of a run, sized as it was trained (input shape, outputs, task)."""
    spec = _registry(registry).model(config["model"])
    shape = tuple(int(d) for d in config["input"]["shape"][1:])
    return spec.sized(shape, int(config.get("outputs") or 1), config.get("task") or "regression")


def weights_path(run: runs.Run, weights: str = "best") -> Any:
    """``model.safetensors`` (the selected epoch's) or ``last.safetensors`` (the last's)."""
    if weights not in WEIGHTS_CHOICES:
        raise UsageError(f"--weights must be best or last, got {weights!r}", "--weights best")
    path = run.weights if weights == "best" else run.path / LAST_WEIGHTS
    if not path.is_file():
        what = "the run did not finish" if weights == "best" else "it predates last weights"
        raise UsageError(f"{run.path} has no {path.name} ({what})")
    return path


def rebuild_model(
    run: runs.Run, registry: Registry | None = None, weights: str = "best"
) -> torch.nn.Module:
    """The eager model of a run: built through the registry, weights loaded, in eval()."""
    from safetensors.torch import load_file

    from toolkit.integrity import check_file

    cfg = run.config
    spec = run_model_spec(cfg, registry)
    params = spec.resolve_params(cfg.get("params", {}))
    model = build_model(spec, params, cfg.get("seed", 0), cfg.get("preprocess"))
    path = weights_path(run, weights)
    check_file(path)  # refuses weights that no longer match the run's manifest
    model.load_state_dict(load_file(str(path)))  # safetensors: no pickle, no code runs
    return model.eval()


def run_data(config: dict[str, Any], registry: Registry | None = None) -> Data:
    """The dataset a run was trained on, loaded again from its ``config.json``."""
    registry = _registry(registry)
    spec = registry.dataset(config["dataset"])
    return load_data(spec, spec.resolve_params(config.get("data_params", {})))
