"""`arraynet train`: the options, the recipe they make, the progress shown and the result."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from arraynet.cli.app import app, examples
from arraynet.cli.options import (
    DEFAULT_MODEL,
    AugPOpt,
    BackendOpt,
    BatchSizeOpt,
    CommOpt,
    DataDirOpt,
    DataOpt,
    DeviceOpt,
    DistillOpt,
    ElasticOpt,
    EmaOpt,
    EpochsOpt,
    HistoryOpt,
    InitOpt,
    JsonOpt,
    LabelSmoothingOpt,
    LogdirOpt,
    LrOpt,
    LrScalingOpt,
    LrWarmupOpt,
    MinDeltaOpt,
    MonitorOpt,
    OptimizerOpt,
    OutOpt,
    PatienceOpt,
    ResumeOpt,
    RngOpt,
    ScheduleOpt,
    SeedOpt,
    SwaFromOpt,
    SyncBnOpt,
    TeacherOpt,
    Tf32Opt,
    ThreadsOpt,
    TrainLimitOpt,
    TrainModelOpt,
    ValSplitOpt,
    WarmupOpt,
    comm_world,
    make_backend,
    rng_kind,
)
from arraynet.cli.output import CliError, console, emit_json, err
from arraynet.cli.rundirs import LATEST, RUNS, discard_if_empty, latest, new_folder, point_latest

if TYPE_CHECKING:
    from arraynet.train.recipe import Recipe

# train's options that replace one Recipe field: parameter name -> Recipe field. Their
# default is None: the recipe's (tests/test_cli_recipe_options.py holds them to Recipe).
FIELD_OPTIONS: dict[str, str] = {
    "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "schedule": "schedule",
    "optimizer": "optimizer", "aug_p": "aug_p", "monitor": "monitor",
    "label_smoothing": "label_smoothing", "ema": "ema", "warmup": "warmup",
    "swa_from": "swa_from", "distill": "distill",
}  # fmt: skip
# options that set a part of a Recipe field: early_stopping is [min_delta, patience],
# augment["elastic"] is [alpha, sigma]
PART_OPTIONS: dict[str, str] = {
    "min_delta": "early_stopping", "patience": "early_stopping", "elastic": "augment",
}  # fmt: skip
RECIPE_OPTIONS: dict[str, str] = {**FIELD_OPTIONS, **PART_OPTIONS}


TRAIN_EXAMPLES = examples(
    "arraynet train -m m9 --epochs 1 --train-limit 2000   # a quick try",
    "arraynet train -m m12 --backend auto   # seed recipe, on a GPU if any",
    "arraynet train --resume --epochs 20    # continue runs/latest to 20",
    "arraynet train -m m9 --lr 0.003 --out runs/mine --json",
)


@app.command(epilog=TRAIN_EXAMPLES)
def train(
    model: TrainModelOpt = None,
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    train_limit: TrainLimitOpt = None,
    val_split: ValSplitOpt = None,
    init: InitOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    schedule: ScheduleOpt = None,
    optimizer: OptimizerOpt = None,
    aug_p: AugPOpt = None,
    elastic: ElasticOpt = None,
    patience: PatienceOpt = None,
    min_delta: MinDeltaOpt = None,
    monitor: MonitorOpt = None,
    label_smoothing: LabelSmoothingOpt = None,
    ema: EmaOpt = None,
    warmup: WarmupOpt = None,
    swa_from: SwaFromOpt = None,
    distill: DistillOpt = None,
    teacher: TeacherOpt = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    resume: ResumeOpt = False,
    backend: BackendOpt = "numpy",
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    tf32: Tf32Opt = False,
    rng: RngOpt = None,
    comm: CommOpt = "auto",
    sync_bn: SyncBnOpt = False,
    lr_scaling: LrScalingOpt = False,
    lr_warmup_epochs: LrWarmupOpt = 5.0,
    history: HistoryOpt = None,
    logdir: LogdirOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Train a zoo model or a layout file, on MNIST or your own data.

    A zoo model trains with its seed recipe, a layout file with its own; each recipe
    option overrides one setting. Without --out the run goes into a new folder
    runs/MODEL-TIME and runs/latest names it; --resume alone continues that run.
    Under `mpiexec -n N` (or srun) it trains data-parallel on N ranks."""
    options = dict(locals())  # (first: every option as given, for the recipe)
    from arraynet.backends.devices import rank_placement
    from arraynet.jobs import train_model
    from arraynet.train.callbacks import Hooks
    from arraynet.zoo.layouts import model_and_recipe

    world = comm_world(comm)
    if resume:  # the run in --out, or the one runs/latest names
        out = out if out is not None else resume_folder()
        model, data, train_limit, val_split = resumed_run(out, model, data, train_limit, val_split)
    name, layout, base = model_and_recipe(model or DEFAULT_MODEL)
    val_split = val_split or 0
    if resume:  # a resume continues the run's own recipe (flags still override settings)
        from arraynet.train.runfolder import RunFolder

        base = RunFolder(out).saved_recipe()
    recipe = recipe_from_options(base, options)
    check_run(recipe, init, teacher, val_split, world.size)
    rng_ = rng_kind(rng)
    placement = rank_placement(backend, device, threads, world.local_rank, world.local_size)
    b = make_backend(backend, *placement, tf32=tf32)
    con = console(json_mode) if world.is_root else Console(quiet=True)
    new = out is None  # a new default folder: runs/latest names it after the first epoch
    out = new_run_folder(name, world) if new else out
    ranks = f", {world.size} ranks ({world.name})" if world.size > 1 else ""
    con.print(f"[bold]{name}[/] on {b.describe()}{ranks}, run folder {out}")
    con.print(f"recipe: {describe_recipe(recipe)}", highlight=False)
    progress = progress_bar(show=world.is_root)
    hooks = epoch_hooks(progress, con, after_first=latest_pointer(out, con) if new else None)
    extra = file_callbacks(history, logdir) if world.is_root else []  # (rank 0's files)
    callbacks = [Hooks(hooks), *extra] if world.is_root else []
    try:
        with progress:
            result = train_model(
                name, b, recipe=recipe, seed=seed, out_dir=out, resume=resume,
                data_dir=data_dir, val_split=val_split, train_limit=train_limit, init=init,
                teachers=teacher, callbacks=callbacks,
                layout=layout, data=data, rng=rng_, comm=world, sync_bn=sync_bn,
                lr_scaling=lr_scaling, lr_warmup_epochs=lr_warmup_epochs,
            )  # fmt: skip
    except BaseException:
        if new and world.is_root:
            discard_if_empty(out)
        raise
    print_result(con, result, out)
    if json_mode and world.is_root:
        emit_json({**result, "out": str(out)})


