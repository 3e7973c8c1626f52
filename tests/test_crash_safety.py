"""Crash safety as the README promises it: a run killed mid-epoch (SIGKILL, no chance to
clean up) and continued with `--resume` ends bitwise where an uninterrupted run ends, and a
checkpoint write that fails leaves the previous checkpoint whole and no temporary file.

The runs go through the command line in subprocesses (as a user runs them) on tiny
budgets; the weights compared are the final `model.safetensors` tensors.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.io import load_arrays
from arraynet.jobs import train_model
from arraynet.zoo import recipe_for
from tests.conftest import REPO

TIMING = ("seconds", "img_per_s")  # the only history fields a resumed run may change


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "arraynet.cli", "train", *args]


def _env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "ARRAYNET_DATA": str(data_dir)}


def _start(args: list[str], out: Path, data_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(_cmd(*args, "--out", str(out), "--json", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(data_dir), cwd=REPO)  # fmt: skip


def _result(p: subprocess.Popen) -> dict:
    """The run's JSON summary once it has ended (it must succeed)."""
    try:
        stdout, stderr = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])


def _train(args: list[str], out: Path, data_dir: Path, *extra: str) -> dict:
    return _result(_start(args, out, data_dir, *extra))


def _epoch(out: Path) -> int:
    """Epochs the run folder's state.json records (0 before the first checkpoint)."""
    try:
        return int(json.loads((out / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0  # not there yet (state.json is renamed into place whole)


def _kill_after(args: list[str], out: Path, data_dir: Path, epochs_done: int) -> int:
    """Start the run, SIGKILL it as soon as `epochs_done` epochs are checkpointed (it is
    then training the next epoch), and return the epoch its folder holds."""
    p = subprocess.Popen(_cmd(*args, "--out", str(out)), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=_env(data_dir), cwd=REPO)  # fmt: skip
    deadline = time.monotonic() + 300
    try:
        while _epoch(out) < epochs_done:
            if p.poll() is not None:
                pytest.fail(f"the run ended before its checkpoint: {p.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint within 300 s")
            time.sleep(0.002)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
    assert p.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()  # killed before the end of the run
    return _epoch(out)


def _same_run(a: Path, b: Path) -> None:
    """Bitwise the same final weights, and the same history up to timings."""
    wa, ma = load_arrays(a / "model.safetensors")
    wb, mb = load_arrays(b / "model.safetensors")
    assert sorted(wa) == sorted(wb)
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and wa[k].tobytes() == wb[k].tobytes(), k

    def hist(meta: dict) -> list[dict]:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in meta["history"]]

    assert hist(ma) == hist(mb) and len(ma["history"]) > 0
    sa = json.loads((a / "state.json").read_text())
    sb = json.loads((b / "state.json").read_text())
    for key in ("epoch", "stopped", "rng_state", "shuffle_state", "opt_t", "es_window"):
        assert sa[key] == sb[key], key


def _killed_and_resumed_equals_straight(args, tmp_path, data_dir, kill_after, epochs) -> dict:
    # the uninterrupted run goes on beside the other two (they share no files)
    running = _start(args, tmp_path / "straight", data_dir)
    try:
        killed = _kill_after(args, tmp_path / "killed", data_dir, kill_after)
        assert kill_after <= killed < epochs, "the run was killed before it had trained out"
        resumed = _train(args, tmp_path / "killed", data_dir, "--resume")
    except BaseException:
        running.kill()
        running.communicate()
        raise
    straight = _result(running)
    _same_run(tmp_path / "straight", tmp_path / "killed")
    assert resumed["correct"] == straight["correct"]
    assert resumed["epochs_run"] == straight["epochs_run"]
    return straight


# m9: dropout, augmentation and shuffling all draw random numbers
M9 = ["--model", "m9", "--train-limit", "320", "--batch-size", "16", "--seed", "3"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bitwise_an_uninterrupted_run(
    tmp_path, data_dir, mnist_sample
):
    args = [*M9, "--epochs", "3", "--backend", "numpy", "--data", str(mnist_sample)]
    res = _killed_and_resumed_equals_straight(args, tmp_path, data_dir, 1, 3)
    assert res["epochs_run"] == 3


# m14's recipe: batch norm (running statistics are buffers), an EMA of the weights, cosine
# decay over the run (which refuses other --epochs on resume) and label smoothing; with
# early stopping that must fire (a window of 3 epochs and a min-delta of 100 %: the window
# never shows progress, so the run stops at epoch 3 of 6 and restores the best of it)
M14_ES = ["--model", "m14", "--seed", "5", "--epochs", "6", "--patience", "3",
          "--min-delta", "1"]  # fmt: skip
# weight averaging from epoch 2 on (the running average is in the checkpoint) and batch-norm
# statistics recomputed for the average at the end; killed once the average has begun
M14_SWA = ["--model", "m14-swa", "--seed", "6", "--epochs", "4", "--swa-from", "2"]
CASES = {"early-stop": (M14_ES, 1, 3), "swa": (M14_SWA, 2, 4)}  # args, kill after, epochs


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_of_m14_runs_on_numpy(case, tmp_path, data_dir, mnist_sample):
    args, kill_after, epochs = CASES[case]
    args = [*args, "--train-limit", "160", "--batch-size", "32", "--backend", "numpy",
            "--data", str(mnist_sample)]  # fmt: skip
    res = _killed_and_resumed_equals_straight(args, tmp_path, data_dir, kill_after, epochs)
    state = json.loads((tmp_path / "killed" / "state.json").read_text())
    assert res["epochs_run"] == epochs
    if case == "early-stop":
        assert res["stopped_early"] is True and state["history"][-1].get("early_stop") is True
        assert state["recipe"]["schedule"] == "cosine" and state["recipe"]["ema"] > 0
    else:
        assert state["swa_count"] == epochs - 1


def _same_checkpoint(a: Path, b: Path) -> None:
    """Bitwise the same checkpoint arrays (model, buffers, optimizer, EMA, SWA, the early-
    stopping window) and the same run state up to timings."""
    wa, ma = load_arrays(a / "checkpoint.safetensors")
    wb, mb = load_arrays(b / "checkpoint.safetensors")
    assert sorted(wa) == sorted(wb) and any(k.startswith("model.") for k in wa)
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and wa[k].tobytes() == wb[k].tobytes(), k
    sa, sb = ma["state"], mb["state"]
    hist = [
        [{k: v for k, v in r.items() if k not in TIMING} for r in s["history"]] for s in (sa, sb)
    ]
    assert hist[0] == hist[1]
    assert {k: v for k, v in sa.items() if k not in ("history", "elapsed")} == {
        k: v for k, v in sb.items() if k not in ("history", "elapsed")
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_of_m14_runs_on_array_api_strict(case, tmp_path, data_dir):
    """The same runs on array-api-strict, compared at their last checkpoint: each run is
    killed once its last epoch is saved (while it scores the 10,000 test images, which on
    this backend costs more than the training)."""
    args, kill_after, epochs = CASES[case]
    args = [*args, "--train-limit", "32", "--batch-size", "16", "--backend", "array-api-strict"]
    assert _kill_after(args, tmp_path / "straight", data_dir, epochs) == epochs
    killed = _kill_after(args, tmp_path / "killed", data_dir, kill_after)
    assert kill_after <= killed < epochs
    assert _kill_after([*args, "--resume"], tmp_path / "killed", data_dir, epochs) == epochs
    _same_checkpoint(tmp_path / "straight", tmp_path / "killed")
    state = json.loads((tmp_path / "killed" / "state.json").read_text())
    assert state["stopped"] is (case == "early-stop")


# -- a checkpoint write that fails -------------------------------------------------------
def _tiny(tmp_path: Path, data_dir: Path, epochs: int, out: str, resume: bool = False) -> dict:
    recipe = recipe_for("m8").with_overrides(epochs=4, batch_size=16, schedule="const")
    return train_model(
        "m8", get_backend("numpy"), recipe=recipe, seed=2, out_dir=tmp_path / out,
        resume=resume, data_dir=str(data_dir), train_limit=48, epochs=epochs, quiet_data=True,
    )  # fmt: skip


def _files(folder: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


@pytest.mark.parametrize("where", ["rename", "write"])
def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(
    where, tmp_path, data_dir, monkeypatch
):
    """The rename (os.replace) or the write itself (fsync: the disk is full) raises while
    epoch 2's checkpoint is saved: the run stops with that error, the folder holds epoch
    1's files byte for byte and no temporary file, and --resume then ends where an
    uninterrupted run ends."""
    _tiny(tmp_path, data_dir, 1, "run")
    before = _files(tmp_path / "run")
    assert {"checkpoint.safetensors", "state.json", "model.safetensors"} <= set(before)
    real_replace, real_fsync = os.replace, os.fsync
    calls = []

    def failing_replace(src, dst, *a, **kw):
        if Path(dst).name == "checkpoint.safetensors":
            calls.append(dst)
            raise OSError(errno.EIO, "injected rename failure")
        return real_replace(src, dst, *a, **kw)

    def failing_fsync(fd):
        calls.append(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "rename":
        monkeypatch.setattr(os, "replace", failing_replace)
    else:
        monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match=r"injected rename failure|No space left"):
        _tiny(tmp_path, data_dir, 2, "run", resume=True)
    assert calls, "the failure was never injected"
    monkeypatch.setattr(os, "replace", real_replace)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert _files(tmp_path / "run") == before  # epoch 1 intact, no temporary file
    assert json.loads(before["state.json"])["epoch"] == 1
    _tiny(tmp_path, data_dir, 2, "run", resume=True)
    _tiny(tmp_path, data_dir, 2, "straight")
    a, _ = load_arrays(tmp_path / "run" / "model.safetensors")
    b, _ = load_arrays(tmp_path / "straight" / "model.safetensors")
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(before)
