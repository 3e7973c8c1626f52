"""scripts/bench_kernels_ab.py: the kernels of a git revision against the working tree's.

The script reads its reference kernels with `git show REV:path`. So that the tests need no
history of this repository (a shallow clone, a tarball), each runs the working tree's
script and package inside a temporary repository of two commits: the first with kernels
that have no threads (a `KERNELS` table only), the second with the current kernels.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

KERNELS = Path("arraynet/backends/numpy_kernels.py")
THREADLESS = '''"""Kernels without worker threads (a revision before `make_kernels`)."""

from arraynet.backends.numpy_kernels import KERNELS  # noqa: F401
'''


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    who = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    p = subprocess.run(["git", *who, "-c", "commit.gpgsign=false", *args], cwd=repo, env=env,
                       capture_output=True, text=True, check=True)  # fmt: skip
    return p.stdout.strip()


@pytest.fixture(scope="module")
def ab_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-commit repository holding this tree's arraynet/ and the script; HEAD~1 has
    threadless kernels, HEAD the working tree's."""
    repo = tmp_path_factory.mktemp("ab-repo")
    junk = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "arraynet", repo / "arraynet", ignore=junk)
    (repo / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "bench_kernels_ab.py", repo / "scripts")
    _git(repo, "init", "-q")
    current = (repo / KERNELS).read_text()
    (repo / KERNELS).write_text(THREADLESS)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "kernels without threads")
    (repo / KERNELS).write_text(current)
    _git(repo, "commit", "-q", "-am", "threaded kernels")
    assert _git(repo, "rev-list", "--count", "HEAD") == "2"
    return repo


def _ab(repo: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    script = repo / "scripts" / "bench_kernels_ab.py"
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=repo)  # fmt: skip


@pytest.mark.slow
def test_ab_prints_rates_and_ratios_for_each_chunk_size(tmp_path, data_dir, ab_repo):
    out = tmp_path / "ab.json"
    args = ["--ref", "HEAD~1", "--models", "m9:8", "--chunk-mb", "1,4", "--rounds", "1"]
    p = _ab(ab_repo, *args, "--data-dir", str(data_dir), "--json", str(out))
    assert p.returncode == 0, p.stderr
    rec = json.loads(out.read_text())
    assert json.loads(p.stdout.splitlines()[-1]) == rec
    assert rec["ref"] == "HEAD~1" and rec["ref_threads"] is None
    (row,) = rec["rows"]
    assert set(row["train_img_per_s"]) == {"ref", "current 1 MB", "current 4 MB"}
    assert all(v > 0 for v in row["train_img_per_s"].values())
    assert row["ratio_to_ref"]["ref"] == 1.0


@pytest.mark.slow
def test_ab_bad_input_is_one_line(data_dir, ab_repo):
    bad = (
        ["--ref", "no-such-revision"],
        ["--models", "m9"],
        ["--models", "m99:8"],
        ["--threads", "0"],
        ["--ref-threads", "0"],
        ["--ref", "HEAD~1", "--ref-threads", "2"],  # kernels from before the threads
    )
    for extra in bad:
        p = _ab(ab_repo, "--ref", "HEAD", "--data-dir", str(data_dir), *extra)
        assert p.returncode != 0 and "Traceback" not in p.stderr
        assert p.stderr.strip().count("\n") == 0 and "bench_kernels_ab: error" in p.stderr
    p = _ab(ab_repo, "--ref", "HEAD~1", "--ref-threads", "2", "--data-dir", str(data_dir))
    assert "the kernels at 'HEAD~1' have no threads" in p.stderr


@pytest.mark.slow
def test_ab_times_evaluation_with_thread_counts(tmp_path, data_dir, ab_repo):
    out = tmp_path / "ab.json"
    args = ["--ref", "HEAD", "--models", "m14:8", "--threads", "1,2", "--rounds", "1", "--eval"]
    p = _ab(ab_repo, *args, "--data-dir", str(data_dir), "--json", str(out))
    assert p.returncode == 0, p.stderr
    (row,) = json.loads(out.read_text())["rows"]
    rates = row["eval_img_per_s"]
    assert set(rates) == {"ref", "current 4 MB 1 threads", "current 4 MB 2 threads"}
    assert all(v > 0 for v in rates.values())


@pytest.mark.slow
def test_ab_runs_a_threaded_reference_on_its_own_threads(tmp_path, data_dir, ab_repo):
    """--ref-threads: the reference kernels (and that revision's portable helpers) run on
    worker threads too, so the ratio compares like with like."""
    out = tmp_path / "ab.json"
    args = ["--ref", "HEAD", "--ref-threads", "2", "--models", "m14:4", "--rounds", "1"]
    args += ["--threads", "2", "--data-dir", str(data_dir), "--json", str(out)]
    p = _ab(ab_repo, *args)
    assert p.returncode == 0, p.stderr
    rec = json.loads(out.read_text())
    assert rec["ref_threads"] == 2 and rec["ref_blas_threads"] is None
    (row,) = rec["rows"]
    assert set(row["train_img_per_s"]) == {"ref", "current 4 MB"}
    assert all(v > 0 for v in row["train_img_per_s"].values())
