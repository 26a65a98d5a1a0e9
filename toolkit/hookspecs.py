"""The hooks a tk plugin can implement.

Every hook is prefixed ``tk_`` and receives a ``register`` callback (the style of
``llm``'s hooks): plugins never touch tk's internal registry. Hook specs only ever
gain arguments, so a plugin written today keeps working; a hook being retired warns
for one release first. A plugin implements only the hooks it needs, and an
implementation may take only the arguments it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # keep `tk --help` free of anything heavy
    from toolkit.formats import ExportFormat
    from toolkit.registry import DatasetSpec, ModelSpec, TrackerSpec

hookspec = pluggy.HookspecMarker("tk")
hookimpl = pluggy.HookimplMarker("tk")


@hookspec
def tk_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register model specs by calling ``register(ModelSpec(...))`` once per model.

    ``build`` must be a factory that imports torch *inside* itself, so that listing
    models stays fast and never imports torch.

    :param register: call it with a :class:`toolkit.ModelSpec`.

    Example::

        from toolkit import InputSpec, ModelSpec, Recipe, hookimpl

        def build(hidden=8):
            import torch.nn as nn
            return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1))

        @hookimpl
        def tk_register_models(register):
            register(ModelSpec(name="tiny", build=build, input=InputSpec((2,)),
                               task="binary", default_dataset="circles",
                               recipe=Recipe(optimizer="adam", lr=0.01, epochs=200)))
    """


@hookspec
def tk_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register dataset specs by calling ``register(DatasetSpec(...))`` once per dataset.

    ``load(**params)`` returns ``{"train": (x, y), "test": (x, y)}`` with numpy arrays
    or tensors; it runs only when a command needs the data.

    :param register: call it with a :class:`toolkit.DatasetSpec`.

    Example::

        from toolkit import DatasetSpec, hookimpl

        def load():
            import numpy as np
            rng = np.random.default_rng(0)
            x = rng.normal(size=(200, 2)).astype("float32")
            y = (x[:, 0] * x[:, 1] > 0).astype("float32")
            return {"train": (x[:160], y[:160]), "test": (x[160:], y[160:])}

        @hookimpl
        def tk_register_datasets(register):
            register(DatasetSpec(name="quadrants", load=load, feature_shape=(2,),
                                 target="binary", class_names=("odd", "even")))
    """


@hookspec
def tk_register_trackers(register: Callable[[TrackerSpec], None]) -> None:
    """Register experiment trackers by calling ``register(TrackerSpec(...))`` once each.

    ``factory(**options)`` returns an object with ``start(run_config)``,
    ``log_metrics(epoch, metrics)``, ``log_artifact(path)`` and ``finish(summary)``;
    tk calls them on rank 0 only, and a tracker that raises is disabled with one
    warning (training goes on). Import the tracker's library inside the factory or
    ``start``: ``tk list`` imports every plugin.

    :param register: call it with a :class:`toolkit.TrackerSpec`.

    Example::

        import json
        from pathlib import Path

        from toolkit import Param, TrackerSpec, hookimpl

        class PrintTracker:
            def __init__(self, prefix="tk"):
                self.prefix = prefix

            def start(self, run_config):
                print(self.prefix, "start", Path(run_config["run_dir"]).name)

            def log_metrics(self, epoch, metrics):
                print(self.prefix, epoch, json.dumps(metrics))

            def log_artifact(self, path):
                print(self.prefix, "artifact", path.name)

            def finish(self, summary):
                print(self.prefix, "done", summary["status"])

        @hookimpl
        def tk_register_trackers(register):
            register(TrackerSpec(name="print", factory=PrintTracker,
                                 options=[Param("prefix", str, "tk", "line prefix")],
                                 description="every epoch's metrics on stdout"))
    """


@hookspec
def tk_register_formats(register: Callable[[ExportFormat], None]) -> None:
    """Register export formats by calling ``register(FORMAT)`` once per format.

    A format is an instance of a :class:`toolkit.ExportFormat` subclass: its name and
    suffix, ``detect`` (its bytes, never its file name), ``export``, ``read_metadata``
    and ``load`` (the runtime that serves it, as :class:`toolkit.Runner`). Import the
    format's library inside the methods: ``tk list`` imports every plugin. tk's own
    formats are asked to recognise a file first; a format whose loading can run code
    sets ``can_carry_code = True`` and is then loaded only through the trust gate.

    :param register: call it with an :class:`toolkit.ExportFormat` instance.

    Example (a format that wraps the verified ONNX file)::

        from toolkit import Exported, ExportFormat, hookimpl

        class Boxed(ExportFormat):
            name, suffix, file_name = "boxed", ".box", "model.box"
            def detect(self, probe):
                return probe.head.startswith(b"BOX1")
            def export(self, request):
                return Exported(b"BOX1" + request.source("onnx"), "onnx, boxed")
            ...

        @hookimpl
        def tk_register_formats(register):
            register(Boxed())
    """
