"""The docs site builds, and every code block of its pages runs.

- `mkdocs build --strict` (mkdocs.yml) passes: no broken link, no missing page, the API
  reference (mkdocstrings) and the CLI reference (docs/hooks/cli_reference.py) render.
- Every page of the site, and the README, is run as its reader would run it, in a fresh
  temporary folder that stands for a clone of the repository (`examples/`, `models/` and
  `scripts/` linked in), with ARRAYNET_DATA set: its code blocks in order, as one Python
  script, so the blocks of a page share one namespace (a later block uses an earlier
  one's model). A ```python block runs as written; in a ```bash block each command whose
  program is `arraynet`, `python` or `mpiexec` (after `uv run` and any `VAR=value`
  settings; `\\` continues a line) runs in bash with the project's virtual environment
  first on PATH. The script runs as `page.py --small`, so that an example file a page
  includes (`--8<-- "examples/quickstart.py"`) trains at the size tests/test_examples.py
  uses. Snippets (`--8<-- "path"`, with optional `:start:end` lines) are included as
  MkDocs includes them.

Not run: ```text blocks (long runs, output, and the CLI reference's generated examples);
bash lines of other programs (`uv sync`, `uv run pytest`, `curl`, `cd`, ...; the list is
NOT_RUN, and test_every_bash_line_is_run_or_known_not_to_be fails on any other); and the
files a page includes from elsewhere that hold contributors' commands (INCLUDED_NOT_RUN).
A page is a Python script here, so a block that only makes sense on its own (an
interactive session) has no place in the docs: write it as a script.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCS = REPO / "docs"
README = REPO / "README.md"
# pages that come from outside docs/ (docs/hooks/repo_files.py publishes them)
REPO_PAGES = [p for p in sorted((REPO / "benchmarks").glob("*.md")) if p.name != "README.md"]
# files a page includes whose code blocks are not run, and why
INCLUDED_NOT_RUN = {
    "CONTRIBUTING.md": "contributors' set-up, benchmark and GPU-check commands (minutes "
    "each, some need torch, a GPU or git history)",
    "benchmarks/data-parallel.md": "the benchmark that wrote benchmarks/data-parallel-cpu.json "
    "(it would overwrite it)",
}
# programs of bash lines that are not run (installs, the test suite itself, servers ...)
NOT_RUN = ("uv sync", "uv pip", "uv run pytest", "uv run ruff", "pip install", "cd ", "curl ",
           "git ", "srun ", "bash scripts/", "npm ", "sha256sum", "export ")  # fmt: skip
RUN = ("arraynet", "python", "mpiexec")
LINKED = ("examples", "models", "scripts")  # the repository folders a page's commands read
SNIPPET = re.compile(r'^(?P<indent>[ \t]*)--8<--[ \t]+"(?P<path>[^"]+)"[ \t]*$', re.M)
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)  # fmt: skip


def pages() -> list[Path]:
    """Every markdown page of the site, the README and the pages published from the repo."""
    site = sorted(DOCS.rglob("*.md"))
    return [README, *site, *REPO_PAGES]


def page_id(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def include(text: str, depth: int = 0) -> str:
    """The text with its snippets included (`--8<-- "path"` or `"path:start:end"`, lines
    1-based and inclusive, relative to the repository root), as pymdownx.snippets does."""

    def one(m: re.Match) -> str:
        path, _, lines = m.group("path").partition(":")
        if path in INCLUDED_NOT_RUN:
            return ""
        body = (REPO / path).read_text().splitlines()
        if lines:
            start, _, end = lines.partition(":")
            body = body[int(start or 1) - 1 : int(end) if end else None]
        return "\n".join(m.group("indent") + b if b else b for b in body)

    assert depth < 5, "snippets nest too deep"
    out = SNIPPET.sub(one, text)
    return out if out == text else include(out, depth + 1)


def blocks(page: Path) -> list[tuple[str, str, int]]:
    """(language, code, line) of each fenced block of the page, snippets included."""
    if page_id(page) in INCLUDED_NOT_RUN:
        return []
    text = include(page.read_text())
    out = []
    for m in FENCE.finditer(text):
        info = m.group("info").strip().split()
        lang = info[0].lower() if info else ""
        indent = len(m.group("indent"))
        body = "\n".join(line[indent:] for line in m.group("body").splitlines())
        out.append((lang, body + "\n", text.count("\n", 0, m.start()) + 1))
    return out


def commands(code: str) -> list[str]:
    """A bash block's commands: its lines, with `\\` continuations joined, comment lines
    and blank lines left out."""
    out, cur = [], ""
    for line in code.splitlines():
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip() and not cur.strip().startswith("#"):
            out.append(cur.strip())
        cur = ""
    return out


def program(command: str) -> str:
    """The command with its leading `VAR=value` settings and `uv run` left out."""
    words = command.split()
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
        words.pop(0)
    if words[:2] == ["uv", "run"]:
        words = words[2:]
    return " ".join(words)


def runs(command: str) -> bool:
    return program(command).split(" ", 1)[0] in RUN


def as_run(command: str) -> str:
    """The command as the test runs it: `uv run` dropped (the venv is first on PATH)."""
    return re.sub(r"(^|\s)uv run\s+", r"\1", command, count=1)


def script(page: Path) -> str | None:
    """The page as one Python script (None when it has nothing to run)."""
    parts, ran = [], False
    for lang, code, line in blocks(page):
        where = f"{page_id(page)}, line {line}"
        if lang in ("python", "py"):
            parts.append(f"# --- {where} ---\n{code}")
            ran = True
        elif lang in ("bash", "sh", "shell", "console"):
            cmds = [as_run(c) for c in commands(code) if runs(c)]
            if cmds:
                parts.append(f"# --- {where} ---\n" + "".join(
                    f"__docs_sh({c!r}, {where!r})\n" for c in cmds))  # fmt: skip
                ran = True
    if not ran:
        return None
    head = """import subprocess as __docs_subprocess, sys as __docs_sys

