"""Trust under fire, in training: a diverging run stops with one line and keeps its last
good checkpoint; no output path or logger can lose an epoch; a run folder cut anywhere
(a failure injected at every fsync of a run's saves, a kill between its two checkpoint
files, temporary files a kill left behind) resumes to bitwise the uninterrupted result.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.io import load_arrays, load_model
from arraynet.jobs import train_model
from arraynet.train.callbacks import Callback, CSVLogger
from arraynet.train.loop import EpochSavedError, TrainingDiverged
from arraynet.zoo import recipe_for
from tests.test_cli import one_line_error, run


def _tiny(tmp_path: Path, data_dir: Path, out: str, epochs: int = 2, **kw) -> dict:
    """m8 on 48 images, batches of 16 (3 steps an epoch): a run in a second."""
    recipe = recipe_for("m8").with_overrides(epochs=2, batch_size=16, schedule="const")
    return train_model(
        "m8", get_backend("numpy"), recipe=recipe, seed=2, out_dir=tmp_path / out,
        data_dir=str(data_dir), train_limit=48, epochs=epochs, quiet_data=True, **kw,
    )  # fmt: skip


def _weights(folder: Path) -> dict[str, np.ndarray]:
    return load_arrays(folder / "model.safetensors")[0]


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert sorted(wa) == sorted(wb)
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


# -- numbers stay finite or the run stops cleanly --------------------------------------
@pytest.mark.slow  # a CLI run
def test_a_diverging_cli_run_stops_with_one_line(tmp_path, mnist_sample):
    """The probe's command: --lr 1e308 (the first update overflows, so the second step's
    loss is NaN). One line, status 1, no NumPy warnings, and no weights file (a NaN model
    is never saved)."""
    out = tmp_path / "x"
    p = run("train", "--model", "m4", "--lr", "1e308", "--data", str(mnist_sample),
            "--epochs", "1", "--out", str(out))  # fmt: skip
    one_line_error(p, "training diverged in epoch 1: the loss became non-finite at step 2 of 16")
    assert "last good checkpoint is kept (none yet)" in p.stderr
    assert not (out / "model.safetensors").exists()
    assert not (out / "checkpoint.safetensors").exists()


class _Poison(Callback):
    """Makes one weight NaN (or inf) at a chosen epoch and batch: a run that diverges."""

    def __init__(self, epoch: int, batch: int, value: float = np.nan) -> None:
        self.epoch, self.batch, self.value = epoch, batch, value

    def on_batch_end(self, t, batch, size):
        if t.epoch + 1 == self.epoch and batch == self.batch:
            params = t.model.parameters()
            name = sorted(params)[0]
            w = np.array(t.backend.to_host(params[name]))
            w.flat[0] = self.value
            t.model.set_parameters({name: t.backend.from_host(w)})


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, data_dir):
    """Epoch 2 diverges: the run ends with TrainingDiverged naming epoch 2 and the step,
    the folder keeps epoch 1's checkpoint, and that checkpoint is finite and resumable."""
    with pytest.raises(TrainingDiverged, match=r"epoch 2: the loss became non-finite at step 2 "
                       r"of 3 .* kept \(epoch 1\)"):  # fmt: skip
        _tiny(tmp_path, data_dir, "run", callbacks=[_Poison(epoch=2, batch=1)])
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["epoch"] == 1 and not (tmp_path / "run" / "model.safetensors").exists()
    arrays, _ = load_arrays(tmp_path / "run" / "checkpoint.safetensors")
    assert all(np.isfinite(v).all() for v in arrays.values())
    _tiny(tmp_path, data_dir, "run", resume=True)  # the last good epoch continues
    _tiny(tmp_path, data_dir, "straight")
    _same_weights(tmp_path / "run", tmp_path / "straight")


def test_weights_that_turn_infinite_on_the_last_step_are_caught(tmp_path, data_dir):
    text = r"weights became non-finite by the end of the epoch \(3 steps\)"
    with pytest.raises(TrainingDiverged, match=text):
        _tiny(tmp_path, data_dir, "run", epochs=1, callbacks=[_Poison(1, 3, np.inf)])


