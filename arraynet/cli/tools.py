"""Commands about the machinery: backends, parity, bench, sweep, plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from arraynet.cli.app import app, examples
from arraynet.cli.options import (
    HARDWARE,
    MODEL_DATA,
    RECIPE,
    RUN,
    BackendOpt,
    DataDirOpt,
    DataOpt,
    DeviceOpt,
    EpochsOpt,
    JsonOpt,
    ModelOpt,
    Tf32Opt,
    ThreadsOpt,
    TrainLimitOpt,
    check_model,
    comm_world,
    make_backend,
    rng_kind,
)
from arraynet.cli.output import CliError, console, emit_json
from arraynet.cli.rundirs import SWEEPS, discard_if_empty, new_folder, point_latest


# -- backends ---------------------------------------------------------------------------
@app.command()
def backends(json_mode: JsonOpt = False) -> None:
    """Show which backends import here and which devices they see."""
    from arraynet.backends import probe
    from arraynet.parallel.comm import probe_comm

    rows = probe()
    comm = probe_comm(comm_world("auto"))
    if not comm["is_root"]:
        return
    comm.pop("is_root")
    if json_mode:
        emit_json({"backends": rows, "distributed": comm})
        return
    t = Table("backend", "available", "devices", "note")
    for r in rows:
        t.add_row(
            r["backend"],
            "yes" if r["available"] else "no",
            ", ".join(r["devices"]),
            r["error"] or "",
        )
    Console().print(t)
    Console().print(
        f"ranks {comm['ranks']}, communicator {comm['communicator']}; mpi4py "
        f"{comm['mpi4py'] or 'not installed'}, nccl {comm['nccl'] or 'not available'}"
    )


# -- parity / bench ---------------------------------------------------------------------
@app.command()
def parity(
    model: ModelOpt = "m12",
    data_dir: DataDirOpt = None,
    backends_: Annotated[
        str,
        typer.Option(
            "--backends",
            metavar="LIST",
            rich_help_panel=HARDWARE,
            help="comma-separated; the first is the reference",
        ),
    ] = "numpy,array-api-strict",
    batch_size: Annotated[
        int, typer.Option(metavar="N", rich_help_panel=RECIPE, help="batch size")
    ] = 8,
    seed: Annotated[int, typer.Option(metavar="N", rich_help_panel=RECIPE, help="random seed")] = 0,
    tol: Annotated[
        float, typer.Option(metavar="X", help="tolerance, scaled by max(1, max|ref|)")
    ] = 1e-4,
    dtype: Annotated[str, typer.Option(metavar="NAME", help="float32 or float64")] = "float32",
    rng: Annotated[
        str,
        typer.Option(
            "--rng",
            metavar="WHERE",
            rich_help_panel=HARDWARE,
            help="host (the same dropout masks everywhere) or device",
        ),
    ] = "host",
    json_mode: JsonOpt = False,
) -> None:
    """Compare one batch's forward and backward pass across backends.

    The first backend is the reference. A backend may name a device: torch@cuda:0,
    array-api-strict@device1. The exit status is 1 when a tensor differs by more than
    --tol."""
    from arraynet.parity import run_parity

    check_model(model)
    names = [n.strip() for n in backends_.split(",") if n.strip()]
    if len(names) < 2:
        raise CliError("--backends needs at least two names, e.g. numpy,array-api-strict")
    if batch_size < 1:
        raise CliError(f"--batch-size wants at least 1, not {batch_size}")
    if dtype not in ("float32", "float64"):
        raise CliError(f"--dtype wants float32 or float64, not {dtype!r}")
    rng_kind(rng)
    res = run_parity(model, names, batch_size=batch_size, seed=seed, tol=tol, dtype=dtype,
                     data_dir=data_dir, rng=rng)  # fmt: skip
    con = console(json_mode)
    t = Table(
        "backend", "tensor", "max |diff|", "ok", title=f"parity {model} vs {res['backends'][0]}"
    )
    for r in res["rows"]:
        t.add_row(
            r["backend"], r["tensor"], f"{r['max_abs_diff']:.3e}", "ok" if r["ok"] else "FAIL"
        )
    con.print(t)
    verdict = "OK" if res["ok"] else "FAILED"
    con.print(f"{verdict}: max |diff| {res['max_abs_diff']:.3e} ({res['data']} batch)")
    if json_mode:
        res_out = {k: v for k, v in res.items() if k != "rows"}
        res_out["failed"] = [r for r in res["rows"] if not r["ok"]]
        emit_json(res_out)
    if not res["ok"]:
        raise typer.Exit(1)


@app.command(
    epilog=examples(
        "arraynet bench -m m12 --steps 20",
        "arraynet bench -m m9 --batch-size 64 --no-augment --json",
        "arraynet bench -m m14 --backend auto",
    )
)
def bench(
    model: ModelOpt = "m12",
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    batch_size: Annotated[
        int, typer.Option(metavar="N", rich_help_panel=RECIPE, help="training batch size")
    ] = 16,
    steps: Annotated[int, typer.Option(metavar="N", help="timed steps (after a warm-up)")] = 100,
    eval_batch_size: Annotated[int, typer.Option(metavar="N", help="evaluation batch size")] = 500,
    no_augment: Annotated[
        bool, typer.Option("--no-augment", help="skip the augmented figure")
    ] = False,
    backend: BackendOpt = "numpy",
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    tf32: Tf32Opt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Measure training and evaluation throughput in images per second.

    The median over timed steps on real batches (MNIST, or the --data set), with and
    without augmentation."""
    from arraynet.bench import run_bench

    check_model(model)
    for flag, value in (("--batch-size", batch_size), ("--steps", steps),
                        ("--eval-batch-size", eval_batch_size)):  # fmt: skip
        if value < 1:
            raise CliError(f"{flag} wants at least 1, not {value}")
    b = make_backend(backend, device, threads, tf32)
    res = run_bench(model, b, batch_size=batch_size, steps=steps, eval_batch_size=eval_batch_size,
                    data_dir=data_dir, augment=not no_augment, data=data)  # fmt: skip
    con = console(json_mode)
    line = f"{res['model']} {b.describe()} batch {batch_size}: "
    line += f"train {res['train_img_per_s']:,.0f} img/s"
    if "train_aug_img_per_s" in res:
        line += f", train+aug {res['train_aug_img_per_s']:,.0f} img/s"
    con.print(line + f", eval {res['eval_img_per_s']:,.0f} img/s (batch {res['eval_batch_size']})")
    if json_mode:
        emit_json(res)


