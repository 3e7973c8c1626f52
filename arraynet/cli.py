"""The `arraynet` command line (typer + rich)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(
    help="arraynet: a small, fast, GPU-optional deep-learning framework on the Array API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="MNIST files: fetch, verify, path.", no_args_is_help=True)
app.add_typer(data_app, name="data")

err = Console(stderr=True)


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def _out(json_mode: bool) -> Console:
    """Human output goes to stdout, or to stderr when stdout carries JSON."""
    return err if json_mode else Console()


def _finite(obj: Any) -> Any:
    """obj with NaN and infinities as null (strict JSON has no such numbers)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _emit_json(obj: Any) -> None:
    """One JSON line on stdout; a result object also names the ranks and communicator of
    the job that computed it (1 and 'single' unless the command trained data-parallel)."""
    from arraynet.parallel.comm import active_world

    w = active_world()
    if isinstance(obj, dict) and "ranks" not in obj:
        obj = {**obj, "ranks": w.size if w else 1, "communicator": w.name if w else "single"}
    sys.stdout.write(json.dumps(_finite(obj), allow_nan=False) + "\n")
    sys.stdout.flush()


def _backend(
    name: str, device: str | None = None, threads: int | None = None, tf32: bool = False
) -> Any:
    from arraynet.backends import get_backend

    if threads is not None and threads < 1:
        raise CliError(f"--threads wants at least 1, not {threads}")
    return get_backend(name, device, threads=threads, tf32=tf32)


BackendOpt = Annotated[
    str, typer.Option("--backend", "-b", help="numpy, cupy, torch, array-api-strict or auto")
]
DeviceOpt = Annotated[str | None, typer.Option(help="device, e.g. cpu, cuda:0")]
RngOpt = Annotated[
    str | None,
    typer.Option("--rng", help="host or device: where dropout masks and augmentation are drawn "
                 "(default: device on cupy and torch on CUDA, else host)"),
]  # fmt: skip


def _rng_kind(rng: str | None) -> str | None:
    if rng is not None and rng not in ("host", "device"):
        raise CliError(f"--rng wants host or device, not {rng!r}")
    return rng


ThreadsOpt = Annotated[
    int | None,
    typer.Option(help="CPU threads of the numpy backend (default: ARRAYNET_THREADS, "
                 "OPENBLAS_NUM_THREADS or all usable CPUs)"),
]  # fmt: skip
Tf32Opt = Annotated[
    bool,
    typer.Option("--tf32", help="NVIDIA GPUs: float32 products and convolutions in TF32 "
                 "(faster, 10-bit mantissa inputs); off: plain float32"),
]  # fmt: skip
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="folder with the MNIST files")]
ShaOpt = Annotated[
    str | None,
    typer.Option("--sha256", help="the weights file's expected SHA-256 (from its publisher)"),
]
UncheckedOpt = Annotated[
    bool,
    typer.Option("--allow-unchecked", help="load a weights file that carries no checksum"),
]
NonfiniteOpt = Annotated[
    bool, typer.Option("--allow-nonfinite", help="load weights holding NaN or infinities")
]
DataOpt = Annotated[
    str | None,
    typer.Option(help="dataset: mnist (default), an IDX folder, an .npz or an image folder"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="last line of stdout is one JSON object")]


