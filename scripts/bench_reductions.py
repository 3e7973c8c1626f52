"""Column sums (sums over every axis but the last) as a plain reduction against a product
with a ones vector, on each array library at hand, timed alternately in one process.

    uv run python scripts/bench_reductions.py [--backends numpy,torch] [--rounds 7]
        [--json benchmarks/reductions-cpu.json]

These sums are the bias gradients (N*H*W, C) and batch norm's statistics. Shapes: the
NHWC activations of m12 and m14 at batch 16, 64 and 512. Per shape and backend it prints
the median microseconds of

- `sum`: `xp.sum(x, axis=0)` of the (N*H*W, C) view (what the layers did before);
- `ones`: `portable.column_sum`, (1, N*H*W) @ (N*H*W, C) (the portable definition now);
- `sum64`: `xp.sum(x, axis=(0, 1, 2), dtype=float64)` (batch norm's sums before);
- `two-level`: `portable.channel_sum64` (float32 products within an image, float64 across:
  batch norm's sums now);

and the ratios sum/ones and sum64/two-level (above 1: the product is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from arraynet.backends import get_backend, portable  # noqa: E402
from arraynet.bench import median_seconds, versions  # noqa: E402

# (name, NHWC shape)
SHAPES = [
    ("m12 conv1 b16", (16, 28, 28, 16)),
    ("m12 conv1 b64", (64, 28, 28, 16)),
    ("m14 conv1 b64", (64, 28, 28, 32)),
    ("m14 conv4 b64", (64, 14, 14, 64)),
    ("m14 conv1 b512", (512, 28, 28, 32)),
    ("m14 conv4 b512", (512, 14, 14, 64)),
]


def _median_us(fn, backend, reps: int) -> float:
    return median_seconds(fn, reps, 1, backend) * 1e6


def measure(backend, shape: tuple[int, ...], rounds: int, reps: int) -> dict:
    """Median microseconds of the four sums of one float32 NHWC array."""
    xp = backend.xp
    host = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x = backend.from_host(host)
    x2 = xp.reshape(x, (-1, shape[-1]))
    ones = portable.ones_row(xp, x2.shape[0], x.dtype, x.device)
    f64 = xp.float64
    variants = {
        "sum": lambda: xp.sum(x2, axis=0),
        "ones": lambda: portable.column_sum(x2, ones),
        "sum64": lambda: xp.sum(x, axis=(0, 1, 2), dtype=f64),
        "two-level": lambda: portable.channel_sum64(x),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):  # alternately, so each sees the same machine state
        for k, fn in variants.items():
            times[k].append(_median_us(fn, backend, reps))
    ref = np.asarray(host.reshape(-1, shape[-1]).sum(axis=0, dtype=np.float64))
    err = {
        k: float(np.max(np.abs(backend.to_host(variants[k]()).astype(np.float64) - ref)))
        for k in variants
    }
    med = {k: round(statistics.median(v), 1) for k, v in times.items()}
    return {
        "us": med,
        "sum_over_ones": round(med["sum"] / med["ones"], 3),
        "sum64_over_two_level": round(med["sum64"] / med["two-level"], 3),
        "max_abs_error_vs_float64": err,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="numpy,torch", help="comma-separated backends")
    ap.add_argument("--device", default=None, help="device of the backends (e.g. cuda:0)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    ap.add_argument("--reps", type=int, default=5, help="timed calls per round")
    ap.add_argument("--shapes", default=None, help="comma-separated shape names (default all)")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    wanted = set(args.shapes.split(",")) if args.shapes else None
    rows = []
    for name in args.backends.split(","):
        try:
            backend = get_backend(name, args.device if name != "numpy" else None)
        except Exception as e:  # an unavailable library is one line, not a traceback
            print(f"{name}: skipped ({e})", file=sys.stderr)
            continue
        for label, shape in SHAPES:
            if wanted and label not in wanted:
                continue
            r = measure(backend, shape, args.rounds, args.reps)
            rows.append({"backend": name, "shape_name": label, "shape": list(shape), **r})
            us = r["us"]
            print(
                f"{name:>6} {label:<15} sum {us['sum']:>9,.1f} us  ones {us['ones']:>9,.1f} us "
                f"({r['sum_over_ones']:.2f}x) | sum64 {us['sum64']:>9,.1f} us  two-level "
                f"{us['two-level']:>9,.1f} us ({r['sum64_over_two_level']:.2f}x)",
                flush=True,
            )
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python scripts/bench_reductions.py " + " ".join(sys.argv[1:]),
        "versions": versions(),
        "rows": rows,
    }
    if args.json:
        from arraynet.io import atomic_write_json

        atomic_write_json(args.json, result)
    print(json.dumps(result))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
