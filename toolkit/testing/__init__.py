"""Helpers for plugin authors' tests: load one plugin on its own and check that it conforms.

A plugin's whole test can be three lines::

    from toolkit.testing import check_plugin

    def test_conformance(tmp_path):
        report = check_plugin("tk-hello", workdir=tmp_path)
        assert report.ok, report.format()

:func:`check_plugin` does, for every model and dataset the plugin registers, what a
user's ``tk train`` / ``tk export --format all`` / ``tk verify`` would do, on the CPU,
with a couple of epochs over a few hundred rows. ``tk plugins check NAME`` runs the
same from the command line. :func:`run_tk` runs the real command line.

Nothing in this package imports torch at import time.
"""

from __future__ import annotations

from toolkit.formats import FORMATS
from toolkit.testing.check import check_plugin
from toolkit.testing.loading import KNOWN_HOOKS, LoadedPlugin, load_plugin
from toolkit.testing.process import popen_tk, run_tk, wait_for_checkpoint
from toolkit.testing.report import Check, PluginReport

__all__ = [
    "FORMATS",
    "KNOWN_HOOKS",
    "Check",
    "LoadedPlugin",
    "PluginReport",
    "check_plugin",
    "load_plugin",
    "popen_tk",
    "run_tk",
    "wait_for_checkpoint",
]
