"""Commands on trained weights: evaluate, predict, export, serve; and the zoo table."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from arraynet.cli.app import app, examples
from arraynet.cli.options import (
    CHECKS,
    MODEL_DATA,
    OUTPUT,
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
@app.command(
    epilog=examples(
        "arraynet evaluate models/m9.safetensors",
        "arraynet evaluate runs/latest/model.safetensors --tta",
        "arraynet evaluate models/m12.safetensors models/m13.safetensors --json",
    )
)
def evaluate(
    weights: Annotated[
        list[Path],
        typer.Argument(metavar="WEIGHTS", help="weights file(s); several are averaged"),
    ],
    data: Annotated[
        str | None,
        typer.Option(
            metavar="DATA",
            rich_help_panel=MODEL_DATA,
            help="dataset whose test set to score (default: mnist)",
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta", rich_help_panel=MODEL_DATA, help="average over 1-pixel shifts of each image"
        ),
    ] = False,
    backend: BackendOpt = "numpy",
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    tf32: Tf32Opt = False,
    sha256: Annotated[
        list[str] | None,
        typer.Option(
            "--sha256",
            metavar="HEX",
            rich_help_panel=CHECKS,
            help="expected SHA-256 of each weights file, in order",
        ),
    ] = None,
    allow_unchecked: UncheckedOpt = False,
    allow_nonfinite: NonfiniteOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Score trained weights on a test set (MNIST's by default).

    Prints the test error on the 10,000 MNIST test images, or on the --data set's test
    images. Several weights files are scored as an ensemble: their probabilities are
    averaged."""
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