# -- train ------------------------------------------------------------------------------
def _elastic(text: str) -> list[float] | None:
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
    from arraynet.jobs import train_model
    from arraynet.train.callbacks import AT_CHANCE, Hooks, format_row
    from arraynet.train.runfolder import RunFolder
    from arraynet.zoo.layouts import model_and_recipe

    world = _world(comm)
    name, layout, base = model_and_recipe(model)
    # a resume continues the run's own recipe (flags still override single settings)
    if resume:
        base = RunFolder(out).saved_recipe()
    es = base.early_stopping
    if patience is not None or min_delta is not None:
        es = None if patience == 0 else [
            min_delta if min_delta is not None else (es[0] if es else 0.005),
            patience if patience is not None else (es[1] if es else 15),
        ]  # fmt: skip
    recipe = base.with_overrides(
        epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule, optimizer=optimizer,
        aug_p=aug_p, monitor=monitor, label_smoothing=label_smoothing, ema=ema, warmup=warmup,
        swa_from=swa_from, distill=distill,
    )  # fmt: skip
    if es != base.early_stopping:
        from dataclasses import replace

        recipe = replace(recipe, early_stopping=es)
    if elastic is not None:
        from dataclasses import replace

        recipe = replace(recipe, augment={**recipe.augment, "elastic": _elastic(elastic)})
    if init is not None and not init.is_file():
        raise CliError(f"--init {init}: no such weights file")
    for t in teacher or []:
        if not t.is_file():
            raise CliError(f"--teacher {t}: no such weights file")
    recipe.validate(validation=val_split > 0)
    if recipe.batch_size % world.size:
        raise CliError(
            f"--batch-size {recipe.batch_size} (the global batch) is not divisible by the "
            f"{world.size} ranks; pick a multiple of {world.size}"
        )
    rng_kind = _rng_kind(rng)
    b = _backend(backend, *_rank_device(backend, device, threads, world), tf32=tf32)
    con = _out(json_mode) if world.is_root else Console(quiet=True)
    extra: list[Any] = []  # (files rank 0 alone writes)
    if history is not None and world.is_root:
        from arraynet.train.callbacks import CSVLogger

        extra.append(CSVLogger(history))
    if logdir is not None and world.is_root:
        from arraynet.train.callbacks import TensorBoard

        extra.append(TensorBoard(logdir))
    ranks = f", {world.size} ranks ({world.name})" if world.size > 1 else ""
    con.print(f"[bold]{name}[/] on {b.describe()}{ranks}, recipe: {recipe.to_dict()}")
    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} img/s"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal or not world.is_root,  # (a log gets the epoch lines)
    )
    task: dict[str, Any] = {}

    def on_epoch_start(epoch: int, n: int) -> None:
        task["id"] = progress.add_task("train", total=n, epoch=epoch + 1, rate="-")
        task["t0"] = _now()
        task["done"] = 0

    def on_batch(i: int, size: int) -> None:
        task["done"] += size
        dt = _now() - task["t0"]
        rate = f"{task['done'] / dt:,.0f}" if dt > 0 else "-"
        progress.update(task["id"], advance=size, rate=rate)

    def on_epoch(row: dict) -> None:
        progress.remove_task(task["id"])
        con.print(format_row(row))
        if row.get("at_chance"):
            con.print(AT_CHANCE)

    with progress:
        fns = {"on_batch": on_batch, "on_epoch": on_epoch, "on_epoch_start": on_epoch_start}
        hooks = Hooks(fns)
        result = train_model(
            name, b, recipe=recipe, seed=seed, out_dir=out, resume=resume, data_dir=data_dir,
            val_split=val_split, train_limit=train_limit, init=init,
            teachers=teacher, callbacks=[hooks, *extra] if world.is_root else [],
            layout=layout, data=data, rng=rng_kind, comm=world, sync_bn=sync_bn,
            lr_scaling=lr_scaling, lr_warmup_epochs=lr_warmup_epochs,
        )  # fmt: skip
    con.print(
        f"test error {100 * result['error_rate']:.2f}% ({result['correct']}/{result['total']}), "
        f"{result['epochs_run']} epochs, best epoch {result['best_epoch']}, "
        f"weights {out / 'model.safetensors'}"
    )
    if json_mode and world.is_root:
        _emit_json(result)


CommOpt = Annotated[
    str, typer.Option("--comm", help="auto (MPI under mpiexec/srun), single, mpi or nccl")
]


def _world(kind: str) -> Any:
    """The job's communicator; a bad choice is a CliError."""
    from arraynet.parallel.comm import CommError, world

    try:
        return world(kind)
    except CommError as e:
        raise CliError(str(e)) from None


