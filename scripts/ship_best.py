"""Ship the best single model: pick among finished runs on their validation split.

    uv run python scripts/ship_best.py RUN_DIR [RUN_DIR ...] [--retrain FULL_RUN]

Each RUN_DIR is a finished `arraynet train ... --val-split N --out RUN_DIR` run. The run
whose final weights have the lowest validation error (then validation loss) is copied to
models/best.safetensors; models/best.json records the layout, recipe, history, hardware,
wall time and every candidate's figures; models/README.md is regenerated. The test error
is measured after the choice and never enters it.

With --retrain, the shipped weights are instead FULL_RUN's: the chosen run's layout and
recipe (epochs included) retrained without the validation hold-out. The script checks that
FULL_RUN matches the choice, so the validation split still decides everything.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from train_zoo import git_commit, table_text  # noqa: E402

from arraynet import __version__  # noqa: E402
from arraynet.backends import get_backend  # noqa: E402
from arraynet.cli import script_errors  # noqa: E402
from arraynet.io import (  # noqa: E402
    WeightsError,
    atomic_write_bytes,
    atomic_write_json,
    refresh_manifest,
)
from arraynet.io.weights import load_arrays  # noqa: E402
from arraynet.jobs import evaluate_weights  # noqa: E402


def candidate(run: Path) -> dict:
    """A finished run's choice figures (validation) and facts; ValueError if unusable."""
    weights = run / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"{run}: no model.safetensors (the run has not finished)")
    _, meta = load_arrays(weights)
    hist = meta.get("history") or []
    if not meta.get("val_split") or not hist or "val_error" not in hist[-1]:
        raise ValueError(f"{run}: trained without --val-split, so it cannot be chosen fairly")
    # The final weights' figures; the last epoch's row says the same unless the run ends
    # by averaging (swa_from), whose averaged weights are only scored at the end.
    final = meta.get("metrics") or {}
    if "val_error" not in final:
        final = hist[-1]
    return {
        "run": str(run),
        "layout": meta["model"],
        "seed": meta.get("seed"),
        "val_split": meta["val_split"],
        "val_error": final["val_error"],
        "val_loss": final["val_loss"],
        "epochs_run": len(hist),
        "meta": meta,
    }


def retrain_run(run: Path, chosen: dict) -> dict:
    """FULL_RUN's metadata, after checking it retrains the chosen layout and recipe."""
    weights = run / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"{run}: no model.safetensors (the retrain has not finished)")
    _, meta = load_arrays(weights)
    want = chosen["meta"]
    if meta.get("val_split"):
        raise ValueError(f"{run}: a retrain uses every training image (no --val-split)")
    if meta["model"] != want["model"] or meta.get("layout") != want.get("layout"):
        raise ValueError(f"{run}: layout {meta['model']} differs from the chosen {want['model']}")
    if meta["recipe"] != want["recipe"]:
        raise ValueError(f"{run}: its recipe differs from the chosen run's")
    if meta.get("train_limit") != want.get("train_limit"):
        raise ValueError(f"{run}: trained on a different --train-limit than the chosen run")
    if len(meta.get("history") or []) != chosen["epochs_run"]:
        raise ValueError(f"{run}: ran a different number of epochs than the chosen run")
    return meta


def hardware() -> dict:
    """What the run's figures were measured on (this machine; runs are shipped where made)."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="finished run folders trained with --val-split")
    ap.add_argument("--models-dir", default=str(REPO / "models"))
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--trained-with", default="", help="the command line(s), for the record")
    ap.add_argument(
        "--retrain",
        default=None,
        help="finished run of the chosen recipe without --val-split: ship its weights",
    )
    args = ap.parse_args()
    try:
        cands = [candidate(Path(r)) for r in args.runs]
        if len({c["val_split"] for c in cands}) > 1:
            raise ValueError("the runs hold out different validation splits")
        best = min(cands, key=lambda c: (c["val_error"], c["val_loss"], c["run"]))
        meta = best["meta"]
        weights = Path(best["run"]) / "model.safetensors"
        if args.retrain:
            meta = retrain_run(Path(args.retrain), best)
            weights = Path(args.retrain) / "model.safetensors"
        test = evaluate_weights([str(weights)], get_backend(args.backend), args.data_dir)
    except (ValueError, WeightsError, OSError, KeyError) as e:
        sys.exit(f"ship_best: error: {e}")
    metrics = meta.get("metrics", {})
    listed = [
        {k: v for k, v in c.items() if k != "meta"}
        | {"test_error": c["meta"].get("metrics", {}).get("error_rate")}
        for c in cands
    ]
    record = {
        "model": "best",
        "layout": best["layout"],
        "layout_config": meta.get("layout"),
        "error_rate": test["error_rate"],
        "correct": test["correct"],
        "total": test["total"],
        "seed_error": 0.0025,
        "recipe": meta["recipe"],
        "seed": meta.get("seed"),
        "epochs_run": len(meta.get("history") or []),
        "train_seconds": metrics.get("train_seconds"),
        "init": meta.get("init"),  # the finished run a fine-tune started from
        "backend": meta.get("backend"),
        "device": meta.get("device"),
        "hardware": hardware(),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "selection": {
            "rule": "lowest final validation error (then loss) on the last "
            f"{best['val_split']:,} training images; the test set is not used",
            "val_split": best["val_split"],
            "chosen": best["run"],
            "candidates": listed,
            "retrained": None
            if not args.retrain
            else {
                "run": args.retrain,
                "rule": "the chosen layout and recipe, same epochs, retrained on every "
                "training image; shipped whatever its test error",
                "chosen_run_history": best["meta"].get("history", []),
            },
        },
        "trained_with": args.trained_with,
        "arraynet_version": __version__,
        "git_commit": git_commit(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "history": meta.get("history", []),
    }
    models = Path(args.models_dir)
    table = table_text(models, {"best.json": record})  # every record readable first
    atomic_write_bytes(models / "best.safetensors", weights.read_bytes())
    atomic_write_json(models / "best.json", record)
    refresh_manifest(models / "best.json")  # models/SHA256SUMS
    atomic_write_bytes(models / "README.md", table.encode())
    how = f", retrained in {args.retrain}" if args.retrain else ""
    print(
        f"best: {best['run']} ({best['layout']}, val error {100 * best['val_error']:.2f}%)"
        f"{how} -> test error {100 * test['error_rate']:.2f}%"
    )


if __name__ == "__main__":
    with script_errors("ship_best"):
        main()
