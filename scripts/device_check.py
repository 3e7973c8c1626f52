"""One short GPU check: the GPU-marked kernel tests, device, parity of every zoo layout (also
with arraynet's own CUDA kernels), the own CUDA kernels against the default ones operation by
operation, m12 speed against PyTorch (arraynet on CuPy with its default and with its own
kernels, and on torch CUDA tensors), column sums (sum(axis=0) against products with ones),
host against device random numbers (speed, and the host transfers and synchronisations of
each training step), and a short m12 training run; everything lands in ONE JSON file,
`<out>/device_check.json`.

    python scripts/device_check.py                 # CUDA machine: CuPy against NumPy and torch
    python scripts/device_check.py --cpu           # the same steps on NumPy with tiny sizes

Steps, in order (`--steps` picks some):

- gpu_tests: `python -m pytest -m gpu -q -p no:cacheprovider tests/test_kernels.py
  tests/test_cuda_kernels.py` (the files that exist) in a subprocess: exit code, counts and
  the output's last 40 lines (on the CPU every test skips; a missing pytest is the step's
  error and the next step runs);
- device: the GPU (CuPy's view, nvidia-smi -L) or the CPU;
- parity: every model, NumPy against CuPy, CuPy with arraynet's own CUDA kernels
  (ARRAYNET_CUDA_KERNELS=1; label `numpy-vs-cupy+cuda_kernels`) and torch on CUDA; on the
  CPU against array-api-strict, `cuda-on-cpu` (the same CUDA source built for the host) and
  torch;
- kernels: scripts/bench_kernels.py, each hot operation (convolutions of m12 and m14, batch
  norm, max pooling, softmax cross-entropy, column sums, Adam) with `CudaKernels` against
  the default kernels at batch 64 and 512: ms per call, default/cuda and max|diff| (CPU:
  `cuda-on-cpu` against the portable definitions at batch 2);
- bench: m12 training/evaluation images/s per batch size of arraynet (default kernels),
  arraynet with its own CUDA kernels, arraynet's layers on torch tensors, and PyTorch eager;
- reductions, rng: column sums; host against device random numbers;
- train: a few epochs of m12 (`--train-kernels cuda`: with the own CUDA kernels).

A default GPU run takes about 5-7 minutes on an H100 (the CUDA kernels compile with NVRTC
on first use, a few seconds); `--cpu` about 1-2 minutes.

Usually started through `scripts/device_check.sh` (which also sets up carried wheels and
MNIST; see the comment there). Every step is guarded: a failing step records its error in
the JSON and the next step runs. The JSON is rewritten after every step (and every training
epoch, parity model and kernel case), so a run killed at its time limit still leaves what it
had measured. The exit status is 0 when every step ran and parity held, else 1.

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
import re
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

# every base layout of the zoo (m14: batch norm and stride-2 convolutions, the own CUDA
# kernels' hot paths)
ALL_MODELS = [f"m{i}" for i in range(1, 15)]

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
        "train_kernels": "default",
        "kernel_batches": "64,512",
        "kernel_rounds": 5,
        "kernel_reps": 10,
        "tests_timeout": 240,
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
        "train_kernels": "default",
        "kernel_batches": "2",
        "kernel_rounds": 1,
        "kernel_reps": 2,
        "tests_timeout": 240,
    },
}
T0 = time.perf_counter()
STEPS = "gpu_tests,device,parity,kernels,bench,reductions,rng,train"
GPU_TEST_FILES = ("tests/test_kernels.py", "tests/test_cuda_kernels.py")
TRAIN_KERNELS = ("default", "cuda")


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
        "--train-kernels", choices=TRAIN_KERNELS,
        help="default: the backend's default kernels (the measured path); cuda: arraynet's "
        "own CUDA kernels (CuPy with ARRAYNET_CUDA_KERNELS=1; CPU: cuda-on-cpu, slow)",
    )  # fmt: skip
    p.add_argument("--kernel-batches", help="kernels step: comma-separated batch sizes")
    p.add_argument("--kernel-rounds", type=int, help="kernels step: alternating rounds")
    p.add_argument("--kernel-reps", type=int, help="kernels step: timed calls per round")
    p.add_argument("--kernel-ops", help="kernels step: keep the cases matching these words")
    p.add_argument("--tests-timeout", type=int, help="gpu_tests step: seconds before a kill")
    p.add_argument("--steps", default=STEPS, help="which steps to run (comma-separated)")
    args = p.parse_args(argv)
    mode = "cpu" if args.cpu else "gpu"
    for key, default in DEFAULTS[mode].items():
        if getattr(args, key) is None:
            env = _env(key)
            setattr(args, key, type(default)(env) if env is not None else default)
    if args.train_kernels not in TRAIN_KERNELS:
        p.error(f"--train-kernels (or DEVICE_CHECK_TRAIN_KERNELS) must be one of {TRAIN_KERNELS}")
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


# -- step 0: the GPU-marked kernel tests -----------------------------------------------------
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|deselected|xfailed|xpassed|errors?|warnings?)")
_PLURAL = {"error": "errors", "warning": "warnings"}
_TOOK = re.compile(r" in [\d.]+s")


def pytest_summary(text: str) -> tuple[str | None, dict[str, int]]:
    """pytest's closing summary line ('3 passed, 42 skipped in 2.81s') and its counts."""
    for raw in reversed(text.splitlines()):
        line = raw.strip().strip("=").strip()
        if line.startswith("no tests ran") or (_COUNT.search(line) and _TOOK.search(line)):
            counts: dict[str, int] = {}
            for n, word in _COUNT.findall(line):
                word = _PLURAL.get(word, word)
                counts[word] = counts.get(word, 0) + int(n)
            return line, counts
    return None, {}


