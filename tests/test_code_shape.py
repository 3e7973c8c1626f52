"""The house keeps its shape: no function in `arraynet/` grows past about 100 lines (a
habit, like ruff; split one that does into helpers with names that explain them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "arraynet"
MAX_LINES = 110  # "about 100": a command's typer option list may take it a little over


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
