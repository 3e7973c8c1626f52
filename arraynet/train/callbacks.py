"""Callbacks of the training loop (`arraynet.train.loop.fit_loop`), Keras-style.

A callback overrides any of `on_train_begin(t)`, `on_epoch_begin(t, epoch, n)`,
`on_batch_end(t, batch, size)`, `on_epoch_end(t, row)` and `on_train_end(t)`; `t` is the
run's `Training` (model, optimizer, history, `stopped` ...). One that keeps state across
epochs saves it in the run's checkpoint through `checkpoint_arrays`, `checkpoint_state`
and `restore`, so a resumed run continues exactly.
"""

from __future__ import annotations

import csv
import io
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from arraynet.files import atomic_write_bytes
from arraynet.train.averaging import WeightAverage, recalibrate_batchnorm
from arraynet.train.early_stopping import MIN_DELTA, PATIENCE, StoppingWindow

Training = Any  # arraynet.train.loop.Training (not imported: it imports this module)


class Callback:
    """Base class: every hook does nothing. `order` sorts callbacks (lower first) within
    their group (`arraynet.train.loop.Training`)."""

    order = 0
    saves_run = False  # True for the checkpoint (ModelCheckpoint)
    writes_row = False  # True: adds to the epoch's row, so it runs before the checkpoint

    def on_train_begin(self, t: Training) -> None: ...
    def on_epoch_begin(self, t: Training, epoch: int, n: int) -> None: ...
    def on_batch_end(self, t: Training, batch: int, size: int) -> None: ...
    def on_epoch_end(self, t: Training, row: dict) -> None: ...
    def on_train_end(self, t: Training) -> None: ...

    def checkpoint_arrays(self, t: Training) -> dict:
        """Host arrays to keep in the checkpoint (names unique across callbacks)."""
        return {}

    def checkpoint_state(self, t: Training) -> dict:
        """JSON-able state to keep in the checkpoint."""
        return {}

    def restore(self, t: Training, arrays: dict, state: dict) -> None:
        """Continue from what `checkpoint_arrays` and `checkpoint_state` saved."""


class EarlyStopping(Callback):
    """The seed's sliding-window early stopping: keep the last `patience` epochs' values of
    `monitor` ('train_loss' or 'val_loss') and weights; stop when the oldest is within a
    relative `min_delta` of the best; the best kept weights are restored at the end."""

    def __init__(
        self, patience: int = PATIENCE, min_delta: float = MIN_DELTA, monitor: str = "train_loss"
    ) -> None:
        self.monitor = monitor
        self.window = StoppingWindow(min_delta, patience)

    def on_epoch_end(self, t: Training, row: dict) -> None:
        if self.monitor not in row:
            raise ValueError(f"early stopping monitors {self.monitor!r}, which the run lacks "
                             "(val_loss needs validation data)")  # fmt: skip
        with t.averaged():
            snap = t.snapshot()
        if self.window.update(t.epoch, row[self.monitor], snap):
            t.stopped = True
            row["early_stop"] = True

    def on_train_end(self, t: Training) -> None:
        if self.window.values:
            t.best_epoch, _, weights = self.window.best()
            t.restore(weights)

    def checkpoint_arrays(self, t: Training) -> dict:
        return {f"es{j}.{k}": v for j, w in enumerate(self.window.weights) for k, v in w.items()}

    def checkpoint_state(self, t: Training) -> dict:
        return {"es_window": self.window.window()}

    def restore(self, t: Training, arrays: dict, state: dict) -> None:
        w = state.get("es_window")
        if not w:
            return
        self.window.values = list(w["values"])
        self.window.epochs = list(w["epochs"])
        self.window.weights = [
            {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"es{j}.")}
            for j in range(len(w["values"]))
        ]


class SWA(Callback):
    """Stochastic weight averaging: the weights at the end of every epoch from `start` on
    (1-based) are averaged; the run ends with the average and batch-norm statistics
    recomputed for it on the training images."""

    def __init__(self, start: int = 1) -> None:
        self.start = int(start)
        self.avg = WeightAverage()

    def on_epoch_end(self, t: Training, row: dict) -> None:
        if t.epoch >= self.start:
            self.avg.add(t.model.parameters())
            row["swa_count"] = self.avg.count

    def on_train_end(self, t: Training) -> None:
        if self.avg.mean is not None:
            t.model.set_parameters(self.avg.mean)
            recalibrate_batchnorm(t.model, t.train.x)

    def checkpoint_arrays(self, t: Training) -> dict:
        b = t.backend
        return {f"swa.{k}": b.to_host(v) for k, v in (self.avg.mean or {}).items()}

    def checkpoint_state(self, t: Training) -> dict:
        return {"swa_count": self.avg.count}

    def restore(self, t: Training, arrays: dict, state: dict) -> None:
        if state.get("swa_count"):
            b = t.backend
            mean = {k[4:]: b.from_host(v) for k, v in arrays.items() if k.startswith("swa.")}
            self.avg = WeightAverage(mean, state["swa_count"])


