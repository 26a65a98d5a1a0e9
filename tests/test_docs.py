"""The docs are tested: every code block in the README and the plugin guide runs or is checked.

Conventions for fenced blocks (the words after the opening backticks):

- ``python``: runs on its own, as a fresh module, in a temporary directory. A block
  that defines ``tk_*`` hook functions is then loaded as a plugin
  (``toolkit.testing.load_plugin``) and must register something without error.
- ``python file=PATH``, ``toml file=PATH``: written to PATH in a scratch project
  that the document's ``console run`` blocks use (toml must also parse).
- ``toml``: must parse.
- ``console``: every ``$ tk ...`` line must be a real command with real options
  (``tk ... --help`` succeeds).
- ``console run``: the ``$`` commands run for real, in order, in the scratch project:
  ``pip install -e .`` installs it (offline, into a temporary target on the path),
  ``tk`` and ``pytest`` run in subprocesses. Each must exit 0, and each output line
  the block shows must appear in the command's output, in order, where ``...``
  matches anything and runs of spaces are one space.

Indented (4-space) blocks of the READMEs hold commands: their ``tk ...`` and
``$ tk ...`` lines are checked like ``console`` lines.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.scaffold import new_plugin
from toolkit.testing import load_plugin

GUIDE = REPO / "docs" / "plugins.md"
README = REPO / "README.md"
SPIRALS_README = REPO / "plugins" / "tk-spirals" / "README.md"
FENCE = re.compile(r"^```(\w*)(.*)$")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass
class Block:
    """One fenced code block."""

    doc: str
    line: int  # of the opening fence, 1-based
    lang: str
    attrs: dict[str, str]  # file=PATH -> {"file": PATH}; a bare word -> {word: ""}
    body: str

    @property
    def where(self) -> str:
        """``file:line`` for failure messages."""
        return f"{self.doc}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown file, with its language and attributes."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        attrs = {}
        for word in m.group(2).split():
            key, _, value = word.partition("=")
            attrs[key] = value
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        body = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(Block(path.name, i + 1, m.group(1), attrs, body))
        i = end + 1
    return blocks


def indented_commands(path: Path) -> list[tuple[int, str]]:
    """``tk ...`` / ``$ tk ...`` lines of indented blocks (outside fenced blocks)."""
    found = []
    fenced = False
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        text = line.strip()
        if not fenced and line.startswith("    ") and text.startswith(("tk ", "$ tk ")):
            found.append((n, text))
    return found


def commands_in(text: str) -> list[tuple[dict[str, str], list[str]]]:
    """Split a shell line into commands (at ``&&``, ``;`` and ``|``), each as
    (leading VAR=value assignments, words); comments are dropped."""
    words = shlex.split(text.removeprefix("$ "), comments=True)
    out, current = [], []
    for word in [*words, ";"]:
        if word in ("&&", ";", "|"):
            if current:
                env = {}
                while current and ENV_ASSIGNMENT.match(current[0]):
                    key, _, value = current.pop(0).partition("=")
                    env[key] = value
                out.append((env, current))
            current = []
        else:
            current.append(word)
    return out


def assert_real_tk_command(line: str, where: str) -> None:
    """Every tk command on ``line`` exists with the options it uses (``--help`` succeeds)."""
    runner = CliRunner()
    for _env, words in commands_in(line):
        if not words or words[0] != "tk":
            continue
        result = runner.invoke(app, [*words[1:], "--help"], prog_name="tk")
        assert result.exit_code == 0, (
            f"{where}: `{line}` is not a valid tk command:\n{result.output}"
        )


def session(body: str) -> list[tuple[str, list[str]]]:
    """A console block as (command, the output lines shown after it)."""
    steps: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif line.strip() and steps:
            steps[-1][1].append(line)
    return steps


def _norm(line: str) -> str:
    return " ".join(line.split())


def assert_shown_output(shown: list[str], output: str, where: str) -> None:
    """Each shown line matches an output line, in order (``...`` matches anything)."""
    lines = [_norm(x) for x in output.splitlines()]
    pos = 0
    for want in shown:
        parts = [part.strip() for part in _norm(want).split("...")]
        pattern = ".*".join(re.escape(part) for part in parts)
        while pos < len(lines) and not re.fullmatch(pattern, lines[pos]):
            pos += 1
        assert pos < len(lines), f"{where}: shown output line not found: {want!r}\n{output}"
        pos += 1


# ------------------------------------------------------------------------- tests
DOCS = [README, GUIDE]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_python_blocks_run(doc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = [b for b in fenced_blocks(doc) if b.lang == "python" and "file" not in b.attrs]
    for i, block in enumerate(blocks):
        module = types.ModuleType(f"doc_block_{i}")
        exec(compile(block.body, block.where, "exec"), module.__dict__)
        hooks = [k for k, v in vars(module).items() if k.startswith("tk_") and callable(v)]
        if hooks:
            plugin = load_plugin(module)
            trackers = [t for info in plugin.plugins for t in info.trackers]
            assert plugin.models or plugin.datasets or trackers, (
                f"{block.where}: {hooks} registered nothing"
            )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_toml_blocks_parse(doc):
    for block in fenced_blocks(doc):
        if block.lang == "toml":
            try:
                tomllib.loads(block.body)
            except tomllib.TOMLDecodeError as exc:
                pytest.fail(f"{block.where}: {exc}")


@pytest.mark.parametrize("doc", [*DOCS, SPIRALS_README], ids=lambda p: str(p.relative_to(REPO)))
def test_documented_commands_exist(doc):
    checked = 0
    for block in fenced_blocks(doc):
        if block.lang == "console":
            for command, _ in session(block.body):
                assert_real_tk_command(command, block.where)
                checked += 1
    for n, line in indented_commands(doc):
        assert_real_tk_command(line, f"{doc.name}:{n}")
        checked += 1
    assert checked, f"{doc.name} shows no tk commands"


def test_scaffold_readme_commands_exist(tmp_path):
    files = new_plugin("tk-docs-probe", tmp_path / "pkg")
    readme = next(f for f in files if f.name == "README.md")
    lines = indented_commands(readme)
    assert any(line.startswith("tk train docs-probe-mlp") for _, line in lines)
    for n, line in lines:
        assert_real_tk_command(line, f"scaffold README.md:{n}")


def test_complete_plugin_is_about_20_lines():
    module = next(b for b in fenced_blocks(GUIDE) if b.attrs.get("file") == "tk_quadrants.py")
    code = [line for line in module.body.splitlines() if line.strip()]
    assert len(code) <= 25, f"the '20 lines' plugin has {len(code)} non-blank lines"


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    # Tiny models gain nothing from intra-op threads, and on a shared 2-core runner
    # they lose a lot: threads spin-wait for cores that other processes hold.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_guide_walkthrough_runs_for_real(tmp_path):
    """Write the guide's files, install them as the guide says, run its sessions."""
    project = tmp_path / "project"
    site = tmp_path / "site"
    blocks = fenced_blocks(GUIDE)
    for block in blocks:
        if "file" in block.attrs:
            path = project / block.attrs["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TK_")}
    # An editable install leaves a .pth file in `site`, which Python reads only in
    # site-packages: the project directory (what it would add) goes on the path too.
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(project)])
    runs = [b for b in blocks if b.lang == "console" and "run" in b.attrs]
    assert runs, "the guide has no `console run` block"
    for block in runs:
        for command, shown in session(block.body):
            for extra_env, words in commands_in(command):
                where = f"{block.where} `{command}`"
                if words[:2] == ["pip", "install"]:
                    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
                    argv += ["--no-build-isolation", "--no-index", "--target", str(site)]
                    argv += ["-e", str(project)]
                    assert words[2:] == ["-e", "."], f"{where}: only `pip install -e .` is run"
                elif words[0] == "tk":
                    argv = [sys.executable, "-m", "toolkit", *words[1:]]
                elif words[0] == "pytest":
                    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *words[1:]]
                else:
                    pytest.fail(f"{where}: the test does not know how to run {words[0]!r}")
                proc = subprocess.run(
                    argv,
                    cwd=project,
                    env={**env, **extra_env},
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                output = proc.stdout + proc.stderr
                assert proc.returncode == 0, f"{where} exited {proc.returncode}:\n{output}"
                assert_shown_output(shown, output, where)


def test_guide_tracker_runs_for_real(tmp_path, monkeypatch):
    """The guide's tracker, loaded as a plugin, follows a real training from start to end."""
    import json

    from toolkit.config import TrainConfig
    from toolkit.models import load_data
    from toolkit.registry import Recipe
    from toolkit.train import fit, train
    from toolkit.train.trackers import tracker_callback

    monkeypatch.chdir(tmp_path)
    block = next(b for b in fenced_blocks(GUIDE) if "def tk_register_trackers" in b.body)
    module = types.ModuleType("doc_tracker")
    exec(compile(block.body, block.where, "exec"), module.__dict__)
    reg = load_plugin(module).registry
    result = train(TrainConfig(model="circle", epochs=2, runs_dir="runs", quiet=True), reg)
    run = result.run_dir
    callback = tracker_callback(["jsonl"], reg, {}, run, main=True)
    data = load_data(reg.dataset("circles"), {})
    model = result.model
    history = fit(model, data, Recipe(epochs=4, lr=0.01), task="binary", callbacks=[callback])
    callback.close(result.summary, [run / "model.safetensors"])
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert events[0] == {"event": "start", "model": "circle"}
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3, 4]
    assert events[1]["train_loss"] == history.epochs[0]["train_loss"]
    assert events[-2:] == [
        {"event": "artifact", "file": "model.safetensors"},
        {"event": "finish", "status": "finished"},
    ]
