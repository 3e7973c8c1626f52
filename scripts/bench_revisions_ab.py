"""A/B the training speed of the working tree against an earlier git revision, whole
package against whole package (layers, kernels, optimizer and step), alternately.

    uv run python scripts/bench_revisions_ab.py --ref 43e2862 --models m12:16,m14:64 \
        [--backend numpy] [--rounds 5] [--steps 30] [--json out.json]

The revision is checked out into a temporary git worktree. Each round runs, for every
model and batch size, one short process per tree (the order alternates from round to
round), which times training steps (forward, backward, optimizer; real MNIST batches, no
augmentation) through `arraynet.step.train_step`, as both revisions have it. Prints the
median images/s of each tree over the rounds and their ratio (above 1: the working tree
is faster). `scripts/bench_kernels_ab.py` compares NumPy kernels alone, in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# One measurement, run inside a tree (its arraynet first on sys.path). argv: model, batch,
# steps, backend. Prints {"img_per_s": median}.
PROBE = """
import json, statistics, sys, time
import numpy as np
from arraynet.backends import get_backend
from arraynet.data import load_mnist, one_hot
from arraynet.optimizers import make_optimizer
from arraynet.zoo import entry
from arraynet.step import train_step
from arraynet.zoo import build_layout

model, bs, steps, backend = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
recipe = entry(model).recipe
b = get_backend(backend)
mnist = load_mnist(None, quiet=True)
n = bs * 8
x = b.from_host((mnist.train_images[:n].astype(np.float32) / 255.0)[..., None])
y = b.from_host(one_hot(mnist.train_labels[:n]).astype(np.float32))
net = build_layout(model).build(b, seed=0)
opt = make_optimizer(recipe.optimizer)
times = []
for s in range(steps + 5):
    i = (s % 8) * bs
    t = time.perf_counter()
    train_step(net, opt, x[i : i + bs], y[i : i + bs], lr=recipe.lr, loss=recipe.loss)
    b.synchronize()
    if s >= 5:
        times.append(time.perf_counter() - t)
print(json.dumps({"img_per_s": bs / statistics.median(times)}))
"""


def _git(*args: str) -> str:
    p = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench_revisions_ab: error: git {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout.strip()


def probe(tree: Path, model: str, bs: int, steps: int, backend: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    p = subprocess.run(
        [sys.executable, "-c", PROBE, model, str(bs), str(steps), backend],
        cwd=tree, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"bench_revisions_ab: error: {model}:{bs} in {tree}: {tail}")
    return float(json.loads(p.stdout.strip().splitlines()[-1])["img_per_s"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, help="git revision to compare with")
    ap.add_argument("--models", default="m12:16,m14:64", help="model:batch pairs")
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per process")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    try:
        pairs = [(m, int(b)) for m, b in (p.split(":") for p in args.models.split(","))]
    except ValueError:
        sys.exit("bench_revisions_ab: error: --models is model:batch,...")
    commit = _git("rev-parse", "--verify", f"{args.ref}^{{commit}}")
    head = _git("rev-parse", "HEAD")
    rates: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="arraynet-ab-") as tmp:
        ref_tree = Path(tmp) / "ref"
        _git("worktree", "add", "--detach", str(ref_tree), commit)
        try:
            trees = {"ref": ref_tree, "working tree": REPO}
            for r in range(args.rounds):
                order = list(trees) if r % 2 == 0 else list(trees)[::-1]
                for model, bs in pairs:
                    key = f"{model}:{bs}"
                    for name in order:
                        rate = probe(trees[name], model, bs, args.steps, args.backend)
                        rates.setdefault(key, {}).setdefault(name, []).append(rate)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            _git("worktree", "remove", "--force", str(ref_tree))
    rows = []
    for key, by_tree in rates.items():
        ref, new = (statistics.median(by_tree[k]) for k in ("ref", "working tree"))
        rows.append({
            "model_batch": key,
            "ref_img_per_s": round(ref, 1),
            "working_tree_img_per_s": round(new, 1),
            "ratio": round(new / ref, 3),
            "rounds": {k: [round(v, 1) for v in vs] for k, vs in by_tree.items()},
        })  # fmt: skip
        print(f"{key:>8}: ref {ref:>9,.1f}  working tree {new:>9,.1f} img/s  "
              f"ratio {new / ref:.3f}")  # fmt: skip
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python scripts/bench_revisions_ab.py " + " ".join(sys.argv[1:]),
        "ref": args.ref, "ref_commit": commit, "head": head,
        "backend": args.backend, "steps": args.steps, "rounds": args.rounds, "rows": rows,
    }  # fmt: skip
    if args.json:
        sys.path.insert(0, str(REPO))
        from arraynet.io import atomic_write_json

        atomic_write_json(args.json, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
