"""A format plugin written from docs/plugins.md alone: the guide's example, really installed.

The code block under "Export formats" is taken from the guide as it stands, built
into a wheel of its own and pip-installed into a directory only the subprocesses
see; then the real CLI trains, exports through the format and verifies the file.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO, build_wheel, pip_install_target, pythonpath

GUIDE = REPO / "docs" / "plugins.md"


def guide_format_plugin() -> str:
    """The first python block of the guide's "Export formats" section."""
    section = GUIDE.read_text().split("\n## Export formats\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "docs/plugins.md has no python block under 'Export formats'"
    return blocks[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("tk-gz")
    src = guide_format_plugin()
    wheel = build_wheel(
        root / "wheels", "tk-test-gz", "0.1.0", {"tk_test_gz.py": src}, {"gz": "tk_test_gz"}
    )
    return pip_install_target(wheel, root / "site")


def test_the_guides_format_plugin_exports_and_verifies(tk, site, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    env = pythonpath(site)
    listed = {r["name"]: r for r in json.loads(tk("list", "formats", "--json", env=env).out)}
    assert listed["onnx-gz"]["plugin"] == "tk-test-gz"
    assert listed["onnx-gz"]["runs_code"] == "no" and listed["onnx-gz"]["in_all"] == "no"

    assert tk("train", "circle", "--epochs", "20", "--name", "gz", env=env).code == 0
    exported = tk("export", "--format", "onnx-gz", env=env)
    assert exported.code == 0, exported.err
    run = tk.cwd / "runs" / "circle" / "gz"
    assert "onnx-gz: wrote" in exported.out and "verify: PASS" in exported.out
    assert (run / "model.tkz").read_bytes().startswith(b"TKZ1\n")
    assert not (run / "model.onnx").exists()  # the source stayed in memory

    verified = tk("verify", str(run / "model.tkz"), "--json", env=env)
    assert verified.code == 0, verified.err
    report = json.loads(verified.out)
    assert report["status"] == "pass" and report["format"] == "onnx-gz"
    assert report["runtimes"] == ["onnxruntime-gz"]

    # Without the plugin the file is no format tk knows: onnxruntime refuses it, exit 3.
    alone = tk("verify", str(run / "model.tkz"))
    assert alone.code == 3 and "cannot read" in alone.err


GREEDY = """
from toolkit import ExportFormat, hookimpl

class Greedy(ExportFormat):
    name, suffix = "greedy", ".zip"

    def detect(self, probe):
        return True  # claims every file, zip archives included

@hookimpl
def tk_register_formats(register):
    register(Greedy())
"""


def test_a_plugin_format_cannot_claim_tk_s_own_bytes(tmp_path):
    """tk's formats are asked first: a plugin that claims every file never takes a
    TorchScript or pt2 archive past the gate, nor a file that starts like ONNX."""
    import types
    import zipfile

    from toolkit.formats import FILE_NAMES
    from toolkit.testing import load_plugin
    from toolkit.trust import format_of

    module = types.ModuleType("tk_test_greedy")
    exec(GREEDY, module.__dict__)
    registry = load_plugin(module).registry
    assert list(registry.formats)[:3] == ["onnx", "torchscript", "pt2"]
    archive = tmp_path / FILE_NAMES["torchscript"]
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/code/model.py", "")
    assert format_of(archive, registry=registry).name == "torchscript"
    assert format_of(b"\x08\x07" + bytes(64), registry=registry).name == "onnx"
    assert format_of(b"\x00" + bytes(64), registry=registry).name == "greedy"
