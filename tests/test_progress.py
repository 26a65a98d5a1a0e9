"""Live progress: on a terminal a step bar inside the epoch (samples/s, running loss,
ETA) under the epoch bar; plain epoch lines when stdout is not a terminal.

The terminal is a real pseudo-terminal (the ``pty`` module): what tk draws there is
read back, escape codes stripped, and searched for the step bar.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from conftest import REPO, tk_main
from test_data_images import write_digits

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _read_all(fd: int, proc: subprocess.Popen, timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


@pytest.mark.slow
def test_a_terminal_sees_step_progress_inside_each_epoch(tmp_path):
    digits = write_digits(tmp_path / "digits", per_class=30)
    parent, child = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(REPO)
    args = ["train", "cnn", "--dataset", "imagefolder", "--data-param", f"path={digits}",
            "--data-param", "grayscale=true", "--batch-size", "16", "--epochs", "3"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit", *args],
        cwd=tmp_path,
        env=env,
        stdin=child,
        stdout=child,
        stderr=child,
        close_fds=True,
    )
    os.close(child)
    try:
        raw = _read_all(parent, proc, timeout=180)
    finally:
        os.close(parent)
        proc.wait(timeout=60)
    screen = ANSI.sub("", raw.decode("utf-8", "replace")).replace("\r", "\n")
    assert proc.returncode == 0, screen[-2000:]
    assert "nproc=1" in screen  # the header names the processes
    # 300 digits: 240 train, 24 of them validation, 216 / 16 = 14 steps an epoch
    steps = re.findall(
        r"epoch (\d) steps\s.*?(\d+)/14\s.*?([\d,]+) samples/s\s+loss (\d\.\d{4})", screen
    )
    assert {s[0] for s in steps} == {"1", "2", "3"}, screen[-3000:]
    assert all(int(s[2].replace(",", "")) > 0 for s in steps)
    assert re.search(r"epochs\s.*\d/3", screen)  # the epoch bar above it
    assert "Done: 3 epochs" in screen


def test_plain_lines_when_not_a_terminal(tmp_path, capsys):
    assert tk_main("train", "circle", "--epochs", "20", "--runs-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "samples/s" not in out and "\x1b[" not in out
    assert re.search(r"^Epoch: 20 \| Loss: ", out, re.M) and "nproc=1" in out