# -- the run folder ---------------------------------------------------------------------
def resume_folder() -> Path:
    """The run `--resume` without --out continues: the one runs/latest names."""
    folder = latest(RUNS)
    if folder is None:
        raise CliError(f"nothing to resume: no {RUNS / LATEST}; give the run's folder with --out")
    return folder


def latest_pointer(folder: Path, con: Console) -> Callable[[], None]:
    """What makes runs/latest name `folder` (called after its first epoch)."""

    def point() -> None:
        moved = point_latest(folder)
        if moved is not None:
            con.print(f"(the run that was in {folder.parent / LATEST} is now in {moved})")

    return point


def resumed_run(
    out: Path, model: str | None, data: str | None, train_limit: int | None, val_split: int | None
) -> tuple[str | None, str | None, int | None, int | None]:
    """--model, --data, --train-limit and --val-split for a resume: each one not given is
    the run's own (a layout file's run needs --model FILE again)."""
    from arraynet.train.runfolder import RunFolder

    saved = RunFolder(out).saved_meta()
    if model is None and "layout" in saved:
        raise CliError(f"{out} trained a layout file: give it again with --model FILE")
    return (
        model if model is not None else saved.get("model"),
        data if data is not None else saved.get("data"),
        train_limit if train_limit is not None else saved.get("train_limit"),
        val_split if val_split is not None else saved.get("val_split"),
    )


def new_run_folder(name: str, world: Any) -> Path:
    """A new folder runs/<name>-<time>, made by rank 0 and named to every rank."""
    path = str(new_folder(RUNS, name)) if world.is_root else None
    return Path(world.bcast_json(path) if world.size > 1 else path)


# -- the recipe -------------------------------------------------------------------------
def recipe_from_options(base: Recipe, options: Mapping[str, Any]) -> Recipe:
    """`base` with the settings the options give (None: the recipe's own)."""
    recipe = base.with_overrides(**{field: options[o] for o, field in FIELD_OPTIONS.items()})
    es = early_stopping(base.early_stopping, options["min_delta"], options["patience"])
    if es != base.early_stopping:
        recipe = replace(recipe, early_stopping=es)
    if options["elastic"] is not None:
        elastic = parse_elastic(options["elastic"])
        recipe = replace(recipe, augment={**recipe.augment, "elastic": elastic})
    return recipe


def early_stopping_defaults() -> tuple[float, int]:
    """(min_delta, patience): the defaults of the training loop's EarlyStopping."""
    from arraynet.train.callbacks import EarlyStopping

    params = inspect.signature(EarlyStopping).parameters
    return params["min_delta"].default, params["patience"].default


def early_stopping(base: list | None, min_delta: float | None, patience: int | None) -> list | None:
    """The recipe's [min_delta, patience] with --min-delta and --patience applied
    (--patience 0: off). A setting neither gives is the recipe's, else EarlyStopping's."""
    if min_delta is None and patience is None:
        return base
    if patience == 0:
        return None
    d_delta, d_patience = base if base else early_stopping_defaults()
    return [
        min_delta if min_delta is not None else d_delta,
        patience if patience is not None else d_patience,
    ]


