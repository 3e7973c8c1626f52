"""Report an ensemble as its own row: average the members' probabilities on the test set.

    uv run python scripts/ship_ensemble.py models/m10.safetensors models/m11.safetensors ...

Writes models/ensemble.json (members, test error, git commit) and regenerates
models/README.md, where the ensemble appears below the best single model. The members are
named on the command line and recorded; the issue-7 target stays the single model.
"""

from __future__ import annotations

import argparse
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
from arraynet.jobs import evaluate_weights  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="+", help="two or more weights files")
    ap.add_argument("--models-dir", default=str(REPO / "models"))
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--why", default="", help="how the members were picked, for the record")
    args = ap.parse_args()
    if len(args.weights) < 2:
        sys.exit("ship_ensemble: error: an ensemble needs at least two weights files")
    try:
        t0 = time.perf_counter()
        single = [
            evaluate_weights([w], get_backend(args.backend), args.data_dir) for w in args.weights
        ]
        res = evaluate_weights(args.weights, get_backend(args.backend), args.data_dir)
    except (ValueError, WeightsError, OSError) as e:
        sys.exit(f"ship_ensemble: error: {e}")
    record = {
        "model": "ensemble",
        "members": [
            {"weights": w, "error_rate": s["error_rate"]}
            for w, s in zip(args.weights, single, strict=True)
        ],
        "combine": "mean of the members' softmax probabilities, then argmax",
        "error_rate": res["error_rate"],
        "correct": res["correct"],
        "total": res["total"],
        "why": args.why,
        "backend": args.backend,
        "eval_seconds": round(time.perf_counter() - t0, 1),
        "arraynet_version": __version__,
        "git_commit": git_commit(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    models = Path(args.models_dir)
    table = table_text(models, {"ensemble.json": record})  # every record readable first
    atomic_write_json(models / "ensemble.json", record)
    refresh_manifest(models / "ensemble.json")  # models/SHA256SUMS
    atomic_write_bytes(models / "README.md", table.encode())
    print(f"ensemble of {len(args.weights)}: test error {100 * res['error_rate']:.2f}%")


if __name__ == "__main__":
    with script_errors("ship_ensemble"):
        main()
