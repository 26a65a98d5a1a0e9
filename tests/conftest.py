"""Shared fixtures: a real `tk` subprocess runner and really-installed test plugins."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from toolkit import testing

REPO = Path(__file__).resolve().parent.parent
# Before anything imports torch: one intra-op thread for the tiny models in tests,
# so parallel work on a shared 2-core machine does not oversubscribe it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def tk_home(tmp_path_factory: pytest.TempPathFactory):
    """tk's record of its exports (``TK_HOME``) in a temporary directory for the session:
    tests never read or write a real home's, and every ``tk`` they start (in this
    process or a subprocess: ``run_tk`` keeps ``TK_HOME``) shares this one."""
    saved = os.environ.get("TK_HOME")
    home = tmp_path_factory.mktemp("tk-home")
    os.environ["TK_HOME"] = str(home)
    yield home
    if saved is None:
        os.environ.pop("TK_HOME", None)
    else:
        os.environ["TK_HOME"] = saved


def tk_main(*args: str) -> int:
    """``tk ARGS`` in this process (imports warm, no subprocess): the exit code."""
    from toolkit.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def tk_main_ctrl_c(when: Callable[[], bool], *args: str) -> int:
    """``tk ARGS`` in this process, SIGINT sent (as Ctrl-C) once ``when()`` is true."""
    import signal
    import threading

    done = threading.Event()

    def press() -> None:
        while not done.wait(0.002):
            if when():
                os.kill(os.getpid(), signal.SIGINT)
                return

    # tk's own handler takes the press during training; this one takes a late press.
    keep = signal.signal(signal.SIGINT, lambda *_: None)
    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    try:
        return tk_main(*args)
    finally:
        done.set()
        thread.join()
        signal.signal(signal.SIGINT, keep)


def quiet(_line: str) -> None:
    """An ``echo`` that prints nothing."""


@dataclass
class Result:
    """A finished `tk` process."""

    code: int
    out: str
    err: str


def run_tk(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> Result:
    """Run ``python -m toolkit ARGS`` (the same code as the ``tk`` script) in ``cwd``.

    The developer's own ``TK_*`` variables are not passed on. Tiny models on a shared
    2-core machine: one intra-op thread avoids the oversubscription that made 100
    circle epochs take seconds instead of 0.1 s.
    """
    full_env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **(env or {})}
    proc = testing.run_tk(*args, cwd=cwd, env=full_env, timeout=timeout, inherit_tk=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def tk(tmp_path: Path):
    """``tk(*args, env=...)`` runs tk in a fresh working directory (``tk.cwd``)."""

    def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        return run_tk(*args, cwd=cwd or tmp_path, env=env)

    _run.cwd = tmp_path  # type: ignore[attr-defined]
    return _run


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(
    out_dir: Path, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]
) -> Path:
    """Write a minimal but valid wheel: modules, METADATA, WHEEL, entry_points.txt, RECORD."""
    norm = dist.replace("-", "_")
    info = f"{norm}-{version}.dist-info"
    files: dict[str, bytes] = {path: textwrap.dedent(src).encode() for path, src in modules.items()}
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    )
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tk-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    eps = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    files[f"{info}/entry_points.txt"] = f"[tk]\n{eps}".encode()
    record = [_record_line(n, d) for n, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


def pip_install_target(wheel: Path, target: Path) -> Path:
    """Really install a wheel with pip into ``target`` (put it on PYTHONPATH to use it)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return target


GOOD_PLUGIN = """
from toolkit import DatasetSpec, InputSpec, ModelSpec, Param, Recipe, hookimpl

def load_wide():
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("float32")
    return {"train": (x[:80], y[:80]), "test": (x[80:], y[80:])}

def load_ten():
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 2)).astype("float32")
    y = rng.integers(0, 10, size=100)
    return {"train": (x[:80], y[:80]), "test": (x[80:], y[80:])}

def build_wide():
    from torch import nn
    return nn.Linear(3, 1)

def build_five():
    from torch import nn
    return nn.Linear(2, 5)

def build_bomb(k=5):
    from torch import nn

    class Bomb(nn.Module):
        # Returns NaN on its k-th training forward: a loss that goes bad at step k.

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)
            self.calls = 0

        def forward(self, x):
            out = self.lin(x)
            if self.training:
                self.calls += 1
                if self.calls == k:
                    out = out * float("nan")
            return out

    return Bomb()

@hookimpl
def tk_register_models(register):
    register(ModelSpec(name="nan-bomb", build=build_bomb, input=InputSpec((2,)),
                       task="binary", default_dataset="circles",
                       params=[Param("k", int, 5, "training step that returns NaN")],
                       recipe=Recipe(optimizer="sgd", lr=0.1, epochs=10, batch_size=100)))
    register(ModelSpec(name="wide-linear", build=build_wide, input=InputSpec((3,)),
                       task="binary", default_dataset="wide",
                       recipe=Recipe(optimizer="adam", lr=0.05, epochs=20)))
    register(ModelSpec(name="five-way", build=build_five, input=InputSpec((2,)),
                       task="multiclass", default_dataset="ten-classes",
                       recipe=Recipe(epochs=2)))

@hookimpl
def tk_register_datasets(register):
    register(DatasetSpec(name="wide", load=load_wide, feature_shape=(3,), target="binary"))
    register(DatasetSpec(name="ten-classes", load=load_ten, feature_shape=(2,),
                         target="multiclass", num_classes=10))
"""


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Test distributions, each really pip-installed into its own target directory."""
    root = tmp_path_factory.mktemp("plugins")
    specs = {
        "good": ("tk-test-good", {"tk_test_good.py": GOOD_PLUGIN}, {"good": "tk_test_good"}),
        "broken-import": (
            "tk-test-broken-import",
            {"tk_test_broken_import.py": "raise RuntimeError('boom at import')\n"},
            {"broken": "tk_test_broken_import"},
        ),
        "broken-hook": (
            "tk-test-broken-hook",
            {
                "tk_test_broken_hook.py": """
                from toolkit import hookimpl

                @hookimpl
                def tk_register_models(register):
                    raise ValueError("hook exploded")
                """
            },
            {"brokenhook": "tk_test_broken_hook"},
        ),
        "duplicate": (
            "tk-test-duplicate",
            {
                "tk_test_duplicate.py": """
                from toolkit import InputSpec, ModelSpec, hookimpl

                def build():
                    from torch import nn
                    return nn.Linear(2, 1)

                @hookimpl
                def tk_register_models(register):
                    register(ModelSpec(name="circle", build=build, input=InputSpec((2,)),
                                       task="binary", default_dataset="circles"))
                """
            },
            {"dup": "tk_test_duplicate"},
        ),
    }
    out = {}
    for key, (dist, modules, eps) in specs.items():
        wheel = build_wheel(root / "wheels", dist, "0.3.1", modules, eps)
        out[key] = pip_install_target(wheel, root / key)
    return out


def pythonpath(*dirs: Path) -> dict[str, str]:
    """An env dict putting ``dirs`` on the path of a subprocess."""
    return {"PYTHONPATH": os.pathsep.join(str(d) for d in dirs)}
