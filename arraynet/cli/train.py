"""`arraynet train`: the options, the recipe they make, the progress shown and the result."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from arraynet.cli.app import app
from arraynet.cli.options import (
    BackendOpt,
    CommOpt,
    DataDirOpt,
    DataOpt,
    DeviceOpt,
    JsonOpt,
    RngOpt,
    Tf32Opt,
    ThreadsOpt,
    comm_world,
    make_backend,
    rng_kind,
)
from arraynet.cli.output import CliError, console, emit_json, err

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


@app.command()
def train(
    model: Annotated[
        str, typer.Option("--model", "-m", help="zoo entry (e.g. m4, m12) or a layout .json file")
    ] = "m4",
    data: DataOpt = None,
    backend: BackendOpt = "numpy",
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    tf32: Tf32Opt = False,
    epochs: Annotated[int | None, typer.Option(help="epochs (default: the recipe's)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="mini-batch size")] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="const, tunable, tunable5, keras, cosine")
    ] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="sgd, adam, adam-seed or adam-seed-const")
    ] = None,
    aug_p: Annotated[float | None, typer.Option(help="augmentation probability per batch")] = None,
    elastic: Annotated[
        str | None, typer.Option(help="elastic distortion 'ALPHA,SIGMA' in pixels (0: off)")
    ] = None,
    patience: Annotated[int | None, typer.Option(help="early-stopping patience (0: off)")] = None,
    min_delta: Annotated[float | None, typer.Option(help="early-stopping relative delta")] = None,
    monitor: Annotated[str | None, typer.Option(help="train_loss or val_loss")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="label smoothing")] = None,
    ema: Annotated[float | None, typer.Option(help="weight-averaging decay (0: off)")] = None,
    warmup: Annotated[int | None, typer.Option(help="warm-up epochs (cosine)")] = None,
    swa_from: Annotated[
        int | None, typer.Option(help="average the weights of each epoch's end from this one on")
    ] = None,
    init: Annotated[
        Path | None, typer.Option(help="start from these weights instead of a fresh init")
    ] = None,
    distill: Annotated[
        float | None, typer.Option(help="weight of the teachers' probabilities in the targets")
    ] = None,
    teacher: Annotated[
        list[Path] | None, typer.Option(help="a teacher's weights (repeat for several)")
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    rng: RngOpt = None,
    train_limit: Annotated[int | None, typer.Option(help="use the first N training images")] = None,
    val_split: Annotated[int, typer.Option(help="hold out the last N training images")] = 0,
    out: Annotated[Path, typer.Option(help="run folder (checkpoints, model.safetensors)")] = Path(
        "runs/latest"
    ),
    resume: Annotated[bool, typer.Option(help="continue the run in --out")] = False,
    history: Annotated[
        Path | None, typer.Option(help="write the history (one row per epoch) to this CSV")
    ] = None,
    logdir: Annotated[
        Path | None, typer.Option(help="write TensorBoard scalars here (needs tensorboardX)")
    ] = None,
    data_dir: DataDirOpt = None,
    comm: CommOpt = "auto",
    sync_bn: Annotated[
        bool, typer.Option("--sync-bn", help="data-parallel: batch norm over the global batch")
    ] = False,
    lr_scaling: Annotated[
        bool, typer.Option("--lr-scaling", help="scale the rate by batch / the recipe's batch")
    ] = False,
    lr_warmup_epochs: Annotated[
        float, typer.Option(help="--lr-scaling: epochs of linear warm-up to the scaled rate")
    ] = 5.0,
    json_mode: JsonOpt = False,
) -> None:
    """Train a zoo model with its seed recipe, or a layout file with its own recipe, on
    MNIST or any dataset (any flag overrides one setting). Under `mpiexec -n N` (or srun)
    it trains data-parallel on N ranks."""
    options = dict(locals())  # (first: every option as given, for the recipe)
    from arraynet.backends.devices import rank_placement
    from arraynet.jobs import train_model
    from arraynet.train.callbacks import Hooks
    from arraynet.zoo.layouts import model_and_recipe

    world = comm_world(comm)
    name, layout, base = model_and_recipe(model)
    if resume:  # a resume continues the run's own recipe (flags still override settings)
        from arraynet.train.runfolder import RunFolder

        base = RunFolder(out).saved_recipe()
    recipe = recipe_from_options(base, options)
    check_run(recipe, init, teacher, val_split, world.size)
    rng_ = rng_kind(rng)
    placement = rank_placement(backend, device, threads, world.local_rank, world.local_size)
    b = make_backend(backend, *placement, tf32=tf32)
    con = console(json_mode) if world.is_root else Console(quiet=True)
    extra = file_callbacks(history, logdir) if world.is_root else []  # (rank 0's files)
    ranks = f", {world.size} ranks ({world.name})" if world.size > 1 else ""
    con.print(f"[bold]{name}[/] on {b.describe()}{ranks}, recipe: {recipe.to_dict()}")
    progress = progress_bar(show=world.is_root)
    callbacks = [Hooks(epoch_hooks(progress, con)), *extra] if world.is_root else []
    with progress:
        result = train_model(
            name, b, recipe=recipe, seed=seed, out_dir=out, resume=resume, data_dir=data_dir,
            val_split=val_split, train_limit=train_limit, init=init,
            teachers=teacher, callbacks=callbacks,
            layout=layout, data=data, rng=rng_, comm=world, sync_bn=sync_bn,
            lr_scaling=lr_scaling, lr_warmup_epochs=lr_warmup_epochs,
        )  # fmt: skip
    print_result(con, result, out)
    if json_mode and world.is_root:
        emit_json(result)


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


def epoch_hooks(progress: Progress, con: Console) -> dict[str, Callable]:
    """train_model's callbacks: move `progress` along, print each epoch's line on `con`."""
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
