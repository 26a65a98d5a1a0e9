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
        if weights == "best":
            raise UsageError(
                f"{run.path} has no {path.name} (the run did not finish)",
                f"tk train --resume {run.path}",
            )
        raise UsageError(f"{run.path} has no {path.name} (it predates last weights)")
    return path


def check_run_files(run: runs.Run, path: Any) -> None:
    """Refuse a run whose ``config.json`` or weights ``path`` no longer hold what tk wrote.

    Each is checked against ``manifest.json``; weights the manifest does not list (it
    was deleted, say) against the sha256 ``summary.json`` recorded. IntegrityError
    (exit 3) naming the file otherwise: nothing is loaded from an edited run.
    """
    from toolkit.integrity import MANIFEST, IntegrityError, check_file

    check_file(run.path / runs.CONFIG)  # a config.json edited by hand is named
    if check_file(path):  # refuses weights that no longer match the run's manifest
        return
    key = "weights_sha256" if path.name == runs.WEIGHTS else "last_weights_sha256"
    want = run.summary().get(key)
    why = "is missing" if not (run.path / MANIFEST).is_file() else f"does not list {path.name}"
    if not want:
        raise IntegrityError(
            f"cannot check {path}: {run.path / MANIFEST} {why} and {runs.SUMMARY} records "
            "no sha256 for it; refusing to load it",
            "tk train again",
        )
    if runs.sha256_file(path) != want:
        raise IntegrityError(
            f"{path} does not match the sha256 in {run.path / runs.SUMMARY} (corrupt or "
            f"modified; {MANIFEST} {why}); refusing to load it",
            "tk train again",
        )


def rebuild_model(
    run: runs.Run, registry: Registry | None = None, weights: str = "best"
) -> torch.nn.Module:
    """The eager model of a run: built through the registry, its files checked
    (:func:`check_run_files`), weights loaded, in eval()."""
    from safetensors.torch import load_file

    path = weights_path(run, weights)
    check_run_files(run, path)
    cfg = run.config
    spec = run_model_spec(cfg, registry)
    params = spec.resolve_params(cfg.get("params", {}))
    model = build_model(spec, params, cfg.get("seed", 0), cfg.get("preprocess"))
    model.load_state_dict(load_file(str(path)))  # safetensors: no pickle, no code runs
    return model.eval()


def run_data(config: dict[str, Any], registry: Registry | None = None) -> Data:
    """The dataset a run was trained on, loaded again from its ``config.json``.

    A data file or folder that changed since training is named in a warning first:
    what is rebuilt from it (the held-out split) is then not what the run saw.
    """
    import sys

    from toolkit.data import changed_data_files

    for line in changed_data_files(config):
        warning = f"tk: warning: {line}; its held-out split is rebuilt from it as it is now"
        print(warning, file=sys.stderr)
    registry = _registry(registry)
    spec = registry.dataset(config["dataset"])
    return load_data(spec, spec.resolve_params(config.get("data_params", {})))