def step_gpu_tests(args: argparse.Namespace, rep: Report, ctx: dict) -> None:
    """`pytest -m gpu` on the kernel test files, in a subprocess of this python from the
    repo root; on the CPU every GPU-marked test skips (recorded as such)."""
    files = [f for f in GPU_TEST_FILES if (REPO / f).is_file()]
    res: dict[str, Any] = {"files": files, "missing": [f for f in GPU_TEST_FILES if f not in files]}
    rep.doc["gpu_tests"] = res
    if not files:
        raise RuntimeError(f"none of {', '.join(GPU_TEST_FILES)} exists")
    if not _has("pytest"):
        raise RuntimeError("pytest is not installed for this python (carry its wheels in "
                           ".wheels/: see scripts/device_check.sh)")  # fmt: skip
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
    res["command"] = shlex.join(["python", *cmd[1:]])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if args.data_dir:
        env["ARRAYNET_DATA"] = str(args.data_dir)
    t = time.perf_counter()
    try:
        p = subprocess.run(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=args.tests_timeout,
        )  # fmt: skip
        text, rc = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.output or ""
        text, rc = out.decode(errors="replace") if isinstance(out, bytes) else out, None
        res["timed_out_after_s"] = args.tests_timeout
    summary, counts = pytest_summary(text)
    res.update(returncode=rc, seconds=round(time.perf_counter() - t, 2), summary=summary,
               passed=counts.get("passed", 0), failed=counts.get("failed", 0),
               skipped=counts.get("skipped", 0), errors=counts.get("errors", 0), counts=counts,
               tail=text.splitlines()[-40:])  # fmt: skip
    if args.mode == "cpu":
        res["note"] = "CPU mode: no CUDA device, so the gpu-marked tests skip"
    log(f"gpu tests: {summary or 'no summary line'} (exit {rc}, {res['seconds']:.1f}s)")
    if rc not in (0, 5):  # 5: no test collected
        why = f"timed out after {args.tests_timeout}s" if rc is None else f"exit {rc}"
        raise RuntimeError(f"gpu tests: {summary or 'no summary line'} ({why})")


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
    rep.doc["backend_kernels"] = type(b.kernels).__name__  # CudaKernels if ARRAYNET_CUDA_KERNELS=1
    rep.doc["tf32"] = bool(args.tf32)
    log(f"device: {rep.doc['device']}")


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# -- step 2: parity --------------------------------------------------------------------------
def parity_pairs(args: argparse.Namespace) -> list[tuple[str, str, str | None, bool]]:
    """(label, backend, device, own CUDA kernels) of the backends compared with numpy.

    On a GPU: CuPy (its default kernels, then arraynet's own CUDA kernels) and torch on
    CUDA (a missing torch is an error there). On the CPU: array-api-strict, cuda-on-cpu
    (the own CUDA kernels built for the host) and torch on the CPU when it is installed.
    """
    if args.mode == "gpu":
        pairs = [
            ("numpy-vs-cupy", "cupy", args.device, False),
            ("numpy-vs-cupy+cuda_kernels", "cupy", args.device, True),
            ("numpy-vs-torch@cuda", "torch", args.device, False),
        ]
    else:
        pairs = [
            ("numpy-vs-array-api-strict", "array-api-strict", None, False),
            ("numpy-vs-cuda-on-cpu", "cuda-on-cpu", None, True),
        ]
        if _has("torch"):
            pairs.append(("numpy-vs-torch@cpu", "torch", "cpu", False))
    return pairs


