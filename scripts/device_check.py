"""One short GPU check: device, parity of every zoo layout, m12 speed against PyTorch (arraynet
on CuPy and on torch CUDA tensors), column sums (sum(axis=0) against products with ones),
host against device random numbers (speed, and the host transfers and synchronisations of
each training step), and a short m12 training run; everything lands in ONE JSON file,
`<out>/device_check.json`.

    python scripts/device_check.py                 # CUDA machine: CuPy against NumPy and torch
    python scripts/device_check.py --cpu           # the same steps on NumPy with tiny sizes

Usually started through `scripts/device_check.sh` (which also sets up carried wheels and
MNIST; see the comment there). Every step is guarded: a failing step records its error in
the JSON and the next step runs. The JSON is rewritten after every step (and every training
epoch), so a run killed at its time limit still leaves what it had measured. The exit status
is 0 when every step ran and parity held, else 1.

Sizes come from flags; each flag's default can also be set in the environment as
DEVICE_CHECK_<FLAG> (e.g. DEVICE_CHECK_BENCH_STEPS=50, DEVICE_CHECK_MODELS=m1,m12).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ALL_MODELS = [f"m{i}" for i in range(1, 14)]

# Sizes per mode; a flag (or DEVICE_CHECK_<FLAG>) overrides one.
DEFAULTS: dict[str, dict[str, Any]] = {
    "gpu": {
        "models": ",".join(ALL_MODELS),
        "parity_batch": 8,
        "batch_sizes": "16,128",
        "bench_steps": 100,
        "bench_warmup": 10,
        "eval_batch": 500,
        "bench_augment": 1,
        "epochs": 3,
        "train_limit": 0,  # 0: all 60,000 training images
    },
    "cpu": {
        "models": ",".join(ALL_MODELS),
        "parity_batch": 4,
        "batch_sizes": "16,128",
        "bench_steps": 3,
        "bench_warmup": 1,
        "eval_batch": 100,
        "bench_augment": 0,
        "epochs": 1,
        "train_limit": 500,
    },
}
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[device_check {time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def _env(name: str) -> str | None:
    return os.environ.get(f"DEVICE_CHECK_{name.upper()}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="NumPy in place of CuPy, tiny sizes")
    p.add_argument("--out", help="output folder (default $OUT, else runs/device_check)")
    p.add_argument("--data-dir", help="MNIST folder (default $ARRAYNET_DATA, .mnist/, ...)")
    p.add_argument(
        "--download", action="store_true", help="may download MNIST when missing (default: fail)"
    )
    p.add_argument("--device", default="cuda:0", help="CUDA device of CuPy and torch")
    p.add_argument("--models", help="comma-separated zoo models for parity (default all)")
    p.add_argument("--parity-batch", type=int)
    p.add_argument("--tol", type=float, default=1e-4, help="parity tolerance (run_parity's)")
    p.add_argument("--bench-model", default="m12")
    p.add_argument("--batch-sizes", help="comma-separated training batch sizes to bench")
    p.add_argument("--bench-steps", type=int, help="timed steps per measurement")
    p.add_argument("--bench-warmup", type=int, help="untimed steps before each measurement")
    p.add_argument("--eval-batch", type=int, help="evaluation batch size")
    p.add_argument("--bench-augment", type=int, choices=(0, 1), help="also time augmented steps")
    p.add_argument(
        "--tf32", type=int, choices=(0, 1), default=0,
        help="1: float32 products and convolutions in TF32 (arraynet's backends and PyTorch "
        "eager alike); 0 (default): plain float32",
    )  # fmt: skip
    p.add_argument("--train-model", default="m12")
    p.add_argument("--epochs", type=int)
    p.add_argument("--train-limit", type=int, help="training images (0: all)")
    p.add_argument("--train-out", help="training run folder (default a fresh /tmp folder)")
    p.add_argument(
        "--steps",
        default="device,parity,bench,reductions,rng,train",
        help="which steps to run (comma-separated)",
    )
    args = p.parse_args(argv)
    mode = "cpu" if args.cpu else "gpu"
    for key, default in DEFAULTS[mode].items():
        if getattr(args, key) is None:
            env = _env(key)
            setattr(args, key, type(default)(env) if env is not None else default)
    args.mode = mode
    args.out = args.out or os.environ.get("OUT") or str(REPO / "runs" / "device_check")
    args.data_dir = args.data_dir or find_mnist()
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    return args


def find_mnist() -> str | None:
    """$ARRAYNET_DATA, else a carried `.mnist/`, else `shared/data/mnist` in or beside the repo."""
    env = os.environ.get("ARRAYNET_DATA")
    if env:
        return env
    for d in (
        REPO / ".mnist",
        REPO / "shared" / "data" / "mnist",
        REPO.parent / "shared" / "data" / "mnist",
    ):
        if d.is_dir() and any(d.glob("train-images-idx3-ubyte*")):
            return str(d)
    return None


def require_mnist(args: argparse.Namespace) -> None:
    """Fail fast when MNIST is missing (an offline machine would wait on download timeouts)."""
    from arraynet.data import load_mnist

    load_mnist(args.data_dir, download=args.download, verify=False, quiet=True)


# -- the report ------------------------------------------------------------------------------
class Report:
    """The JSON document, rewritten atomically after every change that matters."""

    def __init__(self, path: Path, doc: dict) -> None:
        self.path = path
        self.doc = doc
        path.parent.mkdir(parents=True, exist_ok=True)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run one step; its error (one line, plus the traceback's tail) goes into the JSON."""
        log(f"step {name} ...")
        t = time.perf_counter()
        try:
            result = fn()
            status = "ok"
        except BaseException as e:  # a step must never stop the others
            if isinstance(e, KeyboardInterrupt):
                raise
            result = None
            status = "error"
            msg = f"{type(e).__name__}: {e}"
            self.doc["errors"][name] = msg
            self.doc["tracebacks"][name] = traceback.format_exc()[-3000:]
            log(f"step {name} FAILED: {msg}")
        secs = round(time.perf_counter() - t, 2)
        self.doc["step_seconds"][name] = secs
        self.doc["step_status"][name] = status
        self.save()
        log(f"step {name} {status} in {secs:.1f}s")
        return result


