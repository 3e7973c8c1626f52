"""Commands about the machinery: backends, parity, bench, sweep, plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from arraynet.cli.app import app
from arraynet.cli.options import (
    BackendOpt,
    DataDirOpt,
    DataOpt,
    DeviceOpt,
    JsonOpt,
    Tf32Opt,
    ThreadsOpt,
    check_model,
    comm_world,
    make_backend,
    rng_kind,
)
from arraynet.cli.output import CliError, console, emit_json


# -- backends ---------------------------------------------------------------------------
@app.command()
def backends(json_mode: JsonOpt = False) -> None:
    """Which backends import here and which devices they see."""
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
    model: Annotated[
        str, typer.Option("--model", "-m", help="zoo entry or a layout .json file")
    ] = "m12",
    backends_: Annotated[
        str, typer.Option("--backends", help="comma-separated")
    ] = "numpy,array-api-strict",
    batch_size: Annotated[int, typer.Option()] = 8,
    seed: Annotated[int, typer.Option()] = 0,
    tol: Annotated[float, typer.Option(help="tolerance, scaled by max(1, max|ref|)")] = 1e-4,
    dtype: Annotated[str, typer.Option(help="float32 or float64")] = "float32",
    rng: Annotated[
        str, typer.Option("--rng", help="host (the same dropout masks everywhere) or device")
    ] = "host",
    data_dir: DataDirOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Forward and backward of one batch on several backends, compared with the first.
    A backend may name a device: torch@cuda:0, array-api-strict@device1."""
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


@app.command()
def bench(
    model: Annotated[
        str, typer.Option("--model", "-m", help="zoo entry or a layout .json file")
    ] = "m12",
    data: DataOpt = None,
    backend: BackendOpt = "numpy",
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    tf32: Tf32Opt = False,
    batch_size: Annotated[int, typer.Option()] = 16,
    steps: Annotated[int, typer.Option(help="timed steps (after a warm-up)")] = 100,
    eval_batch_size: Annotated[int, typer.Option()] = 500,
    no_augment: Annotated[
        bool, typer.Option("--no-augment", help="skip the augmented figure")
    ] = False,
    data_dir: DataDirOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Median training and evaluation throughput (images/s) on real batches (MNIST, or
    the --data set)."""
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
            "--model", "-m", help="zoo entries or layout files (repeat, or comma-separated)"
        ),
    ],
    seeds: Annotated[str, typer.Option(help="seeds, e.g. 0,1,2")] = "0",
    override: Annotated[
        list[str] | None,
        typer.Option(help="recipe settings 'KEY=VALUE,...' (repeat: one variant each)"),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs (default: each recipe's)")] = None,
    train_limit: Annotated[int | None, typer.Option(help="use the first N training images")] = None,
    ray: Annotated[str, typer.Option(help="'local' (start Ray here) or a cluster ADDRESS")] = (
        "local"
    ),
    num_cpus: Annotated[int, typer.Option(help="--ray local: CPUs for Ray (one a trial)")] = 2,
    max_failures: Annotated[int, typer.Option(help="retries of a failed trial")] = 2,
    out: Annotated[Path, typer.Option(help="sweep folder (trials/, results.json/.csv)")] = Path(
        "sweeps/latest"
    ),
    data_dir: DataDirOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Independent trainings (models x seeds x overrides) as Ray Tune trials; one table."""
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
    trials = plan(names, seed_list, [parse_overrides(o) for o in override or []], epochs, out)
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


# -- plot -------------------------------------------------------------------------------
@app.command()
def plot(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by `arraynet train`")],
    backend: BackendOpt = "numpy",
    data_dir: DataDirOpt = None,
) -> None:
    """PNG curves, confusion matrix, misclassified and augmented digits into RUN_DIR."""
    from arraynet.io.plots import make_plots

    for path in make_plots(run_dir, make_backend(backend), data_dir):
        Console().print(str(path))
