"""scripts/bench_kernels_ab.py: the kernels of a git revision against the working tree's."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = [sys.executable, str(REPO / "scripts" / "bench_kernels_ab.py")]


def test_ab_prints_rates_and_ratios_for_each_chunk_size(tmp_path, data_dir):
    out = tmp_path / "ab.json"
    args = ["--ref", "HEAD", "--models", "m9:8", "--chunk-mb", "1,4", "--rounds", "1"]
    args += ["--data-dir", str(data_dir), "--json", str(out)]
    p = subprocess.run([*SCRIPT, *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr
    rec = json.loads(out.read_text())
    assert json.loads(p.stdout.splitlines()[-1]) == rec
    (row,) = rec["rows"]
    assert set(row["train_img_per_s"]) == {"ref", "current 1 MB", "current 4 MB"}
    assert all(v > 0 for v in row["train_img_per_s"].values())
    assert row["ratio_to_ref"]["ref"] == 1.0


def test_ab_bad_input_is_one_line(data_dir):
    bad = (
        ["--ref", "no-such-revision"],
        ["--models", "m9"],
        ["--models", "m99:8"],
        ["--threads", "0"],
        ["--ref-threads", "0"],
        ["--ref", "9c2c7b4", "--ref-threads", "2"],  # kernels from before the threads
    )
    for extra in bad:
        args = ["--ref", "HEAD", "--data-dir", str(data_dir), *extra]
        p = subprocess.run([*SCRIPT, *args], capture_output=True, text=True, cwd=REPO)
        assert p.returncode != 0 and "Traceback" not in p.stderr
        assert p.stderr.strip().count("\n") == 0 and "bench_kernels_ab: error" in p.stderr


def test_ab_times_evaluation_with_thread_counts(tmp_path, data_dir):
    out = tmp_path / "ab.json"
    args = ["--ref", "HEAD", "--models", "m14:8", "--threads", "1,2", "--rounds", "1", "--eval"]
    args += ["--data-dir", str(data_dir), "--json", str(out)]
    p = subprocess.run([*SCRIPT, *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr
    (row,) = json.loads(out.read_text())["rows"]
    rates = row["eval_img_per_s"]
    assert set(rates) == {"ref", "current 4 MB 1 threads", "current 4 MB 2 threads"}
    assert all(v > 0 for v in rates.values())


def test_ab_runs_a_threaded_reference_on_its_own_threads(tmp_path, data_dir):
    """--ref-threads: the reference kernels (and that revision's portable helpers) run on
    worker threads too, so the ratio compares like with like."""
    out = tmp_path / "ab.json"
    args = ["--ref", "e3f0ddb", "--ref-threads", "2", "--models", "m14:4", "--rounds", "1"]
    args += ["--threads", "2", "--data-dir", str(data_dir), "--json", str(out)]
    p = subprocess.run([*SCRIPT, *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr
    rec = json.loads(out.read_text())
    assert rec["ref_threads"] == 2 and rec["ref_blas_threads"] is None
    (row,) = rec["rows"]
    assert set(row["train_img_per_s"]) == {"ref", "current 4 MB"}
    assert all(v > 0 for v in row["train_img_per_s"].values())