def kernels_env(name: str, own: bool) -> contextlib.AbstractContextManager:
    """For 'cupy': ARRAYNET_CUDA_KERNELS=1 (own) or unset (default kernels) while the block
    builds backends, restored afterwards; other backends pick their kernels themselves."""
    if name != "cupy":
        return contextlib.nullcontext()
    from bench_kernels import ENV, env_var

    return env_var(ENV, "1" if own else None)


def step_parity(args: argparse.Namespace, rep: Report, ctx: dict) -> None:
    from arraynet.parity import run_parity

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    parity: dict[str, dict] = {}
    worst: dict[str, float | None] = {}
    rep.doc["parity"] = parity
    rep.doc["parity_max_abs_diff"] = worst
    rep.doc["parity_ok"] = False
    rep.doc["parity_cuda_kernels_ok"] = False
    all_ok = own_ok = True
    for model in models:
        parity[model] = {}
        for label, name, device, own in parity_pairs(args):
            try:
                with kernels_env(name, own):
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
            row["cuda_kernels"] = own
            parity[model][label] = row
            all_ok &= bool(row["ok"])
            own_ok &= bool(row["ok"]) or not own
            diff = row["max_abs_diff"]
            shown = "error: " + row["error"] if "error" in row else f"max|diff| {diff:.3e}"
            log(f"parity {model} {label}: {'ok' if row['ok'] else 'FAIL'} ({shown})")
        diffs = [r["max_abs_diff"] for r in parity[model].values() if r["max_abs_diff"] is not None]
        worst[model] = max(diffs) if diffs else None
        rep.save()
    rep.doc["parity_ok"] = bool(all_ok and models)
    rep.doc["parity_cuda_kernels_ok"] = bool(own_ok and models)
    rep.doc["parity_tolerance"] = args.tol
    if not all_ok:
        raise RuntimeError("parity failed for " + ", ".join(
            f"{m} {k}" for m, d in parity.items() for k, r in d.items() if not r["ok"]
        ))  # fmt: skip


# -- step 2b: the own CUDA kernels, operation by operation -----------------------------------
def step_kernels(args: argparse.Namespace, rep: Report, ctx: dict) -> None:
    """scripts/bench_kernels.py: every hot operation with arraynet's own CUDA kernels
    against the backend's default kernels (CuPy's; on the CPU, cuda-on-cpu against the
    portable definitions), ms per call, default/cuda and max|diff|, in this process."""
    from bench_kernels import TOL, kernel_pair, run

    name = "cupy" if args.mode == "gpu" else "cuda-on-cpu"
    batches = [int(s) for s in str(args.kernel_batches).split(",") if s.strip()]
    ops = [w.strip() for w in args.kernel_ops.split(",") if w.strip()] if args.kernel_ops else None
    rows: list[dict] = []
    res: dict[str, Any] = {
        "backend": name, "batches": batches, "rounds": args.kernel_rounds,
        "reps": args.kernel_reps, "ops_filter": ops, "tf32": bool(args.tf32), "rows": rows,
        "parity_tolerance": f"max_abs_diff <= {TOL} * max(1, max_abs_ref)",
        "meaning": "ms per call (median over rounds); default_over_cuda > 1: arraynet's own "
        "CUDA kernel is faster than the default kernels"
        + ("" if args.mode == "gpu" else " (cuda-on-cpu: timings say nothing about a GPU)"),
    }  # fmt: skip
    rep.doc["kernels"] = res
    b, default, cuda = kernel_pair(name, args.device if args.mode == "gpu" else None,
                                   bool(args.tf32))  # fmt: skip
    res.update(default_kernels=type(default).__name__, cuda_kernels=repr(cuda))
    rep.save()

    def on_row(row: dict) -> None:
        rows.append(row)
        rep.save()

    run(b, default, cuda, batches, args.kernel_rounds, args.kernel_reps, ops, on_row=on_row)
    by_op: dict[str, list[float]] = {}
    for r in rows:
        if r.get("default_over_cuda"):
            by_op.setdefault(r["op"], []).append(r["default_over_cuda"])
    res["median_default_over_cuda"] = {k: round(statistics.median(v), 3) for k, v in by_op.items()}
    bad = [f"{r['op']} {r['shape_name']}" for r in rows if "error" in r or not r["ok"]]
    res["parity_ok"] = bool(rows) and not bad
    res["failed"] = bad
    log(f"kernels: median default/cuda per op {res['median_default_over_cuda']}")
    if bad:
        raise RuntimeError(f"own CUDA kernels: {len(bad)} of {len(rows)} cases failed or "
                           f"differ: {', '.join(bad[:8])}")  # fmt: skip


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
    log(f"bench {b.name} ({r.get('kernels')}) {args.bench_model} b{bs}: train "
        f"{r['train_img_per_s']} img/s, eval {r['eval_img_per_s']} img/s")  # fmt: skip
    return r