# -- step 1: the device ----------------------------------------------------------------------
def step_device(args: argparse.Namespace, rep: Report, ctx: dict) -> None:
    from arraynet.backends import get_backend

    info: dict[str, Any] = {}
    rep.doc["gpu"] = info
    if args.mode == "gpu":
        try:
            smi = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False
            )
            info["nvidia_smi_L"] = smi.stdout.strip() or smi.stderr.strip()
            log(f"nvidia-smi -L: {info['nvidia_smi_L']}")
            if smi.returncode == 0 and smi.stdout.strip():
                rep.doc["device"] = smi.stdout.strip().splitlines()[0]  # kept if CuPy fails
        except (OSError, subprocess.SubprocessError) as e:
            info["nvidia_smi_L"] = f"unavailable: {e}"
        b = get_backend("cupy", args.device, tf32=bool(args.tf32))
        ctx["backend"] = b
        cp = b.cupy
        props = cp.cuda.runtime.getDeviceProperties(b.device.id)
        name = props["name"]
        info.update(
            name=name.decode() if isinstance(name, bytes) else str(name),
            compute_capability=f"{props['major']}.{props['minor']}",
            multiprocessors=props["multiProcessorCount"],
            memory_gib=round(props["totalGlobalMem"] / 2**30, 1),
            cuda_runtime=cp.cuda.runtime.runtimeGetVersion(),
            cuda_driver=cp.cuda.runtime.driverGetVersion(),
        )
    else:
        b = get_backend("numpy")
        ctx["backend"] = b
        info["cpu"] = cpu_name()
        info["cores"] = os.cpu_count()
    rep.doc["device"] = b.device_name() if args.mode == "gpu" else f"cpu ({cpu_name()})"
    rep.doc["backend"] = b.name
    rep.doc["tf32"] = bool(args.tf32)
    log(f"device: {rep.doc['device']}")


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# -- step 2: parity --------------------------------------------------------------------------
def parity_pairs(args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    """(label, backend, device) of the backends compared with numpy.

    On a GPU: CuPy and torch on CUDA (a missing torch is an error there). On the CPU:
    array-api-strict, and torch on the CPU when it is installed.
    """
    if args.mode == "gpu":
        pairs = [
            ("numpy-vs-cupy", "cupy", args.device),
            ("numpy-vs-torch@cuda", "torch", args.device),
        ]
    else:
        pairs = [("numpy-vs-array-api-strict", "array-api-strict", None)]
        if _has("torch"):
            pairs.append(("numpy-vs-torch@cpu", "torch", "cpu"))
    return pairs


def step_parity(args: argparse.Namespace, rep: Report, ctx: dict) -> None:
    from arraynet.parity import run_parity

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    parity: dict[str, dict] = {}
    worst: dict[str, float | None] = {}
    rep.doc["parity"] = parity
    rep.doc["parity_max_abs_diff"] = worst
    rep.doc["parity_ok"] = False
    all_ok = True
    for model in models:
        parity[model] = {}
        for label, name, device in parity_pairs(args):
            try:
                r = run_parity(
                    model, ["numpy", name], batch_size=args.parity_batch, tol=args.tol,
                    data_dir=args.data_dir, devices={name: device} if device else None,
                )  # fmt: skip
                failed = [
                    f"{x['tensor']}: {x['max_abs_diff']:.3g}" for x in r["rows"] if not x["ok"]
                ]
                row = {"ok": r["ok"], "max_abs_diff": r["max_abs_diff"], "data": r["data"]}
                if failed:
                    row["failed"] = failed
            except Exception as e:
                row = {"ok": False, "max_abs_diff": None, "error": f"{type(e).__name__}: {e}"}
            parity[model][label] = row
            all_ok &= bool(row["ok"])
            diff = row["max_abs_diff"]
            shown = "error: " + row["error"] if "error" in row else f"max|diff| {diff:.3e}"
            log(f"parity {model} {label}: {'ok' if row['ok'] else 'FAIL'} ({shown})")
        diffs = [r["max_abs_diff"] for r in parity[model].values() if r["max_abs_diff"] is not None]
        worst[model] = max(diffs) if diffs else None
        rep.save()
    rep.doc["parity_ok"] = bool(all_ok and models)
    rep.doc["parity_tolerance"] = args.tol
    if not all_ok:
        raise RuntimeError("parity failed for " + ", ".join(
            f"{m} {k}" for m, d in parity.items() for k, r in d.items() if not r["ok"]
        ))  # fmt: skip


# -- step 3: speed against PyTorch -----------------------------------------------------------
def host_pool(args: argparse.Namespace, n: int) -> tuple[Any, Any]:
    """n MNIST training images (float32 NCHW in [0, 1]) and labels, or random ones."""
    import numpy as np

    from arraynet.data import DataError, load_mnist
    from arraynet.data.arrays import uint8_to_float32

    try:
        m = load_mnist(args.data_dir, download=False, quiet=True)
        x = uint8_to_float32(m.train_images[:n])[:, None]
        return x, m.train_labels[:n].astype(np.int64)
    except DataError:
        g = np.random.default_rng(0)
        return g.random((n, 1, 28, 28), dtype=np.float32), g.integers(0, 10, n)


def torch_bench(args: argparse.Namespace, batch_size: int) -> dict:
    """Median images/s of PyTorch eager training steps (Adam, cross-entropy) and evaluation."""
    import torch
    from torch import nn

    dev = torch.device(args.device if args.mode == "gpu" else "cpu")

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    torch.manual_seed(0)
    steps, warmup = args.bench_steps, args.bench_warmup
    n_pool = min(60000, max(batch_size * (steps + warmup), args.eval_batch))
    xh, yh = host_pool(args, n_pool)
    xs, ys = torch.from_numpy(xh).to(dev), torch.from_numpy(yh).to(dev)
    from torch_twin import torch_model

    net = torch_model(args.bench_model).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    pos = [0]

    def train_step() -> None:
        i = pos[0] if pos[0] + batch_size <= n_pool else 0
        pos[0] = i + batch_size
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xs[i : i + batch_size]), ys[i : i + batch_size])
        loss.backward()
        opt.step()

    def median_rate(fn: Callable[[], Any], batch: int, n: int, w: int) -> float:
        for _ in range(w):
            fn()
        sync()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return round(batch / statistics.median(times), 1)

    out: dict[str, Any] = {"batch_size": batch_size, "steps": steps, "device": str(dev)}
    with torch.enable_grad():  # arraynet's torch backend turns autograd off globally
        net.train()
        out["train_img_per_s"] = median_rate(train_step, batch_size, steps, warmup)
    xe = xs[: args.eval_batch]
    net.eval()
    with torch.no_grad():
        eval_steps = max(3, min(20, steps // 5))
        out["eval_img_per_s"] = median_rate(lambda: net(xe), int(xe.shape[0]), eval_steps, 2)
    out["eval_batch_size"] = int(xe.shape[0])
    out["parameters"] = sum(p.numel() for p in net.parameters())
    out["threads"] = torch.get_num_threads()
    if dev.type == "cuda":
        out["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        out["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        out["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return out


def _bench_arraynet(args: argparse.Namespace, b: Any, bs: int) -> dict:
    from arraynet.bench import run_bench

    r = run_bench(
        args.bench_model, b, batch_size=bs, steps=args.bench_steps, warmup=args.bench_warmup,
        eval_batch_size=args.eval_batch, data_dir=args.data_dir, augment=bool(args.bench_augment),
    )  # fmt: skip
    r.pop("versions", None)
    r.pop("machine", None)
    log(f"bench {b.name} {args.bench_model} b{bs}: train {r['train_img_per_s']} img/s, "
        f"eval {r['eval_img_per_s']} img/s")  # fmt: skip
    return r


def step_bench(args: argparse.Namespace, rep: Report, ctx: dict) -> None:
    """arraynet on the check's backend (CuPy on a GPU), arraynet's layers on torch tensors
    (torch's kernels behind arraynet's contract, same device) and PyTorch eager, per batch
    size, with the ratios of both arraynet rows to PyTorch's."""
    from arraynet.backends import get_backend

    b = ctx.get("backend")
    require_mnist(args)
    sizes = [int(s) for s in str(args.batch_sizes).split(",") if s.strip()]
    bench: dict[str, Any] = {
        "model": args.bench_model, "backend": b.name if b else None, "steps": args.bench_steps,
        "warmup": args.bench_warmup, "tf32": bool(args.tf32), "arraynet": {},
        "arraynet_torch": {}, "torch": {}, "ratios": {}, "errors": {},
    }  # fmt: skip
    rep.doc["bench"] = bench
    have_torch = _has("torch")
    tb = None
    if have_torch:
        try:
            dev = args.device if args.mode == "gpu" else "cpu"
            tb = get_backend("torch", dev, tf32=bool(args.tf32))
        except Exception as e:
            bench["errors"]["arraynet_torch"] = f"{type(e).__name__}: {e}"
    for bs in sizes:
        key = f"b{bs}"
        try:
            if b is None:
                raise RuntimeError("no arraynet backend (the device step failed)")
            bench["arraynet"][key] = _bench_arraynet(args, b, bs)
        except Exception as e:
            bench["errors"][f"arraynet {key}"] = f"{type(e).__name__}: {e}"
            log(f"bench arraynet b{bs} FAILED: {e}")
        rep.save()
        if not have_torch:
            bench["errors"][f"torch {key}"] = "torch is not installed (skipped)"
            continue
        if tb is not None:
            try:
                bench["arraynet_torch"][key] = _bench_arraynet(args, tb, bs)
            except Exception as e:
                bench["errors"][f"arraynet_torch {key}"] = f"{type(e).__name__}: {e}"
                log(f"bench arraynet on torch b{bs} FAILED: {e}")
            rep.save()
        try:
            t = torch_bench(args, bs)
            bench["torch"][key] = t
            log(f"bench torch@{t['device']} {args.bench_model} b{bs}: train "
                f"{t['train_img_per_s']} img/s, eval {t['eval_img_per_s']} img/s")  # fmt: skip
        except Exception as e:
            bench["errors"][f"torch {key}"] = f"{type(e).__name__}: {e}"
            log(f"bench torch b{bs} FAILED: {e}")
        t = bench["torch"].get(key)
        for prefix, a in (("", bench["arraynet"].get(key)),
                          ("torch_backend_", bench["arraynet_torch"].get(key))):  # fmt: skip
            if a and t:
                ratios = bench["ratios"]
                ratios[f"{prefix}train_{key}"] = round(
                    a["train_img_per_s"] / t["train_img_per_s"], 3
                )
                ratios[f"{prefix}eval_b{t['eval_batch_size']}"] = round(
                    a["eval_img_per_s"] / t["eval_img_per_s"], 3
                )
        rep.save()
    bench["ratio_meaning"] = (
        f"{bench['backend']} images/s divided by PyTorch eager images/s; torch_backend_*: "
        "arraynet's layers on torch tensors (torch's kernels) divided by PyTorch eager"
    )
    log(f"bench ratios ({bench['backend']}/torch): {bench['ratios']}")
    real = {k: v for k, v in bench["errors"].items() if "skipped" not in v}
    if real:
        raise RuntimeError("; ".join(f"{k}: {v}" for k, v in real.items()))


def _check_backends(args: argparse.Namespace, ctx: dict) -> list:
    """The check's backend, and torch on the same device when torch is installed."""
    from arraynet.backends import get_backend

    b = ctx.get("backend")
    if b is None:
        raise RuntimeError("no backend (the device step failed)")
    backends = [b]
    if _has("torch"):
        backends.append(get_backend("torch", args.device if args.mode == "gpu" else "cpu"))
    return backends


# -- step 4: host against device random numbers ---------------------------------------------
def rng_run(args: argparse.Namespace, b: Any, kind: str, batch_size: int) -> dict:
    """Augmented training steps of the bench model drawing from the `kind` generator: images/s
    over the steady-state steps, then (a second, short run) the host transfers per step as
    `count_transfers` sees them and, on CUDA, the synchronisations torch's sync debug mode
    reports."""
    import warnings

    import numpy as np

    from arraynet.backends.transfers import count_transfers
    from arraynet.data import one_hot
    from arraynet.train.callbacks import Callback
    from arraynet.train.loop import Dataset, Training, fit_loop
    from arraynet.zoo import build_layout, recipe_for

    steps, warmup = max(2, args.bench_steps), args.bench_warmup
    recipe = recipe_for(args.bench_model).with_overrides(batch_size=batch_size, aug_p=1.0)
    xh, yh = host_pool(args, batch_size * (steps + warmup))
    xh = np.ascontiguousarray(np.moveaxis(xh, 1, -1))  # NCHW -> NHWC
    dtype = b.dtype("float32")
    data = Dataset(b.from_host(xh, dtype), b.from_host(one_hot(yh), dtype), yh)

    class Clock(Callback):
        def __init__(self) -> None:
            self.marks: dict[int, float] = {}

        def on_batch_end(self, t: Any, batch: int, size: int) -> None:
            if batch in (warmup, warmup + steps):
                b.synchronize()
                self.marks[batch] = time.perf_counter()

    clock = Clock()
    model = build_layout(args.bench_model).build(b, seed=0)
    fit_loop(Training(model, recipe, data, seed=0, rng_kind=kind, callbacks=[clock]), 1)
    secs = clock.marks[warmup + steps] - clock.marks[warmup]
    out: dict[str, Any] = {"train_img_per_s": round(steps * batch_size / secs, 1)}

    class Count(Callback):
        def __init__(self, counts: Any) -> None:
            self.counts, self.marks = counts, []

        def on_batch_end(self, t: Any, batch: int, size: int) -> None:
            self.marks.append((*self.counts.snapshot(), len(caught)))

    small = Dataset(
        data.x[: 3 * batch_size, ...], data.y[: 3 * batch_size, ...], yh[: 3 * batch_size]
    )
    model = build_layout(args.bench_model).build(b, seed=0)
    cuda = b.name == "torch" and b.device.type == "cuda"
    with warnings.catch_warnings(record=True) as caught, count_transfers(b) as counts:
        warnings.simplefilter("always")
        if cuda:
            b.torch.cuda.set_sync_debug_mode("warn")
        try:
            count = Count(counts)
            fit_loop(Training(model, recipe, small, seed=0, rng_kind=kind, callbacks=[count]), 1)
        finally:
            if cuda:
                b.torch.cuda.set_sync_debug_mode("default")
    per_step = [tuple(y - x for x, y in zip(a, c, strict=True))
                for a, c in zip(count.marks, count.marks[1:], strict=False)]  # fmt: skip
    out["steady_state_steps_counted"] = len(per_step)
    out["host_to_device_per_step"] = max((s[0] for s in per_step), default=None)
    out["device_to_host_per_step"] = max((s[1] for s in per_step), default=None)
    if cuda:
        out["cuda_sync_warnings_per_step"] = max((s[2] for s in per_step), default=None)
    out["counted_by"] = "from_host/to_host" + (
        " + torch tensor conversions" if b.name == "torch" else ""
    )
    return out


def step_rng(args: argparse.Namespace, rep: Report, ctx: dict) -> None:
    """Host against device generator on the check's backend and on torch (same device)."""

    backends = _check_backends(args, ctx)
    bs = int(str(args.batch_sizes).split(",")[0])
    res: dict[str, Any] = {"model": args.bench_model, "batch_size": bs, "augment": True}
    rep.doc["rng"] = res
    for be in backends:
        for kind in ("host", "device"):
            key = f"{be.name} {kind}"
            try:
                res[key] = rng_run(args, be, kind, bs)
                log(f"rng {key}: {res[key]}")
            except Exception as e:
                res[key] = {"error": f"{type(e).__name__}: {e}"}
                log(f"rng {key} FAILED: {e}")
            rep.save()
        h, d = res[f"{be.name} host"], res[f"{be.name} device"]
        if "train_img_per_s" in h and "train_img_per_s" in d:
            res[f"{be.name} device/host speed"] = round(
                d["train_img_per_s"] / h["train_img_per_s"], 3
            )
    failed = [k for k, v in res.items() if isinstance(v, dict) and "error" in v]
    if failed:
        raise RuntimeError(f"rng runs failed: {', '.join(failed)}")


# -- step 5: column sums, plain against a product with ones ----------------------------------
def step_reductions(args: argparse.Namespace, rep: Report, ctx: dict) -> None:
    """scripts/bench_reductions.py's timings on the check's backend and on torch (same
    device): the sums over every axis but the last that bias gradients and batch norm
    take, as `sum(axis=0)` and as the portable definitions' products with ones."""
    from bench_reductions import SHAPES, measure

    backends = _check_backends(args, ctx)
    shapes = SHAPES if args.mode == "gpu" else [s for s in SHAPES if "b16" in s[0]]
    rounds, reps = (5, 10) if args.mode == "gpu" else (1, 2)
    rows: list[dict] = []
    rep.doc["reductions"] = {"rows": rows, "meaning": "microseconds; sum_over_ones > 1: "
                             "the product with ones is faster"}  # fmt: skip
    for be in backends:
        for label, shape in shapes:
            r = measure(be, shape, rounds, reps)
            rows.append({"backend": be.name, "shape_name": label, "shape": list(shape), **r})
            log(f"reductions {be.name} {label}: {r['us']} (sum/ones {r['sum_over_ones']}, "
                f"sum64/two-level {r['sum64_over_two_level']})")  # fmt: skip
            rep.save()


# -- step 6: a short training run ------------------------------------------------------------
def step_train(args: argparse.Namespace, rep: Report, ctx: dict) -> None:
    from arraynet.jobs import train_model
    from arraynet.zoo import recipe_for

    b = ctx.get("backend")
    if b is None:
        raise RuntimeError("no backend (the device step failed)")
    require_mnist(args)
    recipe = recipe_for(args.train_model).with_overrides(epochs=args.epochs)
    out_dir = args.train_out or tempfile.mkdtemp(prefix="device_check_train_")
    train: dict[str, Any] = {
        "model": args.train_model, "backend": b.name, "epochs": args.epochs,
        "train_limit": args.train_limit or None, "recipe": recipe.to_dict(), "out_dir": out_dir,
        "epoch_rows": [],
    }  # fmt: skip
    rep.doc["train"] = train

    def on_epoch(row: dict) -> None:
        train["epoch_rows"].append(row)
        train["seconds_per_epoch"] = [r["seconds"] for r in train["epoch_rows"]]
        log(f"train {args.train_model} epoch {row['epoch']}: loss {row['train_loss']:.4f}, "
            f"{row['seconds']:.1f}s, {row['img_per_s']} img/s")  # fmt: skip
        rep.save()

    r = train_model(
        args.train_model, b, recipe=recipe, out_dir=out_dir, data_dir=args.data_dir,
        train_limit=args.train_limit or None, epochs=args.epochs,
        callbacks={"on_epoch": on_epoch}, quiet_data=True,
    )  # fmt: skip
    secs = train.get("seconds_per_epoch") or []
    train.update(
        error_rate=r["error_rate"],
        correct=r["correct"],
        total=r["total"],
        test_loss=r["test_loss"],
        epochs_run=r["epochs_run"],
        train_seconds=r["train_seconds"],
        mean_seconds_per_epoch=round(sum(secs) / len(secs), 3) if secs else None,
        seconds_per_epoch_after_first=(
            round(sum(secs[1:]) / len(secs[1:]), 3) if len(secs) > 1 else None
        ),
    )
    log(f"train {args.train_model}: test error {100 * r['error_rate']:.2f}% after "
        f"{r['epochs_run']} epoch(s), seconds/epoch {secs}")  # fmt: skip


# -- versions and main -----------------------------------------------------------------------
def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def versions() -> dict:
    out: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable}
    with contextlib.suppress(Exception):
        from arraynet import __version__

        out["arraynet"] = __version__
    for pkg in (
        "numpy", "array-api-compat", "array-api-strict", "safetensors", "typer", "rich",
        "torch", "cupy-cuda12x", "cupy-cuda13x", "cupy",
    ):  # fmt: skip
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    for mod in ("array_api_compat", "array_api_strict"):  # carried wheels or the environment?
        with contextlib.suppress(Exception):
            spec = importlib.util.find_spec(mod)
            out[f"{mod}_from"] = (
                str(Path(spec.origin).parent.parent) if spec and spec.origin else None
            )
    if "torch" in out:
        with contextlib.suppress(Exception):
            import torch

            out["torch_cuda"] = torch.version.cuda
            out["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    with contextlib.suppress(Exception):
        out["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    argv_shown = sys.argv[1:] if argv is None else argv
    command = os.environ.get("DEVICE_CHECK_COMMAND") or shlex.join(
        ["python", "scripts/device_check.py", *argv_shown]
    )
    doc: dict[str, Any] = {
        "status": "running",
        "mode": args.mode,
        "device": None,
        "parity_ok": None,
        "command": command,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": {"platform": platform.platform(), "node": platform.node(), "cpus": os.cpu_count()},
        "config": {k: v for k, v in vars(args).items()},
        "versions": {},
        "errors": {},
        "tracebacks": {},
        "step_seconds": {},
        "step_status": {},
    }
    rep = Report(out / "device_check.json", doc)
    log(f"mode {args.mode}; writing {rep.path}; MNIST {args.data_dir or 'not found'}")
    ctx: dict[str, Any] = {}
    rep.step("versions", lambda: doc["versions"].update(versions()))
    log(f"versions: {doc['versions']}")
    steps = {"device": step_device, "parity": step_parity, "bench": step_bench,
             "reductions": step_reductions, "rng": step_rng, "train": step_train}  # fmt: skip
    for name in args.steps:
        if name not in steps:
            doc["errors"][name] = f"unknown step {name!r}; choose from {', '.join(steps)}"
            continue
        rep.step(name, lambda fn=steps[name]: fn(args, rep, ctx))
    doc["status"] = "done"
    doc["total_seconds"] = round(time.perf_counter() - T0, 2)
    rep.save()
    summary = {
        "device": doc["device"],
        "parity_ok": doc["parity_ok"],
        "ratios": (doc.get("bench") or {}).get("ratios"),
        "rng_device_over_host": {
            k: v for k, v in (doc.get("rng") or {}).items() if k.endswith("speed")
        },
        "train_error_rate": (doc.get("train") or {}).get("error_rate"),
        "seconds_per_epoch": (doc.get("train") or {}).get("seconds_per_epoch"),
        "errors": list(doc["errors"]),
    }
    log(f"done in {doc['total_seconds']:.1f}s: {json.dumps(summary, default=str)}")
    log(f"wrote {rep.path}")
    ok = not doc["errors"] and (doc["parity_ok"] or "parity" not in args.steps)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
