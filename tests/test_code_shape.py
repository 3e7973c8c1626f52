"""The house keeps its shape: no function in `arraynet/` grows past about 100 lines (a
habit, like ruff; split one that does into helpers with names that explain them), and
NumPy is imported only where CONTRIBUTING.md's Array-API rules allow it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "arraynet"
MAX_LINES = 110  # "about 100": a command's typer option list may take it a little over
NUMPY_HOMES = ("backends", "data", "io")  # (weight I/O is in io/)


def long_functions(root: Path, limit: int) -> list[str]:
    """'path:line name (N lines)' for every function or method over `limit` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    rel = path.relative_to(root.parent)
                    found.append(f"{rel}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_function_is_over_about_100_lines():
    assert long_functions(PACKAGE, MAX_LINES) == []


def test_the_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(120))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(f"def short():\n    pass\n\n\ndef big():\n{body}\n")
    found = long_functions(tmp_path / "pkg", MAX_LINES)
    assert found == ["pkg/m.py:5 big (121 lines)"]


@pytest.mark.parametrize("limit", [10])
def test_methods_count_too(tmp_path, limit):
    body = "\n".join(f"        y{i} = {i}" for i in range(12))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "c.py").write_text(f"class C:\n    def m(self):\n{body}\n")
    assert long_functions(tmp_path / "pkg", limit) == ["pkg/c.py:2 m (13 lines)"]


def numpy_importers(root: Path) -> list[str]:
    """Modules under `root` that import NumPy anywhere (lazily inside a function too)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n == "numpy" or n.startswith("numpy.") for n in names):
                found.append(path.relative_to(root).as_posix())
                break
    return found


def test_numpy_is_imported_only_in_its_homes():
    outside = [m for m in numpy_importers(PACKAGE) if m.split("/")[0] not in NUMPY_HOMES]
    assert outside == [], "layer, training and serving code takes its namespace from its inputs"


def test_the_numpy_check_sees_a_lazy_import(tmp_path):
    (tmp_path / "layers").mkdir()
    (tmp_path / "layers" / "x.py").write_text("def f():\n    import numpy.linalg as la\n")
    (tmp_path / "io").mkdir()
    (tmp_path / "io" / "y.py").write_text("import math\n")
    assert numpy_importers(tmp_path) == ["layers/x.py"]
