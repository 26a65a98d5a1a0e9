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
from toolkit.commands.train import bare_options
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
        # As `tk` itself parses it (a bare `--pretrained` gets its default value).
        args = bare_options([*words[1:], "--help"])
        result = runner.invoke(app, args, prog_name="tk")
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
            formats = [f for info in plugin.plugins for f in info.formats]
            assert plugin.models or plugin.datasets or trackers or formats, (
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


# ------------------------------------------- every documented command, executed as written
# README.md and docs/*.md run in document order in one scratch directory that holds
# the files they name (tests/fixtures/docs_files.py). docs/plugins.md's commands run
# in the reader's own plugin project: the guide tests above execute its walkthrough.
EXECUTED = [README, *sorted(p for p in (REPO / "docs").glob("*.md") if p != GUIDE)]

# Commands that cannot run in this test, and where each is proved instead.
ELSEWHERE = {
    "make test": "the test suite itself",
    "make bench": "the benchmark suite (minutes); its figures are docs/benchmarks*.md",
    "tk train circle --nproc 2": "torchrun workers: tests/test_distributed.py::"
    "test_two_gloo_processes_match_one_process_with_the_same_global_batch",
    "tk train circle --nproc 2 --max-restarts 3": "torchrun restarts: tests/test_distributed.py::"
    "test_killed_rank_restarts_and_resumes_to_the_same_weights",
    "tk train circle --nproc 2 --max-restarts 1": "the same test as --max-restarts 3",
    "tk train fashion-mnist-mlp --data-dir data --device cuda --precision bf16 --compile": (
        "needs a CUDA device: tests/test_distributed.py::test_cuda_bf16_and_compile"
    ),
    "torchrun --nnodes 2 --node-rank 0 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint "
    "HOST0:29400 -m toolkit train fashion-mnist-mlp --data-dir data --out runs/fmnist/multi": (
        "needs two machines"
    ),
    "tk train resnet18 --dataset imagefolder --data-param path=digits30 --data-param size=32x32 "
    "--data-param grayscale=true --epochs 2": "the run-size figure of scripts/bench_images.py, "
    "which writes digits30/; a resnet18 trains in tests/test_data_images.py",
    "tk plugins check tk-hello": "needs the generated package installed: the package's own "
    "tests run it (tests/test_scaffold.py::test_generated_tests_pass)",
    "tk tune circle --space 'lr=log(1e-3,0.3)' --epochs 30 --trials 8 --jobs 2 --study "
    "circle-jobs": "starts worker processes: tests/test_tune_processes.py::"
    "test_jobs_2_runs_two_worker_processes_that_divide_the_cores",
    "tk tune digits-cnn --space 'lr=log(1e-4,1e-2)' --space 'param.channels=choice(8,16,32)' "
    "--trials 64 --study digits-wide --storage postgresql://tk:secret@db-host/tk "
    "--checkpoint-every 5": "needs a PostgreSQL server on db-host: tests/test_tune_processes.py::"
    "test_two_tk_tune_processes_share_one_study_on_postgresql starts one",
    "tk tune show digits-wide --storage postgresql://tk:secret@db-host/tk": "the same server",
    "tk export digits-wide --best --storage postgresql://tk:secret@db-host/tk": "the same server",
    # A server blocks until stopped: tests/test_serve.py starts real ones in subprocesses.
    "tk serve runs/circle/demo/model.onnx --port 8000": "blocks: tests/test_serve.py",
    "tk serve a.onnx b.onnx --max-batch 64 --max-delay-ms 2": "blocks: tests/test_serve.py",
    "tk serve runs/circle/demo/model.onnx --host 127.0.0.1 --port 8000 --max-batch 64 "
    "--max-delay-ms 2": "blocks: tests/test_serve.py",
    "tk serve runs/circle/demo/model.onnx --port 8000 --workers 2": "blocks: "
    "tests/test_serve_ops.py::test_two_workers_answer_on_one_port_and_drain_on_sigterm",
    "make bench-serve": "the serving benchmark (minutes, needs wrk): docs/benchmarks-serve.md",
}
# Inline `tk ...` spans that name a command or an option in a sentence, not a command line.
NAMES = {
    "tk train",
    "tk export",
    "tk verify",
    "tk predict",
    "tk bench",
    "tk new-plugin",
    "tk info NAME",
    "tk train --resume",
    "tk export --quantize",
    "tk verify --run",
    "tk runs rm",
    "tk inspect",
    "tk tune",
    "tk tune --study NAME",
    "tk list",
    "tk train ... --plot",
    "tk plot RUN",
    "tk serve",
    "tk serve FILE [FILE...]",
    "tk predict --json",
}
# A placeholder of a documented command, and what stands in for it here.
PLACEHOLDERS = {"DIR": "data"}  # tiny FashionMNIST/MNIST IDX files (docs_files.py)
# Pressed Ctrl-C once its first checkpoint is written, as the text after it describes,
# so that the next command (`tk train --resume latest`) has a cut-off run to continue.
INTERRUPTED = {"tk train circle --checkpoint-every 50"}
# Training to the recipe's end is what docs/results.md measures (scripts/results.py); a
# `tk train` without --epochs trains one epoch here (or as many as --warmup-epochs
# needs): enough to prove the command runs as written, in seconds instead of minutes.
SHORTENED = "--epochs"
# Commands whose length is the point of a benchmark, run here for one epoch, and why.
BENCHMARKED = {
    "tk train circle --quiet --epochs 1000": "scripts/bench times it (docs/benchmarks.md)",
}


@dataclass
class DocCommand:
    """A command line of a document, and the output the document shows after it."""

    doc: str
    line: int
    text: str
    shown: list[str]

    @property
    def where(self) -> str:
        """``doc:line`` for failure messages."""
        return f"{self.doc}:{self.line}"


def documented_commands(path: Path) -> list[DocCommand]:
    """Every command of a document in order: indented and ``console`` block lines
    (``tk``, ``$ tk``, ``make``, ``torchrun``; a ``$`` line's output after it) and
    inline `` `tk ...` `` spans."""
    found: list[DocCommand] = []
    fence = None
    current: DocCommand | None = None
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, start=1):
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].split()[:1] or [""]
            continue
        in_block = (fence == ["console"]) or (fence is None and line.startswith("    "))
        text = line.strip()
        if in_block and re.match(r"^(\$ )?(tk|make|torchrun)( |$)", text):
            while text.endswith("\\") and n < len(lines):  # a continued line
                n += 1
                text = text[:-1].strip() + " " + lines[n - 1].strip()
            text = re.sub(r"\s+#.*$", "", text)  # the comment after a command
            current = DocCommand(path.name, n, " ".join(text.split()), [])
            found.append(current)
        elif in_block and text and current is not None and current.text.startswith("$ "):
            current.shown.append(text)
        else:
            current = None
            if fence is None:
                for m in re.finditer(r"`(tk [^`]+)`", line):
                    found.append(DocCommand(path.name, n, m.group(1), []))
    return found


