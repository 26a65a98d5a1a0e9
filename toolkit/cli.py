"""The ``tk`` command line: the app, its commands, and errors turned into exit codes.

Each command lives in ``toolkit/commands/<name>.py`` with a ``register(app)``
function, parses its options and calls one library function.

Startup promise: ``tk --help``, ``tk list`` and ``tk plugins`` never import torch,
onnx or torchvision; heavy imports live inside the functions that need them.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

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


def version_text() -> str:
    """``tk <version>``: the installed distribution's version (the source's when not installed)."""
    from importlib import metadata

    try:
        version = metadata.version("tk-torch")
    except metadata.PackageNotFoundError:
        from toolkit import __version__ as version
    return f"tk {version}"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print tk's version."
        ),
    ] = False,
) -> None:
    # No docstring: the app's own help text stays the one `tk --help` shows.
    pass


# In the order `tk --help` lists them; importing them stays cheap (no torch).
COMMAND_MODULES: list[str] = [
    "toolkit.commands.train",
    "toolkit.commands.catalog",
    "toolkit.commands.plugin_tools",
    "toolkit.commands.export",
    "toolkit.commands.verify",
    "toolkit.commands.predict",
    "toolkit.commands.serve",
    "toolkit.commands.bench",
    "toolkit.commands.plot",
    "toolkit.commands.runs",
    "toolkit.commands.tune",
    "toolkit.commands.lr_find",
]

for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def usage_line(exc: typer.TyperException, argv: list[str]) -> str:
    """A click/Typer usage error (bad value, unknown option, missing argument) as tk's
    one line: what was wrong, the value given, and the command's ``--help``."""
    message = " ".join(exc.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
    message = message[:1].lower() + message[1:]
    param = getattr(exc, "param", None)
    if getattr(param, "param_type_name", None) == "option" and isinstance(exc, typer.BadParameter):
        opts = list(param.opts)  # type: ignore[union-attr]
        given = _given(opts, argv)
        kind = "a whole number" if "valid integer" in message else "a number"
        if given is not None and ("valid integer" in message or "valid number" in message):
            message = f"{'/'.join(opts)} expects {kind}, got {given!r}"
    ctx = getattr(exc, "ctx", None)
    return f"{message} (try: {_command_path(ctx, argv)} --help)"


def _command_path(ctx: typer.Context | None, argv: list[str]) -> str:
    if ctx is not None:
        # A command run by default under a group (tk tune's hidden `run`) names
        # itself as it is typed.
        shown = getattr(ctx.command, "display_path", None)
        return str(shown(ctx)) if shown is not None else ctx.command_path
    names = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    return f"tk {argv[0]}" if argv and argv[0] in names else "tk"


def _given(opts: list[str], argv: list[str]) -> str | None:
    """The last value typed after one of ``opts`` (``--epochs ten`` or ``--epochs=ten``)."""
    found = None
    for i, word in enumerate(argv):
        for opt in opts:
            if word == opt and i + 1 < len(argv):
                found = argv[i + 1]
            elif word.startswith(opt + "=") and opt.startswith("--"):
                found = word[len(opt) + 1 :]
    return found


def _run(argv: list[str] | None) -> int:
    """Run the app without click's own error printing; the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = app(args=args, prog_name="tk", standalone_mode=False)
    except typer.TyperException as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help(), err=True)  # `tk` or `tk runs x` alone: the help
            return EXIT_USAGE
        if debug_enabled():
            raise
        print(f"tk: error: {usage_line(exc, args)}", file=sys.stderr)
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    except typer.Abort:
        print("tk: aborted", file=sys.stderr)
        return 1
    if rv == EXIT_INTERRUPTED:  # typer turns a KeyboardInterrupt into Exit(130)
        print("tk: interrupted", file=sys.stderr)
    return rv if isinstance(rv, int) else 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``tk`` console script."""
    from toolkit.commands.train import bare_options

    try:
        code = _run(bare_options(sys.argv[1:] if argv is None else list(argv)))
    except TkError as exc:
        if debug_enabled():
            raise
        print(f"tk: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("tk: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except ValueError as exc:  # a bad value that slipped past the checks
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
    if code:
        sys.exit(code)