def parse_elastic(text: str) -> list[float] | None:
    """'ALPHA,SIGMA' -> [alpha, sigma]; '0' -> None (off)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        vals = []
    if vals == [0.0]:
        return None
    if len(vals) != 2:  # (the values are checked with the rest of the recipe)
        raise CliError(f"--elastic wants 'ALPHA,SIGMA' (alpha >= 0, sigma > 0) or 0, not {text!r}")
    return vals


def describe_recipe(r: Recipe) -> str:
    """The recipe in one readable line: 'adam lr 0.001, batch 16, 150 epochs, cosine
    schedule, augment p=0.5 (zoom 0.9-1.1, rotation 10°, shift 0.1), ...'."""
    epochs = f"{r.epochs} epoch{'' if r.epochs == 1 else 's'}"
    parts = [
        f"{r.optimizer} lr {r.lr:g}",
        f"batch {r.batch_size}",
        epochs,
        f"{r.schedule} schedule",
    ]
    if r.warmup:
        parts.append(f"{r.warmup} warm-up epoch{'' if r.warmup == 1 else 's'}")
    if r.loss != "cross_entropy":
        parts.append(f"{r.loss} loss")
    if r.aug_p:
        a = r.augment
        how = [f"zoom {a['zoom'][0]:g}-{a['zoom'][1]:g}", f"rotation {a['rotation']:g}°",
               f"shift {a['shift']:g}"]  # fmt: skip
        if a.get("elastic"):
            how.append(f"elastic alpha {a['elastic'][0]:g} sigma {a['elastic'][1]:g}")
        parts.append(f"augment p={r.aug_p:g} ({', '.join(how)})")
    else:
        parts.append("no augmentation")
    if r.early_stopping:
        delta, patience = r.early_stopping
        parts.append(f"early stopping {patience} epochs / {100 * delta:g} %")
    optional = (("monitor", r.monitor != "train_loss", r.monitor),
                ("label smoothing", r.label_smoothing, f"{r.label_smoothing:g}"),
                ("EMA decay", r.ema, f"{r.ema:g}"), ("SWA from epoch", r.swa_from, r.swa_from),
                ("distill weight", r.distill, f"{r.distill:g}"))  # fmt: skip
    parts += [f"{what} {value}" for what, on, value in optional if on]
    return ", ".join(parts)


def check_run(
    recipe: Recipe, init: Path | None, teachers: list[Path] | None, val_split: int, ranks: int
) -> None:
    """The weights files exist, the recipe is valid (Recipe.validate) and the global batch
    shares out over the ranks; a CliError or ValueError otherwise."""
    if init is not None and not init.is_file():
        raise CliError(f"--init {init}: no such weights file")
    for t in teachers or []:
        if not t.is_file():
            raise CliError(f"--teacher {t}: no such weights file")
    recipe.validate(validation=val_split > 0)
    if recipe.batch_size % ranks:
        raise CliError(
            f"--batch-size {recipe.batch_size} (the global batch) is not divisible by the "
            f"{ranks} ranks; pick a multiple of {ranks}"
        )


# -- what the run shows -----------------------------------------------------------------
def progress_bar(show: bool) -> Progress:
    """The epoch's progress bar on a terminal's stderr (a log gets the epoch lines)."""
    return Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} img/s"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal or not show,
    )


def epoch_hooks(
    progress: Progress, con: Console, after_first: Callable[[], Any] | None = None
) -> dict[str, Callable]:
    """train_model's callbacks: move `progress` along, print each epoch's line on `con`;
    `after_first` runs once, after the first epoch (the run then has a checkpoint)."""
    from arraynet.train.callbacks import AT_CHANCE, format_row

    task: dict[str, Any] = {}

    def on_epoch_start(epoch: int, n: int) -> None:
        task["id"] = progress.add_task("train", total=n, epoch=epoch + 1, rate="-")
        task["t0"] = time.perf_counter()
        task["done"] = 0

    def on_batch(i: int, size: int) -> None:
        task["done"] += size
        dt = time.perf_counter() - task["t0"]
        rate = f"{task['done'] / dt:,.0f}" if dt > 0 else "-"
        progress.update(task["id"], advance=size, rate=rate)

    def on_epoch(row: dict) -> None:
        progress.remove_task(task["id"])
        con.print(format_row(row))
        if row.get("at_chance"):
            con.print(AT_CHANCE)
        if after_first is not None and not task.get("pointed"):
            task["pointed"] = True
            after_first()

    return {"on_batch": on_batch, "on_epoch": on_epoch, "on_epoch_start": on_epoch_start}


def file_callbacks(history: Path | None, logdir: Path | None) -> list[Any]:
    """The CSV history and TensorBoard callbacks asked for."""
    extra: list[Any] = []
    if history is not None:
        from arraynet.train.callbacks import CSVLogger

        extra.append(CSVLogger(history))
    if logdir is not None:
        from arraynet.train.callbacks import TensorBoard

        extra.append(TensorBoard(logdir))
    return extra


def print_result(con: Console, result: dict, out: Path) -> None:
    """The run's last line: test error, epochs, where the weights are."""
    con.print(
        f"test error {100 * result['error_rate']:.2f}% ({result['correct']}/{result['total']}), "
        f"{result['epochs_run']} epochs, best epoch {result['best_epoch']}, "
        f"weights {out / 'model.safetensors'}"
    )