def __docs_sh(command, where):
    print(f"$ {command}", flush=True)
    p = __docs_subprocess.run(["bash", "-c", command])
    if p.returncode != 0:
        __docs_sys.exit(f"{where}: `{command}` exited with status {p.returncode}")

"""
    return head + "\n".join(parts)


def run_page(page: Path, folder: Path, data_dir: Path, timeout: float = 300) -> str:
    """Run the page's script in `folder` (a stand-in for a clone); its output, or a failure
    that shows the end of it."""
    code = script(page)
    assert code is not None
    for name in LINKED:
        if not (folder / name).exists():
            (folder / name).symlink_to(REPO / name, target_is_directory=True)
    (folder / "page.py").write_text(code)
    env = dict(os.environ)
    env["ARRAYNET_DATA"] = str(data_dir)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "100"
    # one thread: OpenBLAS's threads spin while they wait, which on a busy 2-core machine
    # made a small MLP's fit 100x slower (these runs check that the code runs, not speed)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.pop("VIRTUAL_ENV", None)
    p = subprocess.run([sys.executable, "-u", "page.py", "--small"], cwd=folder, env=env,
                       capture_output=True, text=True, timeout=timeout)  # fmt: skip
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{page_id(page)} failed:\n{out[-6000:]}"
    return out


RUNNABLE = [p for p in pages() if script(p) is not None]


# -- quick checks of the pages' code ----------------------------------------------------------
def test_every_page_and_include_exists():
    assert README.is_file() and (DOCS / "index.md").is_file()
    for page in pages():
        for m in SNIPPET.finditer(page.read_text()):
            path = m.group("path").partition(":")[0]
            assert (REPO / path).is_file(), f"{page_id(page)} includes {path}, which is missing"


def test_every_bash_line_is_run_or_known_not_to_be():
    """A documented command either runs in the tests or is of a kind listed in NOT_RUN: a
    new kind of command cannot slip into the docs untested."""
    unknown = []
    for page in pages():
        for lang, code, line in blocks(page):
            if lang not in ("bash", "sh", "shell", "console"):
                continue
            for c in commands(code):
                if not runs(c) and not program(c).startswith(NOT_RUN) and not c.startswith(NOT_RUN):
                    unknown.append(f"{page_id(page)}:{line}: {c}")
    assert not unknown, "bash lines neither run nor listed in NOT_RUN:\n" + "\n".join(unknown)


def test_python_blocks_compile():
    for page in pages():
        for lang, code, line in blocks(page):
            if lang in ("python", "py"):
                compile(code, f"{page_id(page)}:{line}", "exec")


def test_the_readme_keeps_the_test_command():
    """.ci/run runs the README's test command: a bash block with `uv run pytest` alone."""
    lines = [c for lang, code, _ in blocks(README) if lang == "bash" for c in commands(code)]
    assert "uv run pytest" in lines, "the README needs `uv run pytest` alone on a line"


# -- the site and the pages, run ---------------------------------------------------------------
def _mkdocs() -> list[str]:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError as e:
        pytest.skip(f"the docs tools are not installed ({e.name}): uv sync --group docs")
    return [sys.executable, "-m", "mkdocs"]


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # (Material's notice about its future)
    p = subprocess.run([*_mkdocs(), "build", "--strict", "--site-dir", str(site)], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    assert (site / "index.html").is_file()
    cli = (site / "cli" / "index.html").read_text()
    assert "arraynet train" in cli and "--epochs" in cli, "the CLI reference is empty"
    api = (site / "api" / "model" / "index.html").read_text()
    assert "evaluate" in api and "load_model" in api, "the API reference is empty"


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=page_id)
def test_page_code_runs(page, tmp_path, data_dir):
    run_page(page, tmp_path, data_dir)


if __name__ == "__main__":  # python tests/test_docs.py PAGE.md: print a page's script
    for arg in sys.argv[1:]:
        print(script(Path(arg).resolve()))
    if not sys.argv[1:]:
        print("\n".join(page_id(p) for p in RUNNABLE))
