"""Train zoo models with their seed recipes; ship weights, metadata and a results table.

    uv run python scripts/train_zoo.py m1 m2 ... [--backend numpy] [--max-epochs N]
        [--seeds 0,1,2 --val-split 5000]

Each model trains in checkpoints/zoo/<name>/ (per-epoch checkpoints, tracked in git so a
run can continue in a later session on another machine; an interrupted model resumes where
it stopped when the script is run again), then models/<name>.safetensors and
models/<name>.json are written and models/README.md is regenerated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arraynet import __version__  # noqa: E402
from arraynet.backends import get_backend  # noqa: E402
from arraynet.cli import script_errors  # noqa: E402
from arraynet.io import (  # noqa: E402
    WeightsError,
    atomic_write_bytes,
    atomic_write_json,
    refresh_manifest,
)
from arraynet.jobs import train_model  # noqa: E402
from arraynet.train.recipe import Recipe  # noqa: E402
from arraynet.zoo import (  # noqa: E402
    LAYOUTS,
    ZOO,
    recipe_for,
)

MODELS = REPO / "models"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() or None
    except OSError:
        return None


def train_one(name: str, args: argparse.Namespace) -> dict:
    """Train `name` (one seed, or every seed of --seeds and keep the best on validation),
    then ship the weights and metadata."""
    if len(args.seeds) == 1:
        res, recipe = train_seed(name, args.seeds[0], Path(args.runs) / name, args)
        return ship(name, res, recipe, args, selection=None)
    runs = []
    for seed in args.seeds:
        res, recipe = train_seed(name, seed, Path(args.runs) / f"{name}-s{seed}", args)
        runs.append(res)
    best = min(runs, key=lambda r: (r["val_error"], r["val_loss"], r["seed"]))
    selection = {
        "rule": f"lowest error (then loss) of the final weights on the last {args.val_split} "
        "training images, held out from training; the test set picks nothing",
        "candidates": [
            {**{k: r[k] for k in ("seed", "val_error", "val_loss", "error_rate")}, "out": rel(r)}
            for r in runs
        ],
        "selected_seed": best["seed"],
    }
    print(f"[{name}] selected seed {best['seed']} (val error {100 * best['val_error']:.2f}%)")
    return ship(name, best, recipe, args, selection)


def rel(res: dict) -> str:
    """The run folder, relative to the repository when inside it."""
    p = Path(res["out"]).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def train_seed(name: str, seed: int, out: Path, args: argparse.Namespace) -> tuple[dict, Recipe]:
    """One training run of `name` into `out` (resumed when it has a checkpoint)."""
    b = get_backend(args.backend, args.device)
    recipe = recipe_for(name)
    cap = args.max_epochs
    if cap is not None and cap < recipe.epochs:
        recipe = replace(recipe, epochs=cap)
    resume = (out / "state.json").is_file()

    def on_epoch(row: dict) -> None:
        extra = f" val_err {100 * row['val_error']:.2f}%" if "val_error" in row else ""
        print(
            f"[{name}] epoch {row['epoch']} lr {row['lr']:.2e} loss {row['train_loss']:.5f}"
            f"{extra} {row['seconds']:.0f}s {row['img_per_s']:.0f} img/s"
            + (" early-stop" if row.get("early_stop") else "")
            + (" AT CHANCE (dead network?)" if row.get("at_chance") else ""),
            flush=True,
        )

    verb = "resuming" if resume else "starting"
    print(f"[{name}] {verb} seed {seed} in {out}: {recipe.to_dict()}", flush=True)
    res = train_model(
        name, b, recipe=recipe, seed=seed, out_dir=out, resume=resume,
        data_dir=args.data_dir, val_split=args.val_split, callbacks={"on_epoch": on_epoch},
        quiet_data=True, train_limit=args.train_limit,
    )  # fmt: skip
    return res, recipe


def ship(name: str, res: dict, recipe: Recipe, args: argparse.Namespace, selection: dict | None):
    """Copy the run's weights to models/ and write models/<name>.json."""
    out = Path(res["out"])
    state = json.loads((out / "state.json").read_text())
    meta = {
        "model": name,
        "error_rate": res["error_rate"],
        "correct": res["correct"],
        "total": res["total"],
        "seed_error": ZOO[name].seed_error,
        "epochs_run": res["epochs_run"],
        "best_epoch": res["best_epoch"],
        "stopped_early": res["stopped_early"],
        "epoch_cap": recipe.epochs,
        "seed_epochs": ZOO[name].seed_epochs,
        "train_seconds": res["train_seconds"],
        "recipe": recipe.to_dict(),
        "monitor": recipe.monitor,
        "val_split": args.val_split,
        "train_limit": args.train_limit,
        "seed": res["seed"],
        "selection": selection,
        "backend": res["backend"],
        "device": res["device"],
        "arraynet_version": __version__,
        "git_commit": git_commit(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "history": state["history"],
    }
    models = Path(args.models_dir)
    meta["before"] = before(read_record(models, f"{name}.json"), meta["recipe"])
    models.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(models / f"{name}.safetensors", (out / "model.safetensors").read_bytes())
    atomic_write_json(models / f"{name}.json", meta)
    refresh_manifest(models / f"{name}.json")  # models/SHA256SUMS
    err, seed_err = 100 * res["error_rate"], 100 * ZOO[name].seed_error
    print(f"[{name}] test error {err:.2f}% (seed {seed_err:.2f}%)", flush=True)
    return meta


def before(old: dict | None, recipe: dict) -> dict | None:
    """What the shipped record being replaced said, when it was trained with another recipe
    (a rerun of the same recipe keeps the earlier 'before')."""
    if old is None:
        return None
    if old.get("recipe") == recipe:
        return old.get("before")
    keep = ("error_rate", "correct", "total", "epochs_run", "train_seconds", "seed",
            "git_commit", "finished", "recipe")  # fmt: skip
    return {k: old.get(k) for k in keep}


def before_cell(r: dict) -> str:
    """The replaced record's error and optimizer, if the row replaced one."""
    b = r.get("before")
    if not b:
        return ""
    rec = b.get("recipe") or {}
    return (
        f"{100 * b['error_rate']:.2f} % ({b['correct']:,}/{b['total']:,}), "
        f"{rec.get('optimizer')} {rec.get('lr', 0):g}"
    )


# Facts about how a shipped model was trained that its JSON cannot tell by itself.
TABLE_NOTES = {
    "m12": "m12 trains with seed 1. With seed 0 the network died in its first 50 steps: "
    "Adam's fixed-size steps moved every conv bias to about -0.01, more than the tiny "
    "pre-activations that the seed's He initialisation (fan_in = C*H*W) leaves the deeper "
    "layers, so the third conv layer's ReLUs all went to zero and the training loss stayed "
    "at chance (2.30) for two epochs. Augmenting 80 % of the batches from the first step "
    "makes this likelier (seed 0 with augmentation on half the batches, as for m11, and "
    "seed 1 with m12's 80 % both learn). The restart was decided on the training loss alone.",
    "m11": "m11 and m12 were capped when their learning rates had been halved down to 6e-7 "
    "and 1.5e-7, where the weights no longer change: early stopping on the noisy training "
    "loss had not fired, and the next chance for it was 24 (m11) and 14 (m12) epochs away, "
    "1.5-2.5 hours each on 2 shared cores. The cap (`--max-epochs 74` and `56`) ends "
    "training the way the recipe's last epoch would: the best of the kept epochs (lowest "
    "training loss) is restored. Both ran longer than the seed's 70 and 42 epochs.",
}


def seed_cell(r: dict) -> str:
    """The run's seed, and how it was picked when several were trained."""
    sel = r.get("selection")
    if not sel:
        return str(r.get("seed", 0))
    return f"{r['seed']} (best val of {len(sel['candidates'])})"


def write_table(models: Path) -> None:
    """models/README.md from every models/<name>.json."""
    atomic_write_bytes(models / "README.md", table_text(models).encode())


@contextlib.contextmanager
def tabling(path: Path) -> Iterator[None]:
    """A record without the fields its row needs is a one-line error naming its file."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: a record cannot be tabled ({type(e).__name__}: {e})") from None


def read_record(models: Path, file: str, pending: dict | None = None) -> dict | None:
    """models/<file> as JSON (None if absent), or the record about to be written there."""
    if pending and file in pending:
        return pending[file]
    p = models / file
    if not p.is_file():
        return None
    try:
        record = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{p}: unreadable record ({e})") from None
    if not isinstance(record, dict) or "model" not in record:
        raise ValueError(f"{p}: not a model record (no 'model' entry)")
    return record


def table_text(models: Path, pending: dict[str, dict] | None = None) -> str:
    """The text of models/README.md, with `pending` ({file name: record}) standing in for
    records not written yet: a shipping script renders the table first, so an unreadable
    record stops it before it writes anything."""
    rows = [r for name in LAYOUTS if (r := read_record(models, f"{name}.json", pending))]
    lines = [
        "# Shipped weights",
        "",
        "Trained with `scripts/train_zoo.py` (the seed recipes of `../shared/spec/seed-models.md`:",
        "same layout, loss, optimizer, learning rate, schedule, batch size, augmentation and",
        "early stopping on the training loss). Test error on the 10,000 MNIST test images;",
        "check any row with `arraynet evaluate models/<name>.safetensors`.",
        "",
        "| model | arraynet error | seed error | epochs run (cap / seed) | best epoch "
        "| optimizer | seed | train time | backend | before (optimizer) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        with tabling(models / f"{r['model']}.json"):
            ok = "" if r["error_rate"] <= r["seed_error"] else " (above seed)"
            lines.append(
                f"| {r['model']} | {100 * r['error_rate']:.2f} %{ok} | "
                f"{100 * r['seed_error']:.2f} % | "
                f"{r['epochs_run']} ({r['epoch_cap']} / {r['seed_epochs']}) | {r['best_epoch']} | "
                f"{r['recipe']['optimizer']} {r['recipe']['lr']:g} | {seed_cell(r)} | "
                f"{r['train_seconds'] / 60:.0f} min | {r['backend']} ({r['device']}) | "
                f"{before_cell(r)} |"
            )
    lines += [
        "",
        "Each row's optimizer is the one that trained it. `adam` is textbook Adam;",
        "`adam-seed` is the seed's own Adam, whose bias correction counts epochs (a step of",
        "lr x m / sqrt(v) times 0.316 in epoch 1, about 0.15 in epochs 10-20, 0.31 at 100);",
        "`adam-seed-const` keeps the correction of step 1 on every step (0.316 throughout),",
        "the zoo's reading of the seed's Adam before its source was known (see",
        "`arraynet/recipes.py`). The recipes of the seed's NumPy models (m1-m12) now use",
        "`adam-seed`; rows among them that say `adam-seed-const` or `adam` were trained",
        "before. m13, the seed's Keras model, trains with Keras's Adam, which is textbook",
        '`adam`. "Before" is the shipped row a retrain with another recipe replaced (all',
        "its figures are under `before` in the model's JSON); the zoo ships the seed's",
        "recipe whichever way the error moved.",
    ]
    for r in rows:
        if r["model"] in TABLE_NOTES:
            lines += ["", TABLE_NOTES[r["model"]]]
    picked = [r for r in rows if r.get("selection")]
    if picked:
        names = ", ".join(r["model"] for r in picked)
        lines += [
            "",
            f'Seed "best val of k" ({names}): k seeds were trained with the last '
            f"{picked[0]['val_split']:,} training images held out, and the one with the lowest "
            "error on them was shipped (`--seeds`, `--val-split`); every candidate's figures, "
            "test error included, are in the model's JSON.",
        ]
    if any(r["model"].endswith("-fast") for r in rows):
        lines += [
            "",
            "The `-fast` rows are speed recipes aimed at the seed's best result (m12, 0.40 %",
            "after 42 epochs); they were trained with `arraynet train` on 2 cores to themselves",
            "(the command is in their JSON and in `benchmarks/`).",
        ]
    for file, section in (("best.json", best_section), ("ensemble.json", ensemble_section)):
        record = read_record(models, file, pending)
        with tabling(models / file):
            lines += section(record)
    lines.append("")
    return "\n".join(lines)


def best_section(r: dict | None) -> list[str]:
    """The best single model (models/best.json, written by scripts/ship_best.py), if any."""
    if r is None:
        return []
    sel = r["selection"]
    chosen = next((c for c in sel["candidates"] if c["run"] == sel["chosen"]), None)
    after = (
        f" For the record, measured after the choice: the chosen validation run's own weights "
        f"score {100 * chosen['test_error']:.2f} % on the test set."
        if sel.get("retrained") and chosen and chosen.get("test_error") is not None
        else ""
    )
    return [
        "",
        "## Best single model",
        "",
        "`models/best.safetensors`, chosen by `scripts/ship_best.py` on the validation split "
        "(never the test set); every candidate's figures are in `models/best.json`."
        + (
            " The shipped weights retrain the chosen layout and recipe, same epochs, on every "
            "training image; the val error is the chosen run's."
            if sel.get("retrained")
            else ""
        )
        + after,
        "",
        "| model | layout | arraynet error | goal | epochs | val error | candidates "
        "| train time | backend |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| best | {r['layout']} | {100 * r['error_rate']:.2f} % | {100 * r['seed_error']:.2f} % | "
        f"{r['epochs_run']} | {100 * min(c['val_error'] for c in sel['candidates']):.2f} % "
        f"(last {sel['val_split']:,} training images) | {len(sel['candidates'])} | "
        f"{(r['train_seconds'] or 0) / 60:.0f} min | {r['backend']} ({r['device']}) |",
    ]


def ensemble_section(r: dict | None) -> list[str]:
    """The ensemble row (models/ensemble.json, written by scripts/ship_ensemble.py), if any."""
    if r is None:
        return []
    names = ", ".join(Path(m["weights"]).stem for m in r["members"])
    best_member = min(m["error_rate"] for m in r["members"])
    return [
        "",
        "## Ensemble",
        "",
        "Several shipped models, their probabilities averaged (`arraynet evaluate W1 W2 ...`; "
        "written by `scripts/ship_ensemble.py`). Reported beside, not instead of, the single "
        "model." + (f" Members: {r['why']}" if r.get("why") else ""),
        "",
        "| model | members | arraynet error | best member alone |",
        "|---|---|---|---|",
        f"| ensemble | {names} | {100 * r['error_rate']:.2f} % | {100 * best_member:.2f} % |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("models", nargs="*", help="zoo names (default: m1 ... m12)")
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds: train each (needs --val-split) and ship the one with the "
        "lowest validation error",
    )
    ap.add_argument("--max-epochs", type=int, default=None, help="cap on epochs (recorded)")
    ap.add_argument("--val-split", type=int, default=0)
    ap.add_argument("--runs", default=str(REPO / "checkpoints" / "zoo"))
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train-limit", type=int, default=None, help="first N images (tests)")
    ap.add_argument("--models-dir", default=str(MODELS), help="where weights and table go")
    ap.add_argument("--table-only", action="store_true", help="only regenerate models/README.md")
    args = ap.parse_args()
    try:
        args.seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else [args.seed]
    except ValueError:
        sys.exit(f"train_zoo: --seeds wants integers separated by commas, not {args.seeds!r}")
    if len(args.seeds) > 1 and args.val_split <= 0:
        sys.exit("train_zoo: choosing among --seeds needs a validation split (--val-split N)")
    if not args.table_only:
        for name in args.models or [f"m{i}" for i in range(1, 13)]:
            if name not in LAYOUTS:
                sys.exit(f"train_zoo: unknown model {name!r}")
            try:
                train_one(name, args)
            except WeightsError as e:
                sys.exit(f"train_zoo: {e}")
    write_table(Path(args.models_dir))


if __name__ == "__main__":
    with script_errors("train_zoo"):
        main()
