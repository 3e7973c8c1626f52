"""A/B the NumPy fast kernels of an earlier commit against the working tree's.

    uv run python scripts/bench_kernels_ab.py --ref 0c671cf^ --models m14:64,m12:16 \
        [--chunk-mb 2,4,8] [--threads 1,2] [--ref-threads 2] [--rounds 5] [--eval] \
        [--json out.json]

Loads `arraynet/backends/numpy_kernels.py` as it was at `--ref` (git show) next to the
current module, builds the same layout on both, and times training steps (forward,
backward, optimizer; real MNIST batches, no augmentation; with `--eval`, evaluation-mode
forward passes instead) round by round in turn, so both see the same machine state.
Prints median images/s and the ratio to `--ref`. The current kernels run once per
`--chunk-mb` value (their patch-matrix chunk size) and `--threads` value (their threads,
default: the backend's count; BLAS threads as the NumPy backend sets them). The
reference kernels run as their revision ran them by default, on OpenBLAS's own threads
(OPENBLAS_NUM_THREADS); with `--ref-threads N` (a revision with threaded kernels,
b80b8f7 or later) they run on N worker threads, as the backend would run them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arraynet.backends import get_backend  # noqa: E402
from arraynet.backends import numpy_kernels as current  # noqa: E402
from arraynet.backends.numpy_backend import default_threads  # noqa: E402
from arraynet.bench import versions  # noqa: E402
from arraynet.data import DataError, load_mnist, one_hot, to_float  # noqa: E402
from arraynet.io import atomic_write_json  # noqa: E402
from arraynet.optimizers import make_optimizer  # noqa: E402
from arraynet.train.step import train_step  # noqa: E402
from arraynet.zoo import build_layout, entry  # noqa: E402

KERNELS_PATH = "arraynet/backends/numpy_kernels.py"
OPS_PATH = "arraynet/ops.py"
# OpenBLAS's threads as the process started (OPENBLAS_NUM_THREADS): the reference kernels
# run with them; the current ones with those their Workers want, as the backend sets them.
BLAS_THREADS = current.blas_threads()


def module_at(ref: str, path: str, name: str) -> types.ModuleType:
    """The module in file `path` as it was at git revision `ref`."""
    src = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=REPO, capture_output=True, text=True)
    if src.returncode != 0:
        sys.exit(f"bench_kernels_ab: error: no {path} at {ref!r}")
    module = types.ModuleType(name)
    sys.modules[name] = module  # (dataclasses look their module up there)
    exec(compile(src.stdout, f"{ref}:{path}", "exec"), module.__dict__)
    return module


def kernels_at(ref: str) -> types.ModuleType:
    """The numpy_kernels module as it was at git revision `ref`, with the portable helpers
    (`arraynet.ops`) of that revision where it uses them."""
    module = module_at(ref, KERNELS_PATH, "kernels_at_ref")
    if "ops" in module.__dict__:
        module.ops = module_at(ref, OPS_PATH, "ops_at_ref")
    return module


# What a revision without a kernel of this name computed instead (its layers' own code).
# Adam: a revision before the step's numbers moved to the device has `adam_update(..., lr,
# ..., t)` instead, so it runs today's `adam_step` (a small share of a step).
PORTABLE_FALLBACKS = {
    "dense_forward": lambda x, kernel, bias: x @ kernel + bias,
    "batchnorm_inference": lambda x, mean, inv, gamma, beta: (x - mean) * inv * gamma + beta,
    "adam_step": current.adam_step,
}


def kernels_from(functions: dict, workers) -> current.NumpyKernels:
    """A revision's table of kernel functions behind today's contract (`NumpyKernels`):
    the raw functions keep their signatures across revisions; those a revision lacked are
    what its layers computed instead."""
    return current.NumpyKernels(workers or current.SERIAL, {**PORTABLE_FALLBACKS, **functions})


def blas_for(workers) -> int:
    """The BLAS threads beside a revision's Workers (its own rule where it has one)."""
    rule = getattr(workers, "blas_threads", None)
    return rule if rule is not None else (1 if workers.n > 1 else BLAS_THREADS)