def _bench_row(args: argparse.Namespace, bench: dict, row: str, b: Any, bs: int) -> None:
    """bench[row]['b<bs>'] = arraynet's images/s on backend `b`, or the error under
    bench['errors']['<row> b<bs>']."""
    key = f"b{bs}"
    try:
        if b is None:
            raise RuntimeError("no arraynet backend (the device step failed)")
        bench[row][key] = _bench_arraynet(args, b, bs)
    except Exception as e:
        bench["errors"][f"{row} {key}"] = f"{type(e).__name__}: {e}"
        log(f"bench {row} {key} FAILED: {e}")


def _bench_ratios(bench: dict, key: str) -> None:
    """Each arraynet row's images/s over PyTorch eager's (`ratios`), and the own CUDA
    kernels' over the default kernels' (`cuda_kernels_over_default`)."""
    t = bench["torch"].get(key)
    a, own = bench["arraynet"].get(key), bench["arraynet_cuda_kernels"].get(key)
    if a and own:
        mine = bench["cuda_kernels_over_default"]
        mine[f"train_{key}"] = round(own["train_img_per_s"] / a["train_img_per_s"], 3)
        mine[f"eval_b{own['eval_batch_size']}"] = round(
            own["eval_img_per_s"] / a["eval_img_per_s"], 3
        )
    rows = (("", a), ("torch_backend_", bench["arraynet_torch"].get(key)),
            ("cuda_kernels_", own))  # fmt: skip
    for prefix, r in rows:
        if r and t:
            ratios = bench["ratios"]
            ratios[f"{prefix}train_{key}"] = round(r["train_img_per_s"] / t["train_img_per_s"], 3)
            ratios[f"{prefix}eval_b{t['eval_batch_size']}"] = round(
                r["eval_img_per_s"] / t["eval_img_per_s"], 3
            )