def test_the_divergence_check_makes_no_transfer_per_step():
    """The check lives on the device: a step of a run with it still reads nothing back
    (the transfer test of tests/test_device_readiness.py counts that for whole runs)."""
    from arraynet.train.loop import _first_bad

    b = get_backend("numpy")
    xp = b.xp
    bad = xp.full((), 5.0)
    for i, loss in enumerate([1.0, 2.0, float("nan"), 3.0, float("inf")]):
        bad = _first_bad(xp, xp.asarray(loss), bad, i)
    assert float(bad) == 2.0


# -- no lost epoch ---------------------------------------------------------------------
@pytest.mark.slow  # a CLI run
def test_a_bad_history_path_is_refused_before_training(tmp_path, mnist_sample):
    """The probe's `--history /tmp`: refused before the first step, nothing lost."""
    out = tmp_path / "r"
    p = run("train", "--model", "m9", "--data", str(mnist_sample), "--epochs", "2",
            "--out", str(out), "--history", str(tmp_path))  # fmt: skip
    one_line_error(p, f"--history {tmp_path}: is a folder; give a file to write")
    assert re.search(r"^epoch +1 ", p.stdout, re.M) is None  # refused before training
    assert not (out / "checkpoint.safetensors").exists()


def test_output_folders_are_checked_before_training(tmp_path, data_dir):
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(ValueError, match=r"--history .*cannot write there"):
        _tiny(tmp_path, data_dir, "r", callbacks=[CSVLogger(blocked / "h.csv")])
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()


