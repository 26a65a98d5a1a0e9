"""Hyperparameter search on optuna: ``tk tune``, ``tk tune show`` and ``tk lr-find``.

Each trial is an ordinary run directory (``runs/<model>/<study>/trial-0007/``); the
study lives in optuna's RDB storage (SQLite in the runs root by default, or any
optuna URL such as PostgreSQL), so processes on one machine or many share it.

==========  ==========================================================
space.py    ``--space NAME=SPEC`` parsed and typed against the option or Param
trial.py    a trial's configuration and run; the pruning callback
study.py    the study's definition, storage, sampler, pruner and trial count
worker.py   processes claiming trials until the count; ``--jobs N``
run.py      ``tune(request)``: check, create or join, run, report
show.py     a study read back: best trial, trials, importances, plots
lr_find.py  the learning-rate range test
==========  ==========================================================
"""

from __future__ import annotations

from toolkit.tune.run import TuneRequest, apply_toml, tune

__all__ = ["TuneRequest", "apply_toml", "tune"]