def step_bench(args: argparse.Namespace, rep: Report, ctx: dict) -> None:
    """arraynet on the check's backend (CuPy on a GPU), arraynet with its own CUDA kernels
    (CuPy with ARRAYNET_CUDA_KERNELS=1; CPU: cuda-on-cpu), arraynet's layers on torch
    tensors (torch's kernels behind arraynet's contract, same device) and PyTorch eager,
    per batch size, with the ratios of the arraynet rows to PyTorch's."""
    from bench_kernels import cuda_backend

    from arraynet.backends import get_backend

    b = ctx.get("backend")
    require_mnist(args)
    sizes = [int(s) for s in str(args.batch_sizes).split(",") if s.strip()]
    bench: dict[str, Any] = {
        "model": args.bench_model, "backend": b.name if b else None, "steps": args.bench_steps,
        "warmup": args.bench_warmup, "tf32": bool(args.tf32), "arraynet": {},
        "arraynet_cuda_kernels": {}, "arraynet_torch": {}, "torch": {}, "ratios": {},
        "cuda_kernels_over_default": {}, "errors": {},
    }  # fmt: skip
    rep.doc["bench"] = bench
    dev = args.device if args.mode == "gpu" else "cpu"
    cb = None
    try:
        own = "cupy" if args.mode == "gpu" else "cuda-on-cpu"
        cb = cuda_backend(own, args.device if own == "cupy" else None, bool(args.tf32))
        bench["cuda_kernels_backend"] = f"{cb.name} ({cb.kernels!r})"
    except Exception as e:
        bench["errors"]["arraynet_cuda_kernels"] = f"{type(e).__name__}: {e}"
    have_torch = _has("torch")
    tb = None
    if have_torch:
        try:
            tb = get_backend("torch", dev, tf32=bool(args.tf32))
        except Exception as e:
            bench["errors"]["arraynet_torch"] = f"{type(e).__name__}: {e}"
    for bs in sizes:
        key = f"b{bs}"
        _bench_row(args, bench, "arraynet", b, bs)
        rep.save()
        if cb is not None:
            _bench_row(args, bench, "arraynet_cuda_kernels", cb, bs)
            rep.save()
        if not have_torch:
            bench["errors"][f"torch {key}"] = "torch is not installed (skipped)"
            _bench_ratios(bench, key)
            continue
        if tb is not None:
            _bench_row(args, bench, "arraynet_torch", tb, bs)
            rep.save()
        try:
            t = torch_bench(args, bs)
            bench["torch"][key] = t
            log(f"bench torch@{t['device']} {args.bench_model} b{bs}: train "
                f"{t['train_img_per_s']} img/s, eval {t['eval_img_per_s']} img/s")  # fmt: skip
        except Exception as e:
            bench["errors"][f"torch {key}"] = f"{type(e).__name__}: {e}"
            log(f"bench torch b{bs} FAILED: {e}")
        _bench_ratios(bench, key)
        rep.save()
    bench["ratio_meaning"] = (
        f"{bench['backend']} images/s divided by PyTorch eager images/s; torch_backend_*: "
        "arraynet's layers on torch tensors (torch's kernels) divided by PyTorch eager; "
        "cuda_kernels_*: arraynet with its own CUDA kernels divided by PyTorch eager; "
        "cuda_kernels_over_default: own CUDA kernels' images/s over the default kernels'"
    )
    log(f"bench ratios ({bench['backend']}/torch): {bench['ratios']}; own CUDA kernels over "
        f"default: {bench['cuda_kernels_over_default']}")  # fmt: skip
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
    if args.train_kernels == "cuda":  # arraynet's own CUDA kernels
        from bench_kernels import cuda_backend

        gpu = args.mode == "gpu"
        b = cuda_backend("cupy" if gpu else "cuda-on-cpu", args.device if gpu else None,
                         bool(args.tf32))  # fmt: skip
    if b is None:
        raise RuntimeError("no backend (the device step failed)")
    require_mnist(args)
    recipe = recipe_for(args.train_model).with_overrides(epochs=args.epochs)
    out_dir = args.train_out or tempfile.mkdtemp(prefix="device_check_train_")
    train: dict[str, Any] = {
        "model": args.train_model, "backend": b.name, "train_kernels": args.train_kernels,
        "kernels": type(b.kernels).__name__, "epochs": args.epochs,
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
        "parity_cuda_kernels_ok": None,
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
    steps = {"gpu_tests": step_gpu_tests, "device": step_device, "parity": step_parity,
             "kernels": step_kernels, "bench": step_bench, "reductions": step_reductions,
             "rng": step_rng, "train": step_train}  # fmt: skip
    for name in args.steps:
        if name not in steps:
            doc["errors"][name] = f"unknown step {name!r}; choose from {', '.join(steps)}"
            continue
        rep.step(name, lambda fn=steps[name]: fn(args, rep, ctx))
    doc["status"] = "done"
    doc["total_seconds"] = round(time.perf_counter() - T0, 2)
    rep.save()
    tests = doc.get("gpu_tests") or {}
    kernels = doc.get("kernels") or {}
    summary = {
        "device": doc["device"],
        "gpu_tests": {k: tests.get(k) for k in ("returncode", "passed", "failed", "skipped")},
        "parity_ok": doc["parity_ok"],
        "parity_cuda_kernels_ok": doc["parity_cuda_kernels_ok"],
        "kernels_parity_ok": kernels.get("parity_ok"),
        "kernels_default_over_cuda": kernels.get("median_default_over_cuda"),
        "ratios": (doc.get("bench") or {}).get("ratios"),
        "cuda_kernels_over_default": (doc.get("bench") or {}).get("cuda_kernels_over_default"),
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