def _train_argv(argv: list[str]) -> list[str]:
    if " ".join(["tk", *argv]) in BENCHMARKED:
        return [*argv, SHORTENED, "1"]  # the last --epochs given wins
    if argv[:1] != ["train"] or "--epochs" in argv or "--resume" in argv:
        return argv
    warmup = int(argv[argv.index("--warmup-epochs") + 1]) if "--warmup-epochs" in argv else 0
    thaw = int(argv[argv.index("--unfreeze-at") + 1]) if "--unfreeze-at" in argv else 0
    return [*argv, SHORTENED, str(max(warmup + 1, thaw))]


def _press_ctrl_c_after_first_checkpoint(argv: list[str]) -> int:
    """``tk ARGV`` in this process, SIGINT sent once a new checkpoint file appears."""
    from conftest import tk_main_ctrl_c

    pattern = "runs/*/*/checkpoints/*.safetensors"
    before = set(Path().glob(pattern))
    return tk_main_ctrl_c(lambda: bool(set(Path().glob(pattern)) - before), *argv)


def run_documented(command: DocCommand, capsys) -> str | None:
    """Run one documented command in this process; a failure message, or None."""
    from conftest import tk_main

    text = command.text.removeprefix("$ ")
    if text in ELSEWHERE or (not command.shown and text in NAMES):
        return None
    for _env, words in commands_in(text):
        if words == ["make", "demo"]:  # the tk commands of the Makefile's demo target
            recipe = (REPO / "Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0]
            steps = [shlex.split(ln.strip())[1:] for ln in recipe.splitlines() if "$(TK)" in ln]
        elif words[0] == "tk":
            steps = [[PLACEHOLDERS.get(w, w) for w in words[1:]]]
        else:
            return f"{command.where}: `{text}` is neither run here nor listed in ELSEWHERE"
        for argv in steps:
            capsys.readouterr()
            if text in INTERRUPTED:
                code, expected = _press_ctrl_c_after_first_checkpoint(argv), 130
            else:
                code = tk_main(*_train_argv(argv))
                expected = 2 if any(s.startswith("tk: error:") for s in command.shown) else 0
            captured = capsys.readouterr()
            output = captured.out + captured.err
            if code != expected:
                return f"{command.where}: `{text}` exited {code}, not {expected}:\n{output[-3000:]}"
            try:
                assert_shown_output(command.shown, output, command.where)
            except AssertionError as exc:
                return str(exc)
    return None


@pytest.fixture
def docs_project(tmp_path, monkeypatch):
    """A scratch directory holding every file the docs name, as the working directory."""
    from fixtures.docs_files import make_all
    from fixtures.pretrained import seed_hf_cache, seed_torch_hub

    for key in [k for k in os.environ if k.startswith("TK_")]:
        monkeypatch.delenv(key)
    make_all(tmp_path)
    # `--pretrained` reads the local caches (offline here): seeded as torchvision and
    # the Hugging Face hub lay them out (tests/fixtures/pretrained.py).
    seed_torch_hub(tmp_path / ".torch")
    seed_hf_cache(tmp_path / ".hf")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / ".torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / ".hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    for block in fenced_blocks(README):
        if "file" in block.attrs:
            (tmp_path / block.attrs["file"]).write_text(block.body)
    return tmp_path


@pytest.mark.slow
def test_every_documented_command_runs_as_written(docs_project, capsys):
    """Every command of README.md and docs/*.md, in order, against the files it names:
    each exits 0 (or as its shown output says) and prints what the document shows."""
    failures = []
    seen: set[str] = set()
    for doc in EXECUTED:
        for command in documented_commands(doc):
            if not command.shown and command.text in seen:
                continue  # a command the docs repeat (tk runs, tk train circle) runs once
            seen.add(command.text)
            failure = run_documented(command, capsys)
            if failure:
                failures.append(failure)
    assert not failures, "\n\n".join(failures)


def test_exemptions_name_real_documented_commands():
    """The exemption lists name only commands the docs really show."""
    texts = {c.text.removeprefix("$ ") for doc in EXECUTED for c in documented_commands(doc)}
    for listed in (ELSEWHERE, NAMES, INTERRUPTED, BENCHMARKED):
        assert set(listed) <= texts, sorted(set(listed) - texts)
