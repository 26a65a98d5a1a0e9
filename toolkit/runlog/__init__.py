"""The runs root read back: listing, filtering, comparing and removing run directories.

``tk runs`` is built on this package. It reads only small JSON files, so listing a
thousand runs takes a fraction of a second and never imports torch:

==========  ==========================================================
scan.py     find run directories, read each one's config/status/summary
query.py    filters, sort keys, a run named as a user types it, safe rm
compare.py  config differences, metrics side by side, the overlay plot
==========  ==========================================================
"""

from __future__ import annotations

from toolkit.runlog.compare import compare, plot_compare
from toolkit.runlog.query import find_run, removal_targets, remove_runs, select, sort_runs
from toolkit.runlog.scan import RunInfo, read_run, scan_runs

__all__ = [
    "RunInfo",
    "compare",
    "find_run",
    "plot_compare",
    "read_run",
    "removal_targets",
    "remove_runs",
    "scan_runs",
    "select",
    "sort_runs",
]
