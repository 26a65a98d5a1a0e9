"""The ``tk`` command line: the app, its commands, and errors turned into exit codes.

Each command lives in ``toolkit/commands/<name>.py`` with a ``register(app)``
function, parses its options and calls one library function.

Startup promise: ``tk --help``, ``tk list`` and ``tk plugins`` never import torch,
onnx or torchvision; heavy imports live inside the functions that need them.
"""

from __future__ import annotations

import importlib
import sys

import typer

from toolkit.errors import EXIT_INTERRUPTED, EXIT_USAGE, TkError, debug_enabled

EPILOG = (
    "Exit codes: 0 ok, 1 runtime failure or verification mismatch, 2 usage or bad "
    "input, 3 export or load failure, 130 interrupted, 143 terminated. "
    "TK_DEBUG=1 shows tracebacks."
)

app = typer.Typer(
    name="tk",
    help="Train, export and verify PyTorch models from plugins.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# In the order `tk --help` lists them; importing them stays cheap (no torch).
COMMAND_MODULES: list[str] = [
    "toolkit.commands.train",
    "toolkit.commands.catalog",
    "toolkit.commands.plugin_tools",
    "toolkit.commands.export",
    "toolkit.commands.verify",
    "toolkit.commands.predict",
    "toolkit.commands.bench",
    "toolkit.commands.plot",
    "toolkit.commands.runs",
]

for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``tk`` console script."""
    try:
        app(args=argv, prog_name="tk")
    except TkError as exc:
        if debug_enabled():
            raise
        print(f"tk: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("tk: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except ValueError as exc:  # e.g. click's bad parameter that slipped through
        if debug_enabled():
            raise
        print(f"tk: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    finally:
        if argv is None and "torch" in sys.modules:
            # torch._dynamo and sympy make the interpreter's final collections take
            # ~0.7 s; frozen objects are skipped (atexit and file closing still run).
            import gc

            gc.freeze()