def recipe_callbacks(recipe: Any) -> list[Callback]:
    """The callbacks a recipe asks for (weight averaging, early stopping)."""
    cbs: list[Callback] = []
    if recipe.swa_from:
        cbs.append(SWA(recipe.swa_from))
    if recipe.early_stopping:
        min_delta, patience = recipe.early_stopping
        cbs.append(EarlyStopping(patience, min_delta, recipe.monitor))
    return cbs


def format_row(row: dict) -> str:
    """One epoch's line: lr, loss (and accuracy), validation figures, time, speed."""
    parts = [f"epoch {row['epoch']:>3}", f"lr {row['lr']:.2e}", f"loss {row['train_loss']:.4f}"]
    if "accuracy" in row:  # (fit's metrics=["accuracy"])
        parts.append(f"acc {100 * row['accuracy']:.2f}%")
    if "val_loss" in row:
        parts += [f"val_loss {row['val_loss']:.4f}", f"val_err {100 * row['val_error']:.2f}%"]
    parts += [f"{row['seconds']:.1f}s", f"{row['img_per_s'] or 0:,.0f} img/s"]
    if row.get("early_stop"):
        parts.append("early stop")
    return "  ".join(parts)


AT_CHANCE = ("warning: the training loss is no better than chance; the network may have died "
             "(every ReLU off); another --seed usually trains")  # fmt: skip


class TrainingWarning(UserWarning):
    """A training run that goes on but likely needs a look (e.g. a loss no better than
    chance). `warnings.filterwarnings("ignore", category=arraynet.TrainingWarning)`
    silences them."""


def warn_at_chance(t: Training, row: dict) -> None:
    """A TrainingWarning when the epoch's loss is no better than chance (at most once an
    epoch, whichever callback notices first; Python's default filter then shows it once);
    the CLI prints `AT_CHANCE` instead."""
    if row.get("at_chance") and getattr(t, "_warned_at_chance", None) != row["epoch"]:
        t._warned_at_chance = row["epoch"]
        warnings.warn(
            "the training loss is no better than chance; the network may have died (every "
            "ReLU off); another seed= usually trains",
            TrainingWarning,
            stacklevel=1,
        )


class ChanceWarning(Callback):
    """Warns (`TrainingWarning`) when an epoch's loss is no better than chance: fit adds
    it whatever its `verbose`."""

    def on_epoch_end(self, t: Training, row: dict) -> None:
        warn_at_chance(t, row)


class Progress(Callback):
    """Prints one line per epoch (fit's verbose=2); a loss no better than chance is a
    `TrainingWarning`."""

    def __init__(self, print_fn: Callable[[str], Any] = print) -> None:
        self.print = print_fn

    def on_epoch_end(self, t: Training, row: dict) -> None:
        self.print(format_row(row))
        warn_at_chance(t, row)


