"""The shared training loop and the ``train`` command behind ``tk train``.

Where each concept lives (one file each):

============  ==========================================================
plan.py       a config resolved against the registry (nothing built yet)
build.py      device, optimizer, precision, compile, the dry-batch fit check
batches.py    batches by index on the device, or through a DataLoader
metrics.py    sums on the device, copied to the host at log points
callbacks.py  the loop's extension points (``on_epoch_end`` and friends)
state.py      the running loop; snapshot to and restore from a checkpoint
loop.py       ``fit``: the epoch loop itself
progress.py   the progress line and bar
signals.py    Ctrl-C / SIGTERM -> checkpoint -> resume hint
resume.py     what ``--resume`` names and what may change
job.py        torchrun: every rank agrees on one run directory
writer.py     config, checkpoints, weights, metrics and summary files
run.py        ``train``: plan -> build -> resume -> fit -> write
============  ==========================================================
"""

from __future__ import annotations

from toolkit.train.callbacks import Callback
from toolkit.train.loop import fit
from toolkit.train.metrics import History
from toolkit.train.run import TrainResult, train
from toolkit.train.state import FitOptions

__all__ = ["Callback", "FitOptions", "History", "TrainResult", "fit", "train"]
