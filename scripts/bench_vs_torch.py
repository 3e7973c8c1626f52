"""arraynet against PyTorch CPU eager on the same layouts, timed alternately.

    uv run python scripts/bench_vs_torch.py --models m8,m12 --batch-sizes 16,64 \
        [--backend numpy|torch] [--steps 60] [--rounds 5] [--json benchmarks/cpu-vs-torch.json]

For every model and batch size: median training throughput (forward, backward, Adam step
on real MNIST batches, augmentation off) and evaluation throughput (batch 500), arraynet
and torch interleaved round by round so both see the same machine state; then the ratios.
`--backend` is the array library arraynet's layers run on: numpy (default, its own fast
kernels) or torch (CPU tensors, torch's kernels behind arraynet's kernel contract).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from torch_twin import torch_model  # noqa: E402

from arraynet.backends import get_backend  # noqa: E402
from arraynet.bench import TimedSteps, versions  # noqa: E402
from arraynet.data import DataError, load_mnist, one_hot  # noqa: E402
from arraynet.data.arrays import uint8_to_float32  # noqa: E402
from arraynet.zoo import build_layout, recipe_for  # noqa: E402


def per_step_times(step, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        out.append(time.perf_counter() - t)
    return out


def bench_pair(
    name: str,
    bs: int,
    steps: int,
    rounds: int,
    x_host,
    y_host,
    labels,
    threads: int,
    backend: str = "numpy",
) -> dict:
    import torch
    import torch.nn.functional as F

    recipe = recipe_for(name)
    # arraynet
    b = get_backend(backend, threads=threads) if backend == "numpy" else get_backend(backend)
    net = build_layout(name).build(b, seed=0)
    xs = b.from_host(x_host)
    ys = b.from_host(y_host)
    n = xs.shape[0]
    pos = {"t": 0}
    a_step = TimedSteps(net, recipe, xs, ys, bs)

    xe = xs[:500]

    def a_eval():
        net.forward(xe, False)

    # torch
    tm = torch_model(name)
    xt = torch.from_numpy(np.ascontiguousarray(x_host.transpose(0, 3, 1, 2)))
    lt = torch.from_numpy(labels)
    yt = torch.from_numpy(y_host)
    topt = torch.optim.Adam(tm.parameters(), lr=recipe.lr, eps=1e-8) if recipe.optimizer == "adam" \
        else torch.optim.SGD(tm.parameters(), lr=recipe.lr)  # fmt: skip
    mse = recipe.loss == "mse"

    def t_step():
        i = pos["t"] % (n - bs)
        pos["t"] += bs
        tm.train()
        with torch.enable_grad():  # (arraynet's torch backend turns autograd off)
            out = tm(xt[i : i + bs])
            loss = F.mse_loss(out, yt[i : i + bs]) if mse else F.cross_entropy(out, lt[i : i + bs])
            topt.zero_grad(set_to_none=True)
            loss.backward()
        topt.step()

    def t_eval():
        tm.eval()
        with torch.no_grad():
            tm(xt[:500])

    for f in (a_step, t_step):
        for _ in range(max(5, steps // 10)):
            f()
    ta, tt, ea, et = [], [], [], []
    for _ in range(rounds):
        ta += per_step_times(a_step, steps)
        tt += per_step_times(t_step, steps)
        ea += per_step_times(a_eval, 3)
        et += per_step_times(t_eval, 3)
    row = {
        "model": name,
        "backend": backend,
        "batch_size": bs,
        "arraynet_train_img_per_s": bs / statistics.median(ta),
        "torch_train_img_per_s": bs / statistics.median(tt),
        "arraynet_eval_img_per_s": 500 / statistics.median(ea),
        "torch_eval_img_per_s": 500 / statistics.median(et),
    }
    row["train_ratio"] = row["arraynet_train_img_per_s"] / row["torch_train_img_per_s"]
    row["eval_ratio"] = row["arraynet_eval_img_per_s"] / row["torch_eval_img_per_s"]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="m8,m12")
    ap.add_argument(
        "--backend", default="numpy", choices=("numpy", "torch"), help="arraynet's array library"
    )
    ap.add_argument("--batch-sizes", default="16,64")
    ap.add_argument("--steps", type=int, default=60, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--threads", type=int, default=None, help="threads of each library (default: cores)"
    )
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("bench_vs_torch: needs torch (`uv sync --extra torch`)")
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    try:
        mnist = load_mnist(args.data_dir, quiet=True)
    except DataError as e:
        sys.exit(f"bench_vs_torch: error: {e}")
    x = uint8_to_float32(mnist.train_images[:4096])[..., None]
    labels = mnist.train_labels[:4096].astype(np.int64)
    y = one_hot(labels)
    rows = []
    for name in args.models.split(","):
        for bs in (int(s) for s in args.batch_sizes.split(",")):
            row = bench_pair(name, bs, args.steps, args.rounds, x, y, labels, threads, args.backend)
            rows.append(row)
            print(
                f"{name:>4} batch {bs:>3} ({args.backend}): "
                f"train arraynet {row['arraynet_train_img_per_s']:>9,.0f}"
                f"  torch {row['torch_train_img_per_s']:>9,.0f}  ratio {row['train_ratio']:.2f}"
                f" | eval arraynet {row['arraynet_eval_img_per_s']:>9,.0f}"
                f"  torch {row['torch_eval_img_per_s']:>9,.0f}  ratio {row['eval_ratio']:.2f}",
                flush=True,
            )
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python scripts/bench_vs_torch.py " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": _cpu_name(),
        },
        "versions": {**versions(), "torch": torch.__version__},
        "torch_threads": torch.get_num_threads(),
        "arraynet_threads": threads,
        "arraynet_backend": args.backend,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")},
        "rows": rows,
    }
    if args.json:
        from arraynet.io import atomic_write_json

        atomic_write_json(args.json, result)
    print(json.dumps(result))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        return subprocess.run(["uname", "-p"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return platform.machine()


if __name__ == "__main__":
    main()
