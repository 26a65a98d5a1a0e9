"""The public plugin API: `toolkit` itself is all a plugin imports (and `toolkit.testing`
in its tests), every public name resolves, and asking for one never drags in torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import toolkit
from toolkit import ImageInputs, PluginError, TableColumn, TableInputs
from toolkit.inputs import inputs_json, read_inputs

REPO = Path(__file__).resolve().parent.parent
ALLOWED = ("toolkit", "toolkit.testing")


def inner_imports(path: Path, root: Path = REPO) -> list[str]:
    """``file:line module`` for each import of a toolkit module other than ALLOWED."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            inner = name.startswith("toolkit.") and not name.startswith("toolkit.testing")
            if inner and name not in ALLOWED:
                found.append(f"{path.relative_to(root)}:{node.lineno} {name}")
    return found


def test_plugins_import_only_the_public_api():
    files = [p for p in (REPO / "plugins").rglob("*.py") if ".egg-info" not in str(p)]
    assert len(files) > 20  # the built-in plugins, tk-spirals and tk-timm are all seen
    wrong = [hit for p in files for hit in inner_imports(p)]
    assert not wrong, "plugins import toolkit's inner modules:\n" + "\n".join(wrong)


def test_the_check_sees_an_inner_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from toolkit.tables import read_csv\nimport toolkit.images\n")
    assert inner_imports(bad, tmp_path) == ["bad.py:1 toolkit.tables", "bad.py:2 toolkit.images"]
    ok = tmp_path / "ok.py"
    ok.write_text("from toolkit import read_csv\nfrom toolkit.testing import check_plugin\n")
    assert inner_imports(ok, tmp_path) == []


def test_every_public_name_resolves():
    missing = [name for name in toolkit.__all__ if getattr(toolkit, name, None) is None]
    assert not missing
    assert set(dir(toolkit)) >= {"read_csv", "Pretrained", "TableInputs", "hookimpl"}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = toolkit.nope


def test_public_helpers_load_lazily_and_without_torch():
    probe = (
        "import sys, toolkit\n"
        "assert 'toolkit.tables' not in sys.modules\n"
        "from toolkit import read_csv, walk_images, make_moons, IMAGE_SUFFIXES, TableInputs\n"
        "assert read_csv.__module__ == 'toolkit.tables'\n"
        "heavy = [m for m in ('torch', 'numpy', 'onnx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_the_inputs_schema_is_typed_and_checked():
    table = TableInputs(
        columns=[TableColumn("a", "number"), TableColumn("c", "category", ("x", "y"), "y")],
        format="parquet",
        target="label",
        fill={"a": 0.5},
    )
    recorded = inputs_json(table)
    assert recorded == {
        "kind": "table", "format": "parquet", "layout": "header", "target": "label",
        "columns": [{"name": "a", "kind": "number"},
                    {"name": "c", "kind": "category", "categories": ["x", "y"], "missing": "y"}],
        "fill": {"a": 0.5},
    }  # fmt: skip
    assert read_inputs(recorded).to_json() == recorded
    image = ImageInputs(size=(28, 28), mode="L")
    assert read_inputs(image.to_json()) == image
    assert inputs_json({"kind": "audio", "rate": 16000}) == {"kind": "audio", "rate": 16000}
    for bad, message in (
        (lambda: TableColumn("c", "text"), "kind must be one of number, category"),
        (lambda: TableColumn("c", "category"), "needs categories"),
        (lambda: ImageInputs(size=(28,)), "size must be (height, width)"),
        (lambda: read_inputs({"kind": "image", "size": [2, 2], "colour": "L"}), "colour"),
        (lambda: read_inputs({"kind": "audio"}), "kind must be 'table' or 'image'"),
    ):
        with pytest.raises(PluginError, match=message.replace("(", r"\(").replace(")", r"\)")):
            bad()
