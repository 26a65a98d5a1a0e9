"""The layout is the architecture: small rooms, and imports that only run downward.

docs/architecture.md draws the same layers; a change that breaks them fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400

# Each module's layer; a module imports only from lower layers, or from its own
# package in the same layer (toolkit.train.loop may import toolkit.train.batches,
# but toolkit.verify may not import toolkit.train). TYPE_CHECKING imports are types
# only and are not counted.
LAYERS: list[tuple[str, ...]] = [
    ("toolkit.errors",),
    ("toolkit.params",),
    ("toolkit.formats",),
    (
        "toolkit.registry",
        "toolkit.config",
        "toolkit.tasks",
        "toolkit.runs",
        "toolkit.distributed",
        "toolkit.speed",
    ),
    ("toolkit.hookspecs", "toolkit.integrity", "toolkit.data"),
    ("toolkit.formats.builtin",),
    ("toolkit", "toolkit.plugins", "toolkit.weights", "toolkit.checkpoint"),
    ("toolkit.trust",),
    ("toolkit.models", "toolkit.pretrained"),
    ("toolkit.train", "toolkit.verify"),
    ("toolkit.export",),
    (
        "toolkit.predict",
        "toolkit.plot",
        "toolkit.testing",
        "toolkit.scaffold",
        "toolkit.runlog",
        "toolkit.bench",
    ),
    ("toolkit.tune", "toolkit.serve"),
    ("toolkit.commands",),
    ("toolkit.cli",),
    ("toolkit.__main__",),
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted((REPO / "toolkit").rglob("*.py")):
        parts = list(p.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _layer(module: str) -> tuple[int, str]:
    """(layer index, the package of that layer the module belongs to)."""
    best = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                best is None or len(name) > len(best[1])
            ):
                best = (i, name)
    assert best is not None, f"{module} is in no layer of tests/test_architecture.py"
    return best


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in ast.walk(node):
                if hasattr(child, "lineno"):
                    lines.add(child.lineno)
    return lines


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m in modules}


def test_imports_run_downward_only():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        layer, package = _layer(name)
        for dep in _imports(path, modules) - {name}:
            dep_layer, dep_package = _layer(dep)
            if dep_layer > layer or (dep_layer == layer and dep_package != package):
                wrong.append(f"{name} (layer {layer}) imports {dep} (layer {dep_layer})")
    assert not wrong, "\n".join(wrong)


def _functions(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("root", ["toolkit", "plugins"])
def test_no_function_over_60_lines(root):
    long = [
        f"{p.relative_to(REPO)}:{line} {name}() is {n} lines"
        for p in sorted((REPO / root).rglob("*.py"))
        for name, line, n in _functions(p)
        if n > MAX_FUNCTION_LINES
    ]
    assert not long, "\n".join(long)


def test_no_module_over_400_lines():
    big = [
        f"{p.relative_to(REPO)} is {n} lines"
        for p in sorted((REPO / "toolkit").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not big, "\n".join(big)


def test_the_counters_can_fail(tmp_path):
    """The checks above see a long function and an upward import when there is one."""
    long = tmp_path / "long.py"
    long.write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    assert [n for _, _, n in _functions(long)] == [MAX_FUNCTION_LINES + 1]
    upward = tmp_path / "up.py"
    upward.write_text("from toolkit.train import train\n")
    assert _imports(upward, _modules()) == {"toolkit.train"}
    assert _layer("toolkit.train.loop") > _layer("toolkit.models")


def test_every_package_is_in_the_distribution():
    """A package missing from pyproject's list works editable and is absent from the wheel."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    toolkit = (REPO / "toolkit").rglob("__init__.py")
    found = {".".join(p.parent.relative_to(REPO).parts) for p in toolkit}
    found |= {p.parent.name for p in (REPO / "plugins").glob("tk_*/__init__.py")}
    assert found - listed == set()