@app.command(
    epilog=examples(
        "arraynet predict models/m12.safetensors digit.png",
        "arraynet predict runs/latest/model.safetensors *.png --json",
    )
)
def predict(
    weights: Annotated[Path, typer.Argument(metavar="WEIGHTS", help="weights file")],
    images: Annotated[
        list[Path], typer.Argument(metavar="IMAGES", help="PNG or JPEG pictures of one digit")
    ],
    backend: BackendOpt = "numpy",
    sha256: ShaOpt = None,
    allow_unchecked: UncheckedOpt = False,
    allow_nonfinite: NonfiniteOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Classify pictures of handwritten digits.

    Each picture is read as greyscale, inverted when it is dark on light and fitted to
    28x28, as MNIST's digits are."""
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


@app.command(
    epilog=examples(
        "arraynet export models/m12.safetensors m12.onnx",
        "arraynet export models/m12.safetensors m12.onnx --check",
        "arraynet export runs/latest/model.safetensors model.onnx --json",
    )
)
def export(
    weights: Annotated[Path, typer.Argument(metavar="WEIGHTS", help="weights file")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="ONNX file to write, e.g. model.onnx")],
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="score the 10,000 test images with onnxruntime and arraynet first; "
            "write only when every class agrees and outputs are within 1e-5",
        ),
    ] = False,
    threads: ThreadsOpt = None,
    data_dir: DataDirOpt = None,
    sha256: ShaOpt = None,
    allow_unchecked: UncheckedOpt = False,
    allow_nonfinite: NonfiniteOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Write trained weights as an ONNX file.

    The graph is ONNX opset 17 with a float32 NHWC input and a batch axis N (needs the
    onnx extra; --check also onnxruntime)."""
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


@app.command(
    epilog=examples(
        "arraynet serve models/m12.safetensors      # then open http://127.0.0.1:8000",
        "arraynet serve runs/latest/model.safetensors --port 8080",
    )
)
def serve(
    weights: Annotated[
        Path, typer.Argument(metavar="WEIGHTS", help="weights file (a model ending in softmax)")
    ],
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="N", help="TCP port")] = 8000,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="a Host name clients use, besides 127.0.0.1, localhost and ::1 "
            "(repeatable; '*': any)",
        ),
    ] = None,
    threads: ThreadsOpt = None,
    sha256: ShaOpt = None,
    allow_unchecked: UncheckedOpt = False,
    allow_nonfinite: NonfiniteOpt = False,
) -> None:
    """Serve a web page to draw digits on and see the model's guesses.

    The page shows the model's top three classes as you draw; POST /predict takes a PNG or
    JPEG and answers JSON (needs the serve extra)."""
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
    model, meta = load_model(weights, make_backend("numpy", None, threads), **checks)
    run_server(model, host=host, port=port, name=weights.name, sha256=file_sha256(weights),
               allowed_hosts=allowed_host, meta=meta)  # fmt: skip


# -- zoo -------------------------------------------------------------------------------
@app.command()
def zoo(
    export: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            rich_help_panel=OUTPUT,
            help="print this entry as a layout file (layers and recipe) instead",
        ),
    ] = None,
    json_mode: JsonOpt = False,
) -> None:
    """List the zoo's models with their sizes, layouts and test errors.

    'seed' is the test error the seed reported (for arraynet's own entries, the target);
    'ours' is the error of the weights shipped in models/. A narrow terminal gets a
    shorter table; --json has everything."""
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
    con = Console()
    con.print(zoo_table(rows) if con.width >= WIDE else narrow_zoo_table(rows, con.width))


WIDE = 160  # columns from which `arraynet zoo` shows the whole table


def _percent(error: float | None) -> str:
    return "-" if error is None else f"{100 * error:.2f}%"


def zoo_table(rows: list[dict]) -> Table:
    """The whole table: every layer, the recipe, and what trained the shipped weights."""
    t = Table("model", "params", "layout", "recipe", "seed (target)", "shipped err (optimizer)")
    for r in rows:
        se = _percent(r["shipped_error"])
        se += f" ({r['shipped_optimizer']})" if r["shipped_optimizer"] else ""
        t.add_row(r["model"], f"{r['parameters']:,}", r["layers"], r["recipe"],
                  _percent(r["seed_error"]), se)  # fmt: skip
    return t


def narrow_zoo_table(rows: list[dict], width: int) -> Table:
    """A line a model (two where its layout does not fit): name, parameters, the seed's
    and our test error, the layout in short, and from 110 columns on the recipe."""
    recipe = width >= 110
    cells = [
        [r["model"], f"{r['parameters']:,}", _percent(r["seed_error"]),
         _percent(r["shipped_error"]), describe_layers(r["layers"]),
         *([r["recipe"]] if recipe else [])]
        for r in rows
    ]  # fmt: skip
    heads = ["model", "params", "seed", "ours", "layout", *(["recipe"] if recipe else [])]
    sizes = [max(len(str(c[i])) for c in [heads, *cells]) for i in range(len(heads))]
    free = width - 3 * (len(heads) - 1) - sum(sizes[:4])  # (3 spaces between columns)
    if recipe:  # the recipe keeps its width while the layout gets at least 30 columns
        sizes[5] = max(10, min(sizes[5], free - 30))
        free -= sizes[5] + 3
    sizes[4] = max(8, min(sizes[4], free))
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1))
    for head, size in zip(heads, sizes, strict=True):
        right = head in ("params", "seed", "ours")
        t.add_column(head, justify="right" if right else "left", width=size,
                     no_wrap=head != "layout", overflow="ellipsis")  # fmt: skip
    for c in cells:
        t.add_row(*c)
    return t


def describe_layers(layers: str) -> str:
    """The zoo's layer string in short: 'C8 relu P D C16 relu P D F FC10 softmax' ->
    'conv 8/16, relu, pool, dropout' (flatten, a softmax output and a single dense layer,
    the output, left unsaid)."""
    tokens = layers.split()
    convs = [t[1:] for t in tokens if t[:1] == "C" and t[1:].isdigit()]
    dense = [t[2:] for t in tokens if t[:2] == "FC" and t[2:].isdigit()]
    grouped: list[list] = []
    for c in convs:  # runs of equal widths: 32x3
        if grouped and grouped[-1][0] == c:
            grouped[-1][1] += 1
        else:
            grouped.append([c, 1])
    parts = ["conv " + "/".join(c if n == 1 else f"{c}x{n}" for c, n in grouped)] if convs else []
    parts += [f"FC {'-'.join(dense)}"] if len(dense) > 1 else []  # (one: the output layer)
    named = {"P": "pool", "BN": "BN", "D": "dropout"}
    words = [t for t in tokens if t.isalpha() and t.islower() and t != "softmax"]
    words += [named[t] for t in named if t in tokens]
    if tokens and tokens[-1] != "softmax" and tokens[-1].isalpha() and tokens[-1].islower():
        words.append(f"{tokens[-1]} out")
    return ", ".join([*parts, *dict.fromkeys(words)])


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
