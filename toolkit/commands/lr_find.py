"""``tk lr-find MODEL [tk train options]``: the learning-rate range test, and its plot.

It takes ``tk train``'s options that shape a training step (data, model parameters,
optimizer, batch size, device, ...) through ``with_options_of``; nothing is written
to the runs root.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from toolkit.commands import train as train_cmd
from toolkit.commands.common import JsonOpt, emit_json, with_options_of

# tk train options with no meaning for a few hundred steps at rates the test sets.
NOT_LR_FIND = (
    "out", "name", "resume", "overwrite", "allow_config_change", "nproc", "max_restarts",
    "epochs", "lr", "scheduler", "warmup_epochs", "monitor", "early_stop", "min_delta",
    "checkpoint_every", "keep_checkpoints", "log_every", "plot", "tracker", "tracker_param",
    "tracking_uri", "runs_dir", "compile",
)  # fmt: skip


@with_options_of(train_cmd.train, drop=NOT_LR_FIND)
def lr_find(
    steps: Annotated[
        int, typer.Option(help="Steps of the sweep (it stops early on divergence).")
    ] = 200,
    start_lr: Annotated[float, typer.Option(help="The first learning rate.")] = 1e-7,
    end_lr: Annotated[float, typer.Option(help="The last learning rate.")] = 10.0,
    method: Annotated[
        str, typer.Option(help="valley (fastai's, default) or steepest (descent of the loss).")
    ] = "valley",
    plot: Annotated[
        str | None, typer.Option(help="Where the loss-vs-lr plot goes (default lr-find-MODEL.png).")
    ] = None,
    json_: JsonOpt = False,
    **train_options: Any,
) -> None:
    """Suggest a learning rate: a fresh MODEL trains a few hundred steps at exponentially
    growing rates until the loss diverges; prints the suggestion, writes the plot.

    Nothing in the runs root changes (no run directory is made).
    """
    from toolkit.tune.lr_find import lr_find as range_test
    from toolkit.tune.lr_find import plot as draw

    config, _ = train_cmd.config_from_flags(train_options)
    result = range_test(config, steps=steps, start_lr=start_lr, end_lr=end_lr, method=method)
    path = draw(result, plot or f"lr-find-{config.model}.png", f"tk lr-find {config.model}")
    if json_:
        emit_json({**result.to_json(), "plot": str(path)})
        return
    if result.suggestion is None:
        typer.echo(
            f"no suggestion: {result.stopped} after {len(result.lrs)} steps (try: --start-lr)"
        )
    else:
        other = "steepest" if method == "valley" else "valley"
        alt = result.steepest if method == "valley" else result.valley
        alt_text = f"{alt:.3g}" if alt is not None else "-"
        typer.echo(
            f"suggested lr: {result.suggestion:.3g} ({method}; {other}: {alt_text}) | "
            f"{len(result.lrs)} steps, stopped: {result.stopped}"
        )
    typer.echo(f"Plot: {path}")


def register(app: typer.Typer) -> None:
    """Add ``tk lr-find`` to the tk app."""
    app.command("lr-find")(lr_find)
