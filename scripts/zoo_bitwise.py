"""Are two revisions' zoo runs bitwise equal? For a refactoring that must not change
behaviour: each revision trains the same runs through its own CLI, and every weight
tensor, the history and the test error are hashed.

    uv run python scripts/zoo_bitwise.py --ref 63d30a0 --out benchmarks/refactor-bitwise.json

`--ref` is checked out into a temporary git worktree; the working tree is the other side.
Each run is `arraynet train --model M --epochs E --backend B --seed 0` (m9 for 2 epochs and
m14-fast for 1, on numpy and array-api-strict, by default). It exits 1 when any run differs.
(The shipped models' prediction fingerprints are checked by tests/test_models.py.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ("m9:2", "m14-fast:1")
BACKENDS = ("numpy", "array-api-strict")

DIGEST = r"""
import hashlib, json, sys
from safetensors import safe_open
from safetensors.numpy import load_file
arrays = load_file(sys.argv[1])
with safe_open(sys.argv[1], "numpy") as f:
    meta = f.metadata() or {}
history = json.loads(meta.get("arraynet", "{}")).get("history", [])
def timing(key):  # wall-clock figures differ from run to run
    return "second" in key or key in ("img_per_s", "time")
rows = [{k: v for k, v in row.items() if not timing(k)} for row in history]
print(json.dumps({
    "tensors": {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in sorted(arrays.items())},
    "history": hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest(),
    "rows": rows,
    "epochs": len(rows),
}))
"""


def run_one(tree: Path, model: str, epochs: int, backend: str, out: Path) -> dict:
    """Train in `tree` (its own code and environment) and hash what it wrote."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "arraynet.cli", "train", "--model", model]
    cmd += ["--epochs", str(epochs), "--backend", backend, "--seed", "0", "--out", str(out)]
    cmd += ["--json"]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(cmd[3:])} failed: {proc.stderr.strip()[-400:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    digest = subprocess.run([sys.executable, "-c", DIGEST, str(out / "model.safetensors")],
                            capture_output=True, text=True, check=True)  # fmt: skip
    keep = ("error_rate", "test_loss", "epochs_run")
    return {**{k: summary[k] for k in keep}, **json.loads(digest.stdout)}


def side(tree: Path, work: Path, runs: list[str], backends: list[str]) -> dict:
    results = {}
    for spec in runs:
        model, epochs = spec.split(":")
        for backend in backends:
            key = f"{model}:{epochs}:{backend}"
            print(f"  {tree.name}: {key}", file=sys.stderr, flush=True)
            results[key] = run_one(tree, model, int(epochs), backend, work / key.replace(":", "_"))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", required=True, help="the revision to compare against")
    ap.add_argument("--runs", default=",".join(RUNS), help="MODEL:EPOCHS,...")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--out", type=Path, help="write the comparison as JSON here")
    ap.add_argument("--ref-json", type=Path, help="reuse the ref side from an earlier --out")
    ap.add_argument("--ref-only", action="store_true", help="run and write the ref side only")
    a = ap.parse_args()
    runs, backends = a.runs.split(","), a.backends.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if a.ref_json:
            before = json.loads(a.ref_json.read_text())["ref"]["runs"]
        else:
            ref_tree = work / "ref"
            subprocess.run(["git", "worktree", "add", "--detach", str(ref_tree), a.ref],
                           cwd=ROOT, check=True, capture_output=True)  # fmt: skip
            try:
                before = side(ref_tree, work / "ref-runs", runs, backends)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(ref_tree)],
                               cwd=ROOT, capture_output=True)  # fmt: skip
        if a.ref_only:
            if a.out:
                a.out.write_text(json.dumps({"ref": {"revision": a.ref, "runs": before}}) + "\n")
            return 0
        after = side(ROOT, work / "head-runs", runs, backends)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    same = {k: before.get(k) == after[k] for k in after}
    for k, ok in same.items():
        print(f"{k:28s} {'bitwise equal' if ok else 'DIFFERENT'}  "
              f"error {after[k]['error_rate']:.4f}")  # fmt: skip
    report = {"ref": {"revision": a.ref, "runs": before},
              "head": {"revision": head, "dirty": True, "runs": after}, "equal": same}  # fmt: skip
    if a.out:
        a.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