class ProgressBar(Progress):
    """fit's verbose=1: a per-batch progress bar (rich) while each epoch trains, then the
    epoch's line as `Progress` prints it. The bar shows in a terminal or a notebook
    (`console`, default rich's on stdout, says which it is); elsewhere (a log, a pipe)
    only the lines are printed. It reads nothing from the device: it counts the batches
    the loop reports. `close()` ends the bar (fit calls it even when training fails)."""

    def __init__(self, print_fn: Callable[[str], Any] = print, console: Any = None) -> None:
        super().__init__(print_fn)
        self.console = console
        self.bar: Any = None
        self.task: Any = None

    def on_train_begin(self, t: Training) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        con = self.console or Console()
        self.bar = Bar(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("batches"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=con,
            transient=True,
            disable=not (con.is_terminal or con.is_jupyter),
        )
        self.bar.start()

    def on_epoch_begin(self, t: Training, epoch: int, n: int) -> None:
        steps = -(-n // t.recipe.batch_size)
        self.task = self.bar.add_task("train", total=steps, epoch=epoch + 1,
                                      epochs=t.recipe.epochs)  # fmt: skip

    def on_batch_end(self, t: Training, batch: int, size: int) -> None:
        self.bar.update(self.task, completed=batch)

    def on_epoch_end(self, t: Training, row: dict) -> None:
        if self.task is not None:
            self.bar.refresh()  # (the full bar, once: updates redraw at most 10 times a second)
            self.bar.remove_task(self.task)
            self.task = None
        super().on_epoch_end(t, row)

    def on_train_end(self, t: Training) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class Accuracy(Callback):
    """fit's `metrics=["accuracy"]`: the share of training predictions that hit while
    each epoch trains (Keras's "accuracy"), counted on the device by the model
    (`Network.train_hits`) and read once at the epoch's end into the row's "accuracy"."""

    writes_row = True  # the checkpoint saves the row with its accuracy

    def __init__(self) -> None:
        self.seen = 0

    def on_epoch_begin(self, t: Training, epoch: int, n: int) -> None:
        b = t.backend
        t.model.train_hits = b.xp.zeros((), dtype=t.model.dtype, device=b.device)
        self.seen = 0

    def on_batch_end(self, t: Training, batch: int, size: int) -> None:
        self.seen += size  # (all ranks' images)

    def on_epoch_end(self, t: Training, row: dict) -> None:
        hits = float(t.backend.to_host(t.model.train_hits))
        t.model.train_hits = None
        if t.parallel is not None:
            (hits,) = t.parallel.sum_floats([hits])
        row["accuracy"] = hits / self.seen if self.seen else 0.0

    def on_train_end(self, t: Training) -> None:
        t.model.train_hits = None


class History(list):
    """What `Sequential.fit` returns: the run's rows, one dict per epoch (a list, as
    before: `history[-1]["train_loss"]`, `len(history)`), with Keras's views:

    - `history`: metric name -> per-epoch list: "loss", "val_loss" (with validation
      data), and for each name in fit's `metrics` (e.g. "accuracy") that name and
      "val_" + it; a value an epoch lacks is None.
    - `epoch`: the epochs' numbers, 0-based as Keras counts them.
    - `rows`: the rows themselves (every column: lr, val_error, seconds ...).
    - `params`: fit's settings (epochs, batch_size, steps, verbose); `model`: the model.
    """

    def __init__(self, rows: Any = (), metrics: Any = (), params: dict | None = None) -> None:
        super().__init__(rows)
        self.metrics = list(metrics)
        self.params = dict(params or {})
        self.model: Any = None

    @property
    def rows(self) -> list[dict]:
        return list(self)

    @property
    def epoch(self) -> list[int]:
        return [r["epoch"] - 1 for r in self]

    @property
    def history(self) -> dict[str, list]:
        out = {"loss": [r.get("train_loss") for r in self]}
        for m in self.metrics:
            out[m] = [r.get("accuracy") for r in self]
        if any("val_loss" in r for r in self):
            out["val_loss"] = [r.get("val_loss") for r in self]
            for m in self.metrics:
                out[f"val_{m}"] = [
                    1.0 - r["val_error"] if r.get("val_error") is not None else None for r in self
                ]
        return out


class Hooks(Callback):
    """Plain functions as a callback: on_epoch_start(epoch, n), on_batch(batch, size),
    on_epoch(row) (the form `arraynet.jobs.train_model` takes)."""

    def __init__(self, fns: dict[str, Callable]) -> None:
        unknown = set(fns) - {"on_epoch_start", "on_batch", "on_epoch"}
        if unknown:
            raise ValueError(f"unknown callback names {sorted(unknown)}")
        self.fns = fns

    def on_epoch_begin(self, t: Training, epoch: int, n: int) -> None:
        if "on_epoch_start" in self.fns:
            self.fns["on_epoch_start"](epoch, n)

    def on_batch_end(self, t: Training, batch: int, size: int) -> None:
        if "on_batch" in self.fns:
            self.fns["on_batch"](batch, size)

    def on_epoch_end(self, t: Training, row: dict) -> None:
        if "on_epoch" in self.fns:
            self.fns["on_epoch"](row)


class CSVLogger(Callback):
    """Writes the run's history (one row per epoch) to a CSV file after every epoch,
    atomically (a resumed run rewrites it whole, its earlier epochs included)."""

    order = 50  # after the callbacks that add columns to the row

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def on_train_begin(self, t: Training) -> None:
        check_writable_file(self.path, "--history")

    def on_epoch_end(self, t: Training, row: dict) -> None:
        write_history_csv(self.path, t.history)


def check_writable_file(path: Path, what: str) -> None:
    """Before training: `path` can be written (not a folder; its folder exists or can be
    made, and takes a file). ValueError, one line, otherwise."""
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a folder; give a file to write")
    check_writable_dir(path.parent, what, path)


def check_writable_dir(folder: Path, what: str, shown: Path | None = None) -> None:
    """Before training: `folder` exists or can be made, and a file can be created in it."""
    shown = shown or folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".arraynet-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"{what} {shown}: cannot write there ({e.strerror or e})") from None


def write_history_csv(path: str | os.PathLike, history: list[dict]) -> None:
    """The rows as CSV, columns in order of first appearance, written atomically."""
    columns: list[str] = []
    for r in history:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    atomic_write_bytes(path, buf.getvalue().encode())


class TensorBoard(Callback):
    """Per-epoch scalars for TensorBoard (tensorboardX, the `tensorboard` extra):
    train/loss, val/error, val/loss, lr, img_per_s, at the epoch number (1-based).

    Each run writes into its own subfolder of `logdir`, so that runs sharing a logdir stay
    apart in TensorBoard: `run_name`, else the run folder's name (a resumed run goes on in
    its subfolder), else `run-<date>-<time>` (with a suffix when that exists)."""

    order = 50
    TAGS: ClassVar[dict[str, str]] = {
        "train_loss": "train/loss", "val_error": "val/error", "val_loss": "val/loss",
        "lr": "lr", "img_per_s": "img_per_s",
    }  # fmt: skip

    def __init__(self, logdir: str | os.PathLike, run_name: str | None = None) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError(
                "TensorBoard logs need tensorboardX: uv sync --extra tensorboard "
                "(or pip install tensorboardX)"
            ) from None
        if run_name is not None and (not run_name or Path(run_name).name != run_name):
            raise ValueError(f"run_name wants a folder name, not {run_name!r}")
        self.logdir = Path(logdir)
        self.run_name = run_name
        self.run_dir: Path | None = None  # logdir / the run's subfolder, once training starts
        self._writer_type = SummaryWriter
        self.writer: Any = None

    def _subfolder(self, t: Training) -> str:
        if self.run_name is not None:
            return self.run_name
        for cb in t.callbacks:
            folder = getattr(cb, "folder", None) if getattr(cb, "saves_run", False) else None
            if folder is not None:
                return folder.path.resolve().name
        stamp = time.strftime("run-%Y%m%d-%H%M%S")
        name, k = stamp, 1
        while (self.logdir / name).exists():
            k += 1
            name = f"{stamp}-{k}"
        return name

    def on_train_begin(self, t: Training) -> None:
        check_writable_dir(self.logdir, "--logdir")
        self.run_dir = self.logdir / self._subfolder(t)
        self.writer = self._writer_type(str(self.run_dir))

    def on_epoch_end(self, t: Training, row: dict) -> None:
        for key, tag in self.TAGS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, float(row[key]), row["epoch"])
        self.writer.flush()

    def on_train_end(self, t: Training) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class ModelCheckpoint(Callback):
    """Saves the run into a run folder after every epoch (checkpoint.safetensors and
    state.json, see `arraynet.train.runfolder`): after the callbacks whose state it keeps and
    before the others (loggers), so no logger can lose an epoch (`Training.end_epoch`)."""

    saves_run = True

    def __init__(self, folder: Any) -> None:
        from arraynet.train.runfolder import RunFolder

        self.folder = folder if isinstance(folder, RunFolder) else RunFolder(folder)

    def on_epoch_end(self, t: Training, row: dict) -> None:
        self.folder.save_checkpoint(t)


__all__ = [
    "SWA",
    "Accuracy",
    "CSVLogger",
    "Callback",
    "ChanceWarning",
    "EarlyStopping",
    "History",
    "Hooks",
    "ModelCheckpoint",
    "Progress",
    "ProgressBar",
    "TensorBoard",
    "TrainingWarning",
    "check_writable_dir",
    "check_writable_file",
    "format_row",
    "recipe_callbacks",
    "warn_at_chance",
    "write_history_csv",
]