def compare(
    model: str,
    bs: int,
    ref_mod,
    chunks: list[int],
    threads: list[int],
    rounds: int,
    data,
    evaluate: bool = False,
    ref_threads: int | None = None,
) -> dict:
    """Median training (or, with `evaluate`, evaluation) images/s for the reference
    kernels and each current chunk size and thread count."""
    recipe = entry(model).recipe
    batches = 4 if evaluate else 50
    n = bs * batches
    # (kernels, chunk bytes, their Workers or None for the reference)
    variants: dict[str, tuple] = {"ref": (ref_mod.KERNELS, None, None)}
    if ref_threads is not None:
        ref_workers = ref_mod.Workers(ref_threads)
        variants["ref"] = (ref_mod.make_kernels(ref_workers), None, ref_workers)
    for t in threads:
        workers = current.Workers(t)
        kernels = current.make_kernels(workers)
        for mb in chunks:
            name = f"current {mb} MB" + (f" {t} threads" if len(threads) > 1 else "")
            variants[name] = (kernels, mb << 20, workers)
    x = to_float(data.train_images[:n], get_backend("numpy"))
    y = one_hot(data.train_labels[:n]).astype(x.dtype)
    runs = {}
    for name, (kernels, _, workers) in variants.items():
        b = get_backend("numpy")
        b.kernels = kernels_from(kernels, workers)  # same NumPy arrays, other kernels
        runs[name] = (b, build_layout(model).build(b, seed=0), make_optimizer(recipe.optimizer))
    times: dict[str, list[float]] = {k: [] for k in variants}
    saved_chunk = current.CHUNK_BYTES
    pos = 0
    try:
        for _ in range(rounds):
            for name, (_, chunk, workers) in variants.items():
                if chunk:
                    current.CHUNK_BYTES = chunk
                current.set_blas_threads(BLAS_THREADS if workers is None else blas_for(workers))
                b, net, opt = runs[name]
                for s in range(12):  # 2 warm-up steps, 10 timed
                    i = (pos % batches) * bs
                    pos += 1
                    t = time.perf_counter()
                    if evaluate:
                        net.forward(x[i : i + bs], False)
                    else:
                        train_step(net, opt, x[i : i + bs], y[i : i + bs], lr=recipe.lr,
                                   loss=recipe.loss)  # fmt: skip
                    if s >= 2:
                        times[name].append(time.perf_counter() - t)
    finally:
        current.CHUNK_BYTES = saved_chunk
        current.set_blas_threads(BLAS_THREADS)
    rate = {k: round(bs / statistics.median(v), 1) for k, v in times.items()}
    return {
        "model": model,
        "batch_size": bs,
        ("eval_img_per_s" if evaluate else "train_img_per_s"): rate,
        "ratio_to_ref": {k: round(v / rate["ref"], 3) for k, v in rate.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, help="git revision whose kernels are the baseline")
    ap.add_argument("--models", default="m14:64", help="model:batch pairs, comma-separated")
    ap.add_argument("--chunk-mb", default=str(current.CHUNK_BYTES >> 20))
    ap.add_argument("--threads", default=None, help="worker threads of the current kernels")
    ap.add_argument(
        "--ref-threads",
        type=int,
        default=None,
        help="worker threads of the reference kernels (threaded revisions)",
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--eval", action="store_true", help="time evaluation, not training")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args()
    try:
        pairs = [(m, int(b)) for m, b in (p.split(":") for p in args.models.split(","))]
        chunks = [int(c) for c in args.chunk_mb.split(",")]
        threads = [int(t) for t in args.threads.split(",")] if args.threads else [default_threads()]
        if min(threads) < 1 or (args.ref_threads is not None and args.ref_threads < 1):
            raise ValueError
    except ValueError:
        sys.exit(
            "bench_kernels_ab: error: --models is model:batch,..., --chunk-mb 2,4,... "
            "and --threads 1,2,... (at least 1), --ref-threads N (at least 1)"
        )
    ref_mod = kernels_at(args.ref)
    if args.ref_threads is not None and not hasattr(ref_mod, "make_kernels"):
        sys.exit(f"bench_kernels_ab: error: the kernels at {args.ref!r} have no threads")
    try:
        for model, _ in pairs:
            _ = entry(model).recipe  # an unknown model fails here, before any timing
        data = load_mnist(args.data_dir, quiet=True)
    except (ValueError, OSError, DataError) as e:
        sys.exit(f"bench_kernels_ab: error: {e}")
    rows = []
    for model, bs in pairs:
        row = compare(
            model, bs, ref_mod, chunks, threads, args.rounds, data, args.eval, args.ref_threads
        )
        rows.append(row)
        cells = "  ".join(
            f"{k} {v:,.0f} ({row['ratio_to_ref'][k]:.2f}x)"
            for k, v in row["eval_img_per_s" if args.eval else "train_img_per_s"].items()
        )
        print(f"{model:>4} batch {bs:3d}: {cells}")
    out = {
        "command": "python scripts/bench_kernels_ab.py " + " ".join(sys.argv[1:]),
        "ref": args.ref,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "ref_blas_threads": BLAS_THREADS if args.ref_threads is None else None,
        "ref_threads": args.ref_threads,
        "threads": threads,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions(),
        "rows": rows,
    }
    if args.json:
        atomic_write_json(args.json, out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