class _Fails(Callback):
    """A logger whose write fails (a full disk) at the end of epoch `epoch`."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, t, row):
        if t.epoch == self.epoch:
            raise OSError(errno.ENOSPC, "No space left on device", "/logs/history.csv")


def test_a_logger_failing_after_the_checkpoint_keeps_the_epoch(tmp_path, data_dir):
    """The checkpoint is written before any logger runs; a logger that then fails stops
    the run with a message saying the epoch is saved, and --resume continues it."""
    with pytest.raises(EpochSavedError, match=r"epoch 1 is saved in .*run \(--resume continues "
                       r"from it\), but then _Fails failed: .*No space left"):  # fmt: skip
        _tiny(tmp_path, data_dir, "run", callbacks=[_Fails(1)])
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epoch"] == 1
    _tiny(tmp_path, data_dir, "run", resume=True)
    _tiny(tmp_path, data_dir, "straight")
    _same_weights(tmp_path / "run", tmp_path / "straight")


def test_callbacks_run_state_first_then_the_checkpoint_then_loggers(tmp_path, data_dir):
    from arraynet.train.callbacks import EarlyStopping, ModelCheckpoint, Progress
    from arraynet.train.loop import Dataset, Training

    b = get_backend("numpy")
    x = b.from_host(np.zeros((4, 28, 28, 1), np.float32))
    y = b.from_host(np.eye(10, dtype=np.float32)[:4])
    recipe = recipe_for("m8").with_overrides(epochs=1)
    logger, ckpt = CSVLogger(tmp_path / "h.csv"), ModelCheckpoint(tmp_path / "run")
    t = Training(
        __import__("arraynet.zoo", fromlist=["build_layout"]).build_layout("m8").build(b),
        recipe, Dataset(x, y, np.arange(4)), callbacks=[logger, Progress(), ckpt],
    )  # fmt: skip
    kinds = [type(c) for c in t.callbacks]
    assert kinds[0] is EarlyStopping and kinds[1] is ModelCheckpoint
    assert kinds[2:] == [Progress, CSVLogger]


# -- a run folder cut anywhere resumes -------------------------------------------------
def _count_fsyncs(tmp_path, data_dir, monkeypatch) -> int:
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    _tiny(tmp_path, data_dir, "count", callbacks=[CSVLogger(tmp_path / "count.csv")])
    monkeypatch.setattr(os, "fsync", real)
    return len(calls)


def test_a_failure_at_every_fsync_resumes_to_the_same_weights(tmp_path, data_dir, monkeypatch):
    """A full disk injected at each fsync of a 2-epoch run's saves in turn (checkpoint,
    state.json, the CSV history, the final weights): the run stops with an error naming
    the file, leaves no temporary file, and --resume ends bitwise where an uninterrupted
    run ends."""
    _tiny(tmp_path, data_dir, "straight")
    total = _count_fsyncs(tmp_path, data_dir, monkeypatch)
    assert total >= 7  # 2 epochs x (checkpoint, state.json, CSV) + the final weights
    real = os.fsync
    for k in range(total):
        out = f"cut{k}"
        seen = []

        def failing(fd, k=k, seen=seen):
            seen.append(fd)
            if len(seen) == k + 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd)

        monkeypatch.setattr(os, "fsync", failing)
        history = CSVLogger(tmp_path / f"{out}.csv")
        with pytest.raises((OSError, EpochSavedError)) as e:
            _tiny(tmp_path, data_dir, out, callbacks=[history])
        monkeypatch.setattr(os, "fsync", real)
        assert "No space left on device" in str(e.value)
        assert str(tmp_path) in str(e.value), f"fsync {k}: the error names no file: {e.value}"
        folder = tmp_path / out
        assert not [p.name for p in folder.glob(".*.tmp")], k
        if (folder / "checkpoint.safetensors").exists():
            _tiny(tmp_path, data_dir, out, resume=True, callbacks=[CSVLogger(history.path)])
        else:  # cut before the first checkpoint: nothing to lose, start again
            _tiny(tmp_path, data_dir, out)
        _same_weights(folder, tmp_path / "straight")


def test_a_checkpoint_without_its_state_json_resumes(tmp_path, data_dir):
    """A kill between writing the checkpoint and state.json (its readable copy): the
    checkpoint holds the whole state, so --resume continues, and a fresh run says so."""
    _tiny(tmp_path, data_dir, "run", epochs=1)
    (tmp_path / "run" / "state.json").unlink()
    (tmp_path / "run" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"interrupted save.*continue it with --resume"):
        _tiny(tmp_path, data_dir, "run")
    _tiny(tmp_path, data_dir, "run", resume=True)
    _tiny(tmp_path, data_dir, "straight")
    _same_weights(tmp_path / "run", tmp_path / "straight")


def test_resume_removes_what_killed_writes_left(tmp_path, data_dir):
    _tiny(tmp_path, data_dir, "run", epochs=1)
    folder = tmp_path / "run"
    litter = [folder / ".checkpoint.safetensors.k2j3.tmp", folder / ".state.json.x9.tmp",
              folder / ".model.safetensors.a.tmp", folder / ".arraynet-write-test"]  # fmt: skip
    for p in litter:
        p.write_bytes(b"partial")
    mine = folder / ".notes.tmp"  # not one of the run's own temporaries: kept
    mine.write_text("keep")
    (folder / "model.safetensors").unlink()
    _tiny(tmp_path, data_dir, "run", resume=True)
    assert not any(p.exists() for p in litter) and mine.exists()


@pytest.mark.slow  # a CLI run
def test_a_resume_without_anything_says_so(tmp_path):
    p = run("train", "--model", "m4", "--out", str(tmp_path / "none"), "--resume")
    one_line_error(p, "nothing to resume (no checkpoint.safetensors or state.json)")


def test_load_model_of_a_diverged_checkpoint_is_refused(tmp_path, data_dir):
    """Weights that did turn NaN (saved by older code, or by hand) are refused on load."""
    _tiny(tmp_path, data_dir, "run", epochs=1)
    path = tmp_path / "run" / "model.safetensors"
    arrays, meta = load_arrays(path)
    arrays[sorted(arrays)[0]] = np.full_like(arrays[sorted(arrays)[0]], np.nan)
    from arraynet.io import WeightsError, save_arrays

    save_arrays(path, arrays, meta)
    with pytest.raises(WeightsError, match="holds NaN or infinite values"):
        load_model(path, get_backend("numpy"))


def test_threads_are_bounded(monkeypatch):
    from arraynet.backends.numpy_backend import max_threads

    with pytest.raises(ValueError, match=r"--threads wants 1\.\.\d+ threads"):
        get_backend("numpy", threads=100_000)
    assert get_backend("numpy", threads=max_threads()).threads == max_threads()
    monkeypatch.setenv("ARRAYNET_THREADS", "100000")
    with pytest.raises(ValueError, match=r"ARRAYNET_THREADS wants 1\.\.\d+ threads"):
        get_backend("numpy")


@pytest.mark.slow  # a CLI run
def test_cli_threads_100000_is_one_line(tmp_path):
    p = run("train", "--model", "m4", "--threads", "100000", "--out", str(tmp_path / "t"))
    one_line_error(p, "--threads wants 1..")
