"""Commands on trained weights: evaluate, predict, export, serve; and the zoo table."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from arraynet.cli.app import app
from arraynet.cli.options import (
    BackendOpt,
    DataDirOpt,
    DeviceOpt,
    JsonOpt,
    NonfiniteOpt,
    ShaOpt,
    Tf32Opt,
    ThreadsOpt,
    UncheckedOpt,
    make_backend,
)
from arraynet.cli.output import CliError, console, emit_json

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"  # the shipped weights and records


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
    b = make_backend(backend, device, threads, tf32)
    checks = {"sha256": sha256, "allow_unchecked": allow_unchecked,
              "allow_nonfinite": allow_nonfinite}  # fmt: skip
    res = evaluate_weights([str(w) for w in weights], b, data_dir, tta=tta, data=data, **checks)
    res = {**res, "weights": [str(w) for w in weights], "backend": b.name, "tta": tta}
    if data is not None:
        res["data"] = data
    console(json_mode).print(
        f"test error {100 * res['error_rate']:.2f}% ({res['correct']}/{res['total']}) on {b.name}"
    )
    if json_mode:
        emit_json(res)


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

    b = make_backend(backend)
    model, _ = load_model(weights, b, sha256=sha256, allow_unchecked=allow_unchecked,
                          allow_nonfinite=allow_nonfinite)  # fmt: skip
    rows = []
    for path in images:
        x = b.from_host(load_digit(path, FORMATS), dtype=b.dtype("float32"))
        probs = b.to_host(model.forward(x, False))[0]
        digit = int(probs.argmax())
        rows.append({"image": str(path), "digit": digit, "probability": float(probs[digit])})
        console(json_mode).print(f"{path}: {digit} ({100 * float(probs[digit]):.1f}%)")
    if json_mode:
        emit_json({"predictions": rows})


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
    b = make_backend("numpy", None, threads)
    model, _ = load_model(weights, b, sha256=sha256, allow_unchecked=allow_unchecked,
                          allow_nonfinite=allow_nonfinite)  # fmt: skip
    data = export_bytes(model, doc=f"arraynet export of {weights.name}")
    con = console(json_mode)
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
        emit_json(res)


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
    model, _ = load_model(weights, make_backend("numpy", None, threads), **checks)
    run_server(model, host=host, port=port, name=weights.name, sha256=file_sha256(weights),
               allowed_hosts=allowed_host)  # fmt: skip


# -- zoo -------------------------------------------------------------------------------
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
    models_dir = Path(os.environ.get("ARRAYNET_MODELS", MODELS_DIR))
    rows = []
    for name, entry in ZOO.items():
        m = entry.layout().build(b, seed=0)
        err_shipped, opt_shipped = _shipped(models_dir / f"{name}.json")
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
        emit_json({"models": rows})
        return
    t = Table("model", "params", "layout", "recipe", "seed (target)", "shipped err (optimizer)")
    for r in rows:
        se = "-" if r["shipped_error"] is None else f"{100 * r['shipped_error']:.2f}%"
        se += f" ({r['shipped_optimizer']})" if r["shipped_optimizer"] else ""
        t.add_row(r["model"], f"{r['parameters']:,}", r["layers"], r["recipe"],
                  f"{100 * r['seed_error']:.2f}%", se)  # fmt: skip
    Console().print(t)


def _shipped(record_file: Path) -> tuple[float | None, str | None]:
    """(test error, optimizer) of the shipped weights' JSON record; None for what is
    missing or unreadable (shown as '-' rather than stopping the table)."""
    if not record_file.is_file():
        return None, None
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
        err_shipped = record.get("error_rate")
        recipe = record.get("recipe")
        opt_shipped = recipe.get("optimizer") if isinstance(recipe, dict) else None
    except (OSError, ValueError, AttributeError):
        err_shipped = opt_shipped = None
    if not isinstance(err_shipped, int | float) or isinstance(err_shipped, bool):
        err_shipped = None
    if not isinstance(opt_shipped, str):
        opt_shipped = None
    return err_shipped, opt_shipped


def _short(layer: Any) -> str:
    """A layer's short name in the zoo table (FC128, C32, P, D ...)."""
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