def _rank_device(
    backend: str, device: str | None, threads: int | None, world: Any
) -> tuple[str | None, int | None]:
    """A rank's device and threads: one GPU per local rank, the CPUs shared out."""
    from arraynet.backends.numpy_backend import THREAD_VARS, usable_cpus

    if world.local_size > 1:
        if device is None and backend in ("cupy", "cp", "torch", "pytorch"):
            device = f"cuda:{world.local_rank}"
        if threads is None and not any(os.environ.get(v, "").strip() for v in THREAD_VARS):
            threads = max(1, usable_cpus() // world.local_size)
    return device, threads


def _now() -> float:
    import time

    return time.perf_counter()


# -- evaluate / predict -----------------------------------------------------------------
@app.command()
def evaluate(
    weights: Annotated[list[Path], typer.Argument(help="weights file(s); several are averaged")],
    backend: BackendOpt = "numpy",
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    tf32: Tf32Opt = False,
    data: Annotated[
        str | None, typer.Option(help="dataset whose test set to score (default: mnist)")
    ] = None,
    data_dir: DataDirOpt = None,
    tta: Annotated[bool, typer.Option(help="average over 1-pixel shifts of each image")] = False,
    sha256: Annotated[
        list[str] | None,
        typer.Option("--sha256", help="expected SHA-256 of each weights file, in order"),
    ] = None,
    allow_unchecked: UncheckedOpt = False,
    allow_nonfinite: NonfiniteOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Test error of trained weights on a test set (the 10,000 MNIST images by default)."""
    from arraynet.jobs import evaluate_weights

    if sha256 and len(sha256) != len(weights):
        raise CliError(f"--sha256 given {len(sha256)} times for {len(weights)} weights files")
    b = _backend(backend, device, threads, tf32)
    checks = {"sha256": sha256, "allow_unchecked": allow_unchecked,
              "allow_nonfinite": allow_nonfinite}  # fmt: skip
    res = evaluate_weights([str(w) for w in weights], b, data_dir, tta=tta, data=data, **checks)
    res = {**res, "weights": [str(w) for w in weights], "backend": b.name, "tta": tta}
    if data is not None:
        res["data"] = data
    _out(json_mode).print(
        f"test error {100 * res['error_rate']:.2f}% ({res['correct']}/{res['total']}) on {b.name}"
    )
    if json_mode:
        _emit_json(res)


@app.command()
def predict(
    weights: Annotated[Path, typer.Argument(help="weights file")],
    images: Annotated[list[Path], typer.Argument(help="PNG or JPEG digits")],
    backend: BackendOpt = "numpy",
    sha256: ShaOpt = None,
    allow_unchecked: UncheckedOpt = False,
    allow_nonfinite: NonfiniteOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Classify digit images (greyscale, inverted when dark-on-light, fitted to 28x28)."""
    from arraynet.io import load_model
    from arraynet.io.images import FORMATS, load_digit

    b = _backend(backend)
    model, _ = load_model(weights, b, sha256=sha256, allow_unchecked=allow_unchecked,
                          allow_nonfinite=allow_nonfinite)  # fmt: skip
    rows = []
    for path in images:
        x = b.from_host(load_digit(path, FORMATS), dtype=b.dtype("float32"))
        probs = b.to_host(model.forward(x, False))[0]
        digit = int(probs.argmax())
        rows.append({"image": str(path), "digit": digit, "probability": float(probs[digit])})
        _out(json_mode).print(f"{path}: {digit} ({100 * float(probs[digit]):.1f}%)")
    if json_mode:
        _emit_json({"predictions": rows})


# -- export / serve ---------------------------------------------------------------------
CHECK_TOL = 1e-5


@app.command()
def export(
    weights: Annotated[Path, typer.Argument(help="weights file")],
    out: Annotated[Path, typer.Argument(help="ONNX file to write, e.g. model.onnx")],
    check: Annotated[
        bool,
        typer.Option(
            help="score the 10,000 test images with onnxruntime and arraynet first; "
            "write only when every class agrees and outputs are within 1e-5"
        ),
    ] = False,
    threads: ThreadsOpt = None,
    data_dir: DataDirOpt = None,
    sha256: ShaOpt = None,
    allow_unchecked: UncheckedOpt = False,
    allow_nonfinite: NonfiniteOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Write trained weights as an ONNX graph (opset 17, float32 NHWC input, batch axis N)."""
    from arraynet.io import load_model
    from arraynet.io.onnx_export import OPSET, compare, export_bytes, onnx_session

    if out.is_dir():
        raise CliError(f"{out}: is a folder; give the ONNX file to write")
    if weights.exists() and out.exists() and out.resolve() == weights.resolve():
        raise CliError(f"{out}: would overwrite the weights file")
    b = _backend("numpy", None, threads)
    model, _ = load_model(weights, b, sha256=sha256, allow_unchecked=allow_unchecked,
                          allow_nonfinite=allow_nonfinite)  # fmt: skip
    data = export_bytes(model, doc=f"arraynet export of {weights.name}")
    con = _out(json_mode)
    res: dict[str, Any] = {"weights": str(weights), "onnx": str(out), "opset": OPSET}
    if check:
        from arraynet.data import load_mnist

        mnist = load_mnist(data_dir, quiet=True)
        x = mnist.test_images[..., None].astype("float32") / 255.0
        cmp = compare(model, onnx_session(data, b.threads or 1), x, mnist.test_labels)
        res["check"] = cmp
        n = cmp["images"]
        con.print(
            f"arraynet test error {100 * cmp['arraynet_error_rate']:.2f}% "
            f"({cmp['arraynet_errors']}/{n}), onnxruntime test error "
            f"{100 * cmp['onnx_error_rate']:.2f}% ({cmp['onnx_errors']}/{n}); predicted classes "
            f"differ on {cmp['class_mismatches']} images, max |diff| {cmp['max_abs_diff']:.2e}"
        )
        if cmp["class_mismatches"] or not cmp["max_abs_diff"] <= CHECK_TOL:
            raise CliError(f"export check failed (tolerance {CHECK_TOL:g}); {out} not written")
    from arraynet.io import atomic_write_bytes

    atomic_write_bytes(out, data)
    con.print(f"wrote {out} ({len(data):,} bytes, ONNX opset {OPSET})")
    if json_mode:
        _emit_json(res)


@app.command()
def serve(
    weights: Annotated[Path, typer.Argument(help="weights file (a model ending in softmax)")],
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="a Host name clients use, besides 127.0.0.1, localhost and [::1] "
            "(repeat; '*': any)"
        ),
    ] = None,
    threads: ThreadsOpt = None,
    sha256: ShaOpt = None,
    allow_unchecked: UncheckedOpt = False,
    allow_nonfinite: NonfiniteOpt = False,
) -> None:
    """A web page to draw a digit on and see the model's top three classes; POST /predict
    takes a PNG or JPEG and answers JSON."""
    from arraynet.io import file_sha256, load_model
    from arraynet.serve import run_server
    from arraynet.serve.app import allowed_host_names

    if not 0 <= port <= 65535:
        raise CliError(f"--port wants 0-65535, not {port}")
    try:
        allowed_host_names(allowed_host)
    except ValueError as e:
        raise CliError(f"--allowed-host: {e}") from None
    checks = {"sha256": sha256, "allow_unchecked": allow_unchecked,
              "allow_nonfinite": allow_nonfinite}  # fmt: skip
    model, _ = load_model(weights, _backend("numpy", None, threads), **checks)
    run_server(model, host=host, port=port, name=weights.name, sha256=file_sha256(weights),
               allowed_hosts=allowed_host)  # fmt: skip


# -- zoo / backends ---------------------------------------------------------------------
@app.command()
def zoo(
    export: Annotated[
        str | None,
        typer.Option(help="print this entry as a layout file (layers and recipe) instead"),
    ] = None,
    json_mode: JsonOpt = False,
) -> None:
    """The zoo: layouts, parameter counts, the seed's error (for arraynet's own entries the
    target) and the shipped weights' error."""
    from arraynet.backends import get_backend
    from arraynet.zoo import ZOO

    if export is not None:
        from arraynet.zoo.layouts import zoo_layout

        sys.stdout.write(json.dumps(zoo_layout(export), indent=2) + "\n")
        return

    b = get_backend("numpy")
    models_dir = Path(
        os.environ.get("ARRAYNET_MODELS", Path(__file__).resolve().parents[1] / "models")
    )
    rows = []
    for name, entry in ZOO.items():
        m = entry.layout().build(b, seed=0)
        shipped = models_dir / f"{name}.json"
        err_shipped = opt_shipped = None
        if shipped.is_file():
            try:  # an unreadable record shows as '-' rather than stopping the table
                record = json.loads(shipped.read_text(encoding="utf-8"))
                err_shipped = record.get("error_rate")
                recipe = record.get("recipe")
                opt_shipped = recipe.get("optimizer") if isinstance(recipe, dict) else None
            except (OSError, ValueError, AttributeError):
                err_shipped = opt_shipped = None
            if not isinstance(err_shipped, int | float) or isinstance(err_shipped, bool):
                err_shipped = None
            if not isinstance(opt_shipped, str):
                opt_shipped = None
        r = entry.recipe
        rows.append({
            "model": name,
            "parameters": m.num_parameters(),
            "layers": " ".join(_short(layer) for layer in m.layers),
            "recipe": f"{r.optimizer} {r.lr:g} {r.schedule} bs{r.batch_size} aug{r.aug_p:g}",
            "seed_error": entry.seed_error,
            "shipped_error": err_shipped,
            "shipped_optimizer": opt_shipped,  # what trained the shipped weights
        })  # fmt: skip
    if json_mode:
        _emit_json({"models": rows})
        return
    t = Table("model", "params", "layout", "recipe", "seed (target)", "shipped err (optimizer)")
    for r in rows:
        se = "-" if r["shipped_error"] is None else f"{100 * r['shipped_error']:.2f}%"
        se += f" ({r['shipped_optimizer']})" if r["shipped_optimizer"] else ""
        t.add_row(r["model"], f"{r['parameters']:,}", r["layers"], r["recipe"],
                  f"{100 * r['seed_error']:.2f}%", se)  # fmt: skip
    Console().print(t)


def _short(layer: Any) -> str:
    c = layer.config()
    k = c["type"]
    return {
        "dense": f"FC{c.get('units')}",
        "conv2d": f"C{c.get('filters')}",
        "maxpool2d": "P",
        "dropout": "D",
        "flatten": "F",
        "batchnorm": "BN",
        "activation": c.get("fn", ""),
    }.get(k, k)


@app.command()
def backends(json_mode: JsonOpt = False) -> None:
    """Which backends import here and which devices they see."""
    from arraynet.backends import probe
    from arraynet.parallel.comm import probe_comm

    rows = probe()
    comm = probe_comm(_world("auto"))
    if not comm["is_root"]:
        return
    comm.pop("is_root")
    if json_mode:
        _emit_json({"backends": rows, "distributed": comm})
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
def _check_model(model: str) -> None:
    """A --model value must be a zoo entry or a layout file (one line otherwise)."""
    from arraynet.zoo import LAYOUTS
    from arraynet.zoo.layouts import is_layout_file

    if model not in LAYOUTS and not is_layout_file(model):
        raise CliError(
            f"unknown model {model!r}; choose from {', '.join(LAYOUTS)}, or give a layout .json"
        )


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

    _check_model(model)
    names = [n.strip() for n in backends_.split(",") if n.strip()]
    if len(names) < 2:
        raise CliError("--backends needs at least two names, e.g. numpy,array-api-strict")
    if batch_size < 1:
        raise CliError(f"--batch-size wants at least 1, not {batch_size}")
    if dtype not in ("float32", "float64"):
        raise CliError(f"--dtype wants float32 or float64, not {dtype!r}")
    _rng_kind(rng)
    res = run_parity(model, names, batch_size=batch_size, seed=seed, tol=tol, dtype=dtype,
                     data_dir=data_dir, rng=rng)  # fmt: skip
    con = _out(json_mode)
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
        _emit_json(res_out)
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

    _check_model(model)
    for flag, value in (("--batch-size", batch_size), ("--steps", steps),
                        ("--eval-batch-size", eval_batch_size)):  # fmt: skip
        if value < 1:
            raise CliError(f"{flag} wants at least 1, not {value}")
    b = _backend(backend, device, threads, tf32)
    res = run_bench(model, b, batch_size=batch_size, steps=steps, eval_batch_size=eval_batch_size,
                    data_dir=data_dir, augment=not no_augment, data=data)  # fmt: skip
    con = _out(json_mode)
    line = f"{res['model']} {b.describe()} batch {batch_size}: "
    line += f"train {res['train_img_per_s']:,.0f} img/s"
    if "train_aug_img_per_s" in res:
        line += f", train+aug {res['train_aug_img_per_s']:,.0f} img/s"
    con.print(line + f", eval {res['eval_img_per_s']:,.0f} img/s (batch {res['eval_batch_size']})")
    if json_mode:
        _emit_json(res)


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
    con = _out(json_mode)
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
        _emit_json({"trials": rows, "out": str(out)})
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

    for path in make_plots(run_dir, _backend(backend), data_dir):
        Console().print(str(path))


# -- data -------------------------------------------------------------------------------
@data_app.command("fetch")
def data_fetch(data_dir: DataDirOpt = None) -> None:
    """Make sure the four MNIST files are present and verified (download what is missing)."""
    from arraynet.data import fetch

    Console().print(str(fetch(data_dir)))


@data_app.command("verify")
def data_verify(data_dir: DataDirOpt = None, json_mode: JsonOpt = False) -> None:
    """Check the SHA-256 and IDX header of each file."""
    from arraynet.data import verify

    rows = verify(data_dir)
    bad = [r for r in rows if not r["ok"]]
    if json_mode:
        _emit_json({"ok": not bad, "files": rows})
    else:
        for r in rows:
            Console().print(
                f"{'ok  ' if r['ok'] else 'BAD '} {r['path']}"
                + (f"  {r['error']}" if r["error"] else "")
            )
    if bad:
        raise CliError(f"{Path(bad[0]['path']).name}: {bad[0]['error']}")


@data_app.command("path")
def data_path(data_dir: DataDirOpt = None) -> None:
    """The folder the MNIST files are read from (or will be downloaded to)."""
    from arraynet.data import resolve_data_dir

    Console().print(str(resolve_data_dir(data_dir)))


# -- entry point ------------------------------------------------------------------------
def main() -> None:
    """Run the CLI; known errors become one line on stderr and exit status 1."""
    from arraynet.backends import BackendUnavailable
    from arraynet.data import DataError
    from arraynet.io import WeightsError
    from arraynet.train.loop import EpochSavedError

    # A diverging run is reported in one line (TrainingDiverged); NumPy's own warnings
    # about the overflows on the way would only bury it.
    warnings.filterwarnings("ignore", category=RuntimeWarning, message=_NUMPY_FP_WARNINGS)
    try:
        app()
    except (
        CliError,
        BackendUnavailable,
        DataError,
        WeightsError,
        ValueError,
        FileNotFoundError,
        EpochSavedError,
    ) as e:
        _fail(e)
    except OSError as e:  # a full disk, a folder that cannot be written: name the file
        _fail(e if e.filename is None else CliError(f"{e.filename}: {e.strerror or e}"))
    except KeyboardInterrupt:
        err.print("interrupted")
        _abort_others(130)
        sys.exit(130)
    except SystemExit as e:  # typer turns Ctrl-C inside a command into exit status 130
        if e.code == 130:
            err.print("interrupted")
        raise
    except Exception as e:
        if os.environ.get("ARRAYNET_DEBUG"):
            raise  # (under MPI, the uncaught-exception hook ends the other ranks)
        _fail(e, prefix=f"{type(e).__name__}: ")


_NUMPY_FP_WARNINGS = (
    r"(overflow|invalid value|divide by zero|underflow) encountered"  # numpy's floating-point
)


def _abort_others(code: int) -> None:
    """In a job of several ranks, end them all (the others would wait for this one)."""
    from arraynet.parallel.comm import active_world

    w = active_world()
    if w is not None and w.size > 1:
        w.abort(code)


@contextlib.contextmanager
def script_errors(prog: str) -> Iterator[None]:
    """For the scripts: a known kind of error (bad input, a missing or corrupt file, a
    backend that is not there) becomes one line on stderr and exit status 1."""
    from arraynet.backends import BackendUnavailable
    from arraynet.data import DataError
    from arraynet.io import WeightsError

    try:
        yield
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        sys.exit(130)
    except KeyError as e:
        _fail(e, prefix="missing entry ", prog=prog)
    except (BackendUnavailable, DataError, WeightsError, ValueError, OSError) as e:
        _fail(e, prog=prog)


def _fail(e: BaseException, prefix: str = "", prog: str = "arraynet") -> None:
    text = str(e).strip().splitlines()
    msg = text[0] if text else type(e).__name__
    from arraynet.parallel.comm import active_world

    w = active_world()
    if w is not None and w.size > 1:  # the other ranks would wait for this one: end them
        sys.stderr.write(f"{prog}: error (rank {w.rank}): {prefix}{msg}\n")
        _abort_others(1)  # (does not return)
    sys.stderr.write(f"{prog}: error: {prefix}{msg}\n")
    sys.exit(1)


if __name__ == "__main__":
    main()
