"""Data-parallel throughput on this machine: 2 ranks of 1 thread (mpiexec) against
1 process of 2 threads, at the same global batch, on real MNIST batches.

    uv run python scripts/bench_data_parallel.py                       # m14 b64, m12 b16
    uv run python scripts/bench_data_parallel.py --models m4:32 --steps 3 --warmup 1
    uv run python scripts/bench_data_parallel.py --out benchmarks/data-parallel-cpu.json

Prints, per model: median images/s of each way, the share of a 2-rank step spent in the
gradient all-reduce (after a barrier, so waiting for the slower rank is counted apart, as
'wait'), the per-step compute time and the gradient size (the inputs of the scaling
estimate in benchmarks/data-parallel.md). A figure-printing command, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKER = "--worker"


def worker(model: str, batch: int, steps: int, warmup: int, threads: int) -> dict:
    """Time `steps` training steps of the global batch `batch` on this job's ranks."""
    from arraynet.backends import get_backend
    from arraynet.bench import TimedSteps
    from arraynet.data import load_mnist, one_hot, to_float
    from arraynet.parallel.comm import world
    from arraynet.parallel.data_parallel import DataParallel
    from arraynet.zoo import build_layout, recipe_for

    comm = world()
    b = get_backend("numpy", threads=threads)
    par = DataParallel(comm, b)
    par.check_batch(batch)
    local = batch // comm.size
    mnist = load_mnist(None, quiet=True)
    n = batch * (steps + warmup)
    xs = to_float(mnist.train_images[:n], b)
    ys = b.from_host(one_hot(mnist.train_labels[:n]), dtype=b.dtype("float32"))
    net = build_layout(model).build(b, seed=0)
    par.setup(net)
    recipe = recipe_for(model)
    rows = []
    marks: dict[str, float] = {}

    def timed_mean(grads: dict) -> dict:  # the training step's gradient hook, timed
        marks["t1"] = time.perf_counter()
        comm.barrier()
        marks["t2"] = time.perf_counter()
        mean = par.grad_hook(grads)
        marks["t3"] = time.perf_counter()
        return mean

    step = TimedSteps(net, recipe, xs, ys, local, grad_hook=timed_mean, rank=comm.rank,
                      ranks=comm.size)  # fmt: skip
    for s in range(steps + warmup):
        t0 = time.perf_counter()
        step()
        t4 = time.perf_counter()
        t1, t2, t3 = marks["t1"], marks["t2"], marks["t3"]
        comm.barrier()  # (steps begin together, so a step's time is the slower rank's)
        t5 = time.perf_counter()
        if s >= warmup:
            rows.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t0))
    med = [statistics.median(c) for c in zip(*rows, strict=True)]
    grad_bytes = sum(4 * int(g.size) for g in net.gradients().values())
    return {
        "model": model, "ranks": comm.size, "threads": b.threads, "global_batch": batch,
        "img_per_s": round(batch / med[4], 1), "step_ms": round(1e3 * med[4], 2),
        "compute_ms": round(1e3 * med[0], 2), "wait_ms": round(1e3 * med[1], 2),
        "allreduce_ms": round(1e3 * med[2], 3), "update_ms": round(1e3 * med[3], 2),
        "allreduce_share": round(med[2] / med[4], 4), "gradient_bytes": grad_bytes,
        "parameters": net.num_parameters(), "communicator": comm.name,
    }  # fmt: skip


def run(cmd: list[str], env: dict) -> dict:
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if p.returncode != 0:
        sys.exit(f"bench_data_parallel: {' '.join(cmd[:4])}... failed: {p.stderr.strip()[-500:]}")
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    return rows[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="m14:64,m12:16", help="MODEL:GLOBAL_BATCH,...")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    ap.add_argument(WORKER, nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        model, batch, threads = args.worker
        res = worker(model, int(batch), args.steps, args.warmup, int(threads))
        if res["ranks"] == 1 or os.environ.get("PMI_RANK", "0") == "0":
            print(json.dumps(res), flush=True)
        return
    from arraynet.data import DataError, locate

    try:
        locate(None)  # the MNIST files are there (the workers read them)
    except DataError as e:
        sys.exit(f"bench_data_parallel: error: {e}")
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    base = [sys.executable, __file__, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    env = {**os.environ}
    for v in ("ARRAYNET_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        env.pop(v, None)
    results = []
    for item in args.models.split(","):
        model, batch = item.split(":")
        two = run([mpiexec, "-n", "2", *base, WORKER, model, batch, "1"],
                  {**env, "OPENBLAS_NUM_THREADS": "1", "ARRAYNET_THREADS": "1"})  # fmt: skip
        one = run([*base, WORKER, model, batch, "2"], env)
        results.append({"model": model, "global_batch": int(batch), "one_process_2_threads": one,
                        "two_ranks_1_thread": two,
                        "speedup": round(two["img_per_s"] / one["img_per_s"], 3)})  # fmt: skip
        print(f"{model} batch {batch}: 1 process x 2 threads {one['img_per_s']:,.0f} img/s, "
              f"2 ranks x 1 thread {two['img_per_s']:,.0f} img/s "
              f"(x{results[-1]['speedup']:.2f}); 2-rank step {two['step_ms']:.1f} ms: "
              f"compute {two['compute_ms']:.1f}, wait {two['wait_ms']:.2f}, all-reduce "
              f"{two['allreduce_ms']:.2f} ({100 * two['allreduce_share']:.1f} %), "
              f"gradients {two['gradient_bytes'] / 1e6:.2f} MB", flush=True)  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"steps": args.steps, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