# -- sweep ------------------------------------------------------------------------------
@app.command()
def sweep(
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            rich_help_panel=MODEL_DATA,
            help="zoo entries or layout files (repeat, or comma-separated)",
        ),
    ],
    data_dir: DataDirOpt = None,
    train_limit: TrainLimitOpt = None,
    seeds: Annotated[
        str, typer.Option(metavar="LIST", rich_help_panel=RECIPE, help="seeds, e.g. 0,1,2")
    ] = "0",
    override: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE,...",
            rich_help_panel=RECIPE,
            help="recipe settings (repeat: one variant each)",
        ),
    ] = None,
    epochs: EpochsOpt = None,
    ray: Annotated[
        str,
        typer.Option(
            metavar="ADDRESS",
            rich_help_panel=HARDWARE,
            help="'local' (start Ray here) or a cluster's address",
        ),
    ] = "local",
    num_cpus: Annotated[
        int,
        typer.Option(
            metavar="N", rich_help_panel=HARDWARE, help="--ray local: CPUs for Ray (one a trial)"
        ),
    ] = 2,
    max_failures: Annotated[
        int, typer.Option(metavar="N", rich_help_panel=HARDWARE, help="retries of a failed trial")
    ] = 2,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            rich_help_panel=RUN,
            help="sweep folder (default: a new sweeps/NAME-TIME, which sweeps/latest "
            "then names; give an old one to finish its trials)",
        ),
    ] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Run many trainings as Ray Tune trials, and compare them.

    The trials are models x seeds x overrides, each an independent `arraynet train` run;
    at the end one table compares them (results.json and results.csv in the sweep
    folder). Needs the sweep extra."""
    from arraynet.sweep import parse_overrides, plan, run_sweep

    names = [m.strip() for text in model for m in text.split(",") if m.strip()]
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise CliError(f"--seeds wants whole numbers like 0,1,2, not {seeds!r}") from None
    if num_cpus < 1 or max_failures < 0:
        raise CliError("--num-cpus wants at least 1 and --max-failures at least 0")
    if epochs is not None and epochs < 1:
        raise CliError(f"--epochs wants at least 1, not {epochs}")
    overrides = [parse_overrides(o) for o in override or []]
    stem = Path(names[0]).stem if len(names) == 1 else "sweep"
    # (the trials get absolute folders: Ray runs each in a working folder of its own)
    trials, out = planned_sweep(
        lambda to: plan(names, seed_list, overrides, epochs, to.resolve()), out, stem
    )
    con = console(json_mode)
    con.print(f"sweep of {len(trials)} trials on Ray ({ray}) into {out}")
    rows = run_sweep(trials, out, ray=ray, num_cpus=num_cpus, max_failures=max_failures,
                     data_dir=data_dir, train_limit=train_limit)  # fmt: skip
    t = Table("trial", "status", "test error", "epochs", "seconds")
    for r in rows:
        e = "-" if r["error_rate"] is None else f"{100 * r['error_rate']:.2f}%"
        t.add_row(r["trial"], r["status"], e, str(r["epochs_run"] or "-"),
                  str(r["train_seconds"] or "-"))  # fmt: skip
    con.print(t)
    con.print(f"table: {out / 'results.json'}, {out / 'results.csv'}")
    if json_mode:
        emit_json({"trials": rows, "out": str(out)})
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        raise CliError(f"{len(failed)} of {len(rows)} trials failed; first: {failed[0]['error']}")


def planned_sweep(
    plan: Callable[[Path], list[dict]], out: Path | None, stem: str
) -> tuple[list[dict], Path]:
    """The trials `plan` makes for the sweep folder, and that folder: --out, or a new
    sweeps/<stem>-<time>, which sweeps/latest names once the plan stands."""
    if out is not None:
        return plan(out), out
    out = new_folder(SWEEPS, stem)
    try:
        trials = plan(out)
    except BaseException:
        discard_if_empty(out)
        raise
    point_latest(out)
    return trials, out


# -- plot -------------------------------------------------------------------------------
@app.command()
def plot(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="a run folder written by `arraynet train`")
    ],
    backend: BackendOpt = "numpy",
    data_dir: DataDirOpt = None,
) -> None:
    """Draw a run's curves, confusion matrix and digits as PNG files.

    Writes curves.png, confusion.png, misclassified.png and augmented.png into RUN_DIR
    (needs the plot extra)."""
    from arraynet.io.plots import make_plots

    for path in make_plots(run_dir, make_backend(backend), data_dir):
        Console().print(str(path))
