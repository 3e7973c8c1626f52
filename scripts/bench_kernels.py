"""arraynet's own CUDA kernels (`CudaKernels`) against the backend's default kernels, one
operation at a time, on the hot shapes of the zoo, timed alternately in one process.

    uv run python scripts/bench_kernels.py --backend cupy            # a GPU: CupyKernels
    uv run python scripts/bench_kernels.py --backend cuda-on-cpu     # CPU: Kernels(), batch 2
        [--batches 64,512] [--rounds 5] [--reps 10] [--ops conv,adam] [--tf32 1]
        [--json benchmarks/kernels-h100.json]

On `cupy` the default kernels are the CuPy backend's (`CupyKernels`, the portable
definitions on CuPy arrays; ARRAYNET_CUDA_KERNELS is ignored here) and the own ones
`CudaKernels(CupyRuntime(cupy))`; on `cuda-on-cpu` the default kernels are the portable
definitions (`Kernels()`) on NumPy arrays and the own ones the same CUDA source built for
the host (`CpuRuntime`: each launch runs its threads one after another, so its timings say
nothing about a GPU; the row's parity is the point there).

Operations (float32, NHWC): conv2d forward (training) and backward for every convolution
of m12 and m14, batch norm forward/backward/inference on (B,28,28,32) and (B,14,14,64),
2x2 max pooling forward/backward on (B,28,28,32) and (B,14,14,64), softmax cross-entropy
(label smoothing 0.1) on (B,10), column_sum on (B*28*28, 32) and one Adam step over m14's
parameters. Each variant gets its own copies of the same inputs; the first call of each
(which also compiles the CUDA source: NVRTC, a few seconds) gives the parity, max|diff|
over every output against the default kernels', then each round times `--reps` calls of
each variant in turn (synchronising the device around each call) and the median over the
rounds is reported: ms per call, and default/cuda (above 1: the own kernel is faster).
device_check.py's `kernels` step imports `kernel_pair`, `cases` and `measure` from here.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from arraynet.backends import get_backend  # noqa: E402
from arraynet.backends.kernels import Kernels, Saved  # noqa: E402
from arraynet.bench import median_seconds  # noqa: E402

ENV = "ARRAYNET_CUDA_KERNELS"
TOL = 1e-4  # parity: max|diff| <= TOL * max(1, max|reference|)
# (name, input (H, W, C), filters, kernel side, stride, padding): every convolution of m12
# and m14 ('same' is TensorFlow's; m14's stride-2 layers take 28 -> 14 and 14 -> 7)
CONVS = [
    ("m12 conv1", (28, 28, 1), 16, 5, 1, "same"),
    ("m12 conv2", (28, 28, 16), 32, 5, 1, "same"),
    ("m12 conv3", (14, 14, 32), 48, 5, 1, "same"),
    ("m12 conv4", (14, 14, 48), 64, 5, 1, "same"),
    ("m14 conv1", (28, 28, 1), 32, 3, 1, "same"),
    ("m14 conv2", (28, 28, 32), 32, 3, 1, "same"),
    ("m14 conv3", (28, 28, 32), 32, 5, 2, "same"),
    ("m14 conv4", (14, 14, 32), 64, 3, 1, "same"),
    ("m14 conv5", (14, 14, 64), 64, 3, 1, "same"),
    ("m14 conv6", (14, 14, 64), 64, 5, 2, "same"),
    ("m14 conv7", (7, 7, 64), 128, 4, 1, "valid"),
]
NORMS = [("bn 28x28x32", (28, 28, 32)), ("bn 14x14x64", (14, 14, 64))]
POOLS = [("pool 28x28x32", (28, 28, 32)), ("pool 14x14x64", (14, 14, 64))]


@contextlib.contextmanager
def env_var(name: str, value: str | None) -> Iterator[None]:
    """`name` set to `value` (None: unset) inside the block, restored afterwards."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def cuda_backend(name: str, device: str | None = None, tf32: bool = False) -> Any:
    """The backend `name` running arraynet's own CUDA kernels: 'cupy' built with
    ARRAYNET_CUDA_KERNELS=1, 'cuda-on-cpu' as it is."""
    if name == "cupy":
        with env_var(ENV, "1"):
            b = get_backend("cupy", device, tf32=tf32)
    elif name == "cuda-on-cpu":
        b = get_backend("cuda-on-cpu", tf32=tf32)
    else:
        raise ValueError(f"no own CUDA kernels on backend {name!r} (cupy or cuda-on-cpu)")
    if type(b.kernels).__name__ != "CudaKernels":
        raise RuntimeError(f"{name}: asked for CudaKernels, got {type(b.kernels).__name__}")
    return b


def kernel_pair(name: str, device: str | None = None, tf32: bool = False) -> tuple:
    """(backend, default kernels, own CUDA kernels) for 'cupy' or 'cuda-on-cpu'."""
    if name == "cupy":
        with env_var(ENV, None):  # the default kernels whatever the environment says
            b = get_backend("cupy", device, tf32=tf32)
        from arraynet.backends.cuda_kernels import CudaKernels, CupyRuntime

        return b, b.kernels, CudaKernels(CupyRuntime(b.cupy))
    b = cuda_backend(name, device, tf32)
    return b, Kernels(), b.kernels


# -- the cases -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One operation on one shape. `setup(backend, kernels)` makes fresh device inputs
    (the same numbers on every call) and returns the call to time, which returns the
    operation's outputs."""

    op: str
    name: str
    batch: int
    shape: tuple[int, ...]
    setup: Callable[[Any, Any], Callable[[], Any]]


def _host(seed: int, *shapes: tuple[int, ...], scale: float = 1.0) -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    return [(g.standard_normal(s) * scale).astype(np.float32) for s in shapes]


def _dev(b: Any, *arrays: np.ndarray) -> list[Any]:
    return [b.from_host(a, b.dtype("float32")) for a in arrays]


def _pad(h: int, w: int, k: int, stride: int, padding: str) -> tuple[int, int, int, int]:
    from arraynet.layers.conv import same_padding

    if padding == "valid":
        return (0, 0, 0, 0)
    return (*same_padding(h, k, stride), *same_padding(w, k, stride))


def conv_cases(batch: int) -> list[Case]:
    out = []
    for name, (h, w, c), f, k, stride, padding in CONVS:
        pad = _pad(h, w, k, stride, padding)
        ho, wo = (h + pad[0] + pad[1] - k) // stride + 1, (w + pad[2] + pad[3] - k) // stride + 1
        host = _host(1, (batch, h, w, c), (k, k, c, f), (f,), (batch, ho, wo, f))
        host[1] *= np.float32(math.sqrt(2.0 / (k * k * c)))

        def forward(b, kern, host=host, pad=pad, stride=stride):
            x, kernel, bias, _ = _dev(b, *host)
            return lambda: kern.conv2d_forward(x, kernel, bias, pad, stride, True)

        def backward(b, kern, host=host, pad=pad, stride=stride, need_dx=c > 1):
            x, kernel, bias, dy = _dev(b, *host)
            _, saved = kern.conv2d_forward(x, kernel, bias, pad, stride, True)
            return lambda: kern.conv2d_backward(saved, dy, kernel, pad, stride, need_dx)

        label = f"{name} {k}x{k}/{stride} {c}->{f} b{batch}"
        out.append(Case("conv2d_forward", label, batch, (batch, h, w, c), forward))
        out.append(Case("conv2d_backward", label, batch, (batch, h, w, c), backward))
    return out


def norm_cases(batch: int) -> list[Case]:
    out = []
    for name, hwc in NORMS:
        shape = (batch, *hwc)
        c = hwc[-1]
        host = _host(2, shape, shape, (c,), (c,), (c,))
        host[2] += 1.0  # gamma near 1
        var = np.abs(host[4]) + np.float32(0.5)  # a running variance (positive)

        def forward(b, kern, host=host, var=var):
            x, _, gamma, beta, mean = _dev(b, *host)
            (v,) = _dev(b, var)
            return lambda: kern.batchnorm_forward(x, gamma, beta, mean, v, 0.99, 1e-3)

        def backward(b, kern, host=host, var=var):
            x, dy, gamma, beta, mean = _dev(b, *host)
            (v,) = _dev(b, var)
            _, saved, _, _ = kern.batchnorm_forward(x, gamma, beta, mean, v, 0.99, 1e-3)
            return lambda: kern.batchnorm_backward(saved, dy, gamma)

        def inference(b, kern, host=host, var=var):
            x, _, gamma, beta, mean = _dev(b, *host)
            (v,) = _dev(b, var)
            return lambda: kern.batchnorm_inference(x, mean, v, gamma, beta, 1e-3)

        label = f"{name} b{batch}"
        for op, fn in (("batchnorm_forward", forward), ("batchnorm_backward", backward),
                       ("batchnorm_inference", inference)):  # fmt: skip
            out.append(Case(op, label, batch, shape, fn))
    return out


def pool_cases(batch: int) -> list[Case]:
    out = []
    for name, (h, w, c) in POOLS:
        shape = (batch, h, w, c)
        host = _host(3, shape, (batch, h // 2, w // 2, c))

        def forward(b, kern, host=host):
            x, _ = _dev(b, *host)
            return lambda: kern.maxpool_forward(x, 2, True)

        def backward(b, kern, host=host):
            x, dy = _dev(b, *host)
            _, saved = kern.maxpool_forward(x, 2, True)
            return lambda: kern.maxpool_backward(saved, dy)

        out.append(Case("maxpool_forward", f"{name} b{batch}", batch, shape, forward))
        out.append(Case("maxpool_backward", f"{name} b{batch}", batch, shape, backward))
    return out


def small_cases(batch: int) -> list[Case]:
    """softmax cross-entropy on (B, 10) and column_sum on (B*28*28, 32)."""
    logits = _host(4, (batch, 10), scale=3.0)[0]
    target = np.eye(10, dtype=np.float32)[np.arange(batch) % 10]
    (cols,) = _host(5, (batch * 28 * 28, 32))

    def xent(b, kern):
        z, t = _dev(b, logits, target)
        return lambda: kern.softmax_cross_entropy(z, t, 0.1)

    def colsum(b, kern):
        (x,) = _dev(b, cols)
        return lambda: kern.column_sum(x)

    return [
        Case("softmax_cross_entropy", f"logits b{batch}", batch, (batch, 10), xent),
        Case("column_sum", f"({batch}*28*28, 32)", batch, cols.shape, colsum),
    ]


def param_shapes(model: str = "m14") -> list[tuple[int, ...]]:
    """The shapes of a zoo model's trainable parameters, in order."""
    from arraynet.zoo.layouts import model_factory

    _, make, _ = model_factory(model)
    net = make().build(get_backend("numpy"), seed=0)
    return [tuple(v.shape) for v in net.parameters().values()]


def adam_case(model: str = "m14") -> Case:
    """One Adam step over every parameter of `model` (steps run in place on the own
    kernels: the parity is the first step's)."""
    shapes = param_shapes(model)
    p, g, m, v = (_host(6 + i, *shapes, scale=0.1) for i in range(4))
    v = [a * a for a in v]
    scalars = np.array([1e-3 / (1 - 0.9), 1 / math.sqrt(1 - 0.999)], dtype=np.float32)

    def adam(b, kern):
        ps, gs, ms, vs = (_dev(b, *group) for group in (p, g, m, v))
        (sc,) = _dev(b, scalars)
        return lambda: kern.adam_update(ps, gs, ms, vs, sc, 0.9, 0.999, 1e-7)

    total = sum(math.prod(s) for s in shapes)
    return Case("adam_update", f"{model} {len(shapes)} params", 0, (total,), adam)


def cases(batches: list[int], ops: list[str] | None = None) -> list[Case]:
    """Every case at every batch size (Adam once); `ops`: keep the cases whose operation
    or name contains one of these words."""
    out = [c for bs in batches for f in (conv_cases, norm_cases, pool_cases, small_cases)
           for c in f(bs)]  # fmt: skip
    out.append(adam_case())
    if ops:
        out = [c for c in out if any(w in c.op or w in c.name for w in ops)]
    return out


# -- measuring -------------------------------------------------------------------------------
def _arrays(out: Any) -> list[Any]:
    """The arrays among an operation's outputs (what a forward saves is left out)."""
    if out is None or isinstance(out, Saved):
        return []
    if isinstance(out, tuple | list):
        return [a for o in out for a in _arrays(o)]
    return [out]


def _parity(b: Any, ref: Any, got: Any) -> tuple[float, float]:
    """(max|got - ref|, max|ref|) over every output array."""
    diff = peak = 0.0
    ra, ga = _arrays(ref), _arrays(got)
    if len(ra) != len(ga):
        raise RuntimeError(f"{len(ga)} outputs against the default kernels' {len(ra)}")
    for r, g in zip(ra, ga, strict=True):
        r64 = np.asarray(b.to_host(r), dtype=np.float64)
        g64 = np.asarray(b.to_host(g), dtype=np.float64)
        if r64.shape != g64.shape:
            raise RuntimeError(f"output shape {g64.shape} against {r64.shape}")
        if r64.size:
            diff = max(diff, float(np.max(np.abs(g64 - r64))))
            peak = max(peak, float(np.max(np.abs(r64))))
    return diff, peak


def measure(b: Any, default: Any, cuda: Any, case: Case, rounds: int, reps: int) -> dict:
    """Parity (first calls) and median ms per call of both kernel sets on one case."""
    calls = {"default": case.setup(b, default), "cuda": case.setup(b, cuda)}
    first = {k: fn() for k, fn in calls.items()}  # (compiles the CUDA source the first time)
    diff, peak = _parity(b, first["default"], first["cuda"])
    del first
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):  # alternately, so both see the same machine state
        for k, fn in calls.items():
            times[k].append(median_seconds(fn, reps, 1, b) * 1e3)
    ms = {k: round(statistics.median(v), 4) for k, v in times.items()}
    return {
        "ms": ms,
        "default_over_cuda": round(ms["default"] / ms["cuda"], 3) if ms["cuda"] > 0 else None,
        "max_abs_diff": diff,
        "max_abs_ref": peak,
        "ok": bool(math.isfinite(diff) and diff <= TOL * max(1.0, peak)),
    }


def row_of(case: Case) -> dict:
    return {"op": case.op, "shape_name": case.name, "batch": case.batch, "shape": list(case.shape)}


def line(row: dict) -> str:
    """One printed table row."""
    head = f"{row['op']:<21} {row['shape_name']:<34}"
    if "error" in row:
        return f"{head} ERROR {row['error']}"
    ms = row["ms"]
    return (f"{head} {ms['default']:>10.4f} {ms['cuda']:>10.4f} {row['default_over_cuda']:>7.2f}x "
            f"{row['max_abs_diff']:>10.3g}{'' if row['ok'] else '  PARITY FAIL'}")  # fmt: skip


HEADER = (f"{'op':<21} {'shape':<34} {'default ms':>10} {'cuda ms':>10} {'def/cuda':>8} "
          f"{'max|diff|':>10}")  # fmt: skip


def run(
    b: Any,
    default: Any,
    cuda: Any,
    batches: list[int],
    rounds: int,
    reps: int,
    ops: list[str] | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Every case, one row each (a failing case is a row with its error); prints the table."""
    print(f"{b.name}: default {type(default).__name__} against {cuda!r}", flush=True)
    print(HEADER, flush=True)
    rows = []
    for case in cases(batches, ops):
        row = row_of(case)
        try:
            row.update(measure(b, default, cuda, case, rounds, reps))
        except Exception as e:  # one failing kernel must not hide the others
            row["error"] = f"{type(e).__name__}: {e}"[:500]
        rows.append(row)
        print(line(row), flush=True)
        if on_row is not None:
            on_row(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="cupy", choices=("cupy", "cuda-on-cpu"))
    ap.add_argument("--device", default=None, help="CuPy's device (e.g. cuda:0)")
    ap.add_argument("--batches", default=None, help="batch sizes (default 64,512; CPU: 2)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5)")
    ap.add_argument("--reps", type=int, default=None, help="timed calls per round (default 10)")
    ap.add_argument("--ops", default=None, help="comma-separated words: keep matching cases")
    ap.add_argument("--tf32", type=int, choices=(0, 1), default=0, help="products in TF32")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    gpu = args.backend == "cupy"
    batches = [int(s) for s in (args.batches or ("64,512" if gpu else "2")).split(",") if s]
    rounds = args.rounds or (5 if gpu else 1)
    reps = args.reps or (10 if gpu else 2)
    ops = [w.strip() for w in args.ops.split(",") if w.strip()] if args.ops else None
    b, default, cuda = kernel_pair(args.backend, args.device, bool(args.tf32))
    rows = run(b, default, cuda, batches, rounds, reps, ops)
    from arraynet.bench import versions

    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python scripts/bench_kernels.py " + " ".join(sys.argv[1:]),
        "backend": b.name, "device": b.device_name(), "default_kernels": type(default).__name__,
        "cuda_kernels": repr(cuda), "batches": batches, "rounds": rounds, "reps": reps,
        "tf32": bool(args.tf32), "versions": versions(), "rows": rows,
    }  # fmt: skip
    if args.json:
        from arraynet.io import atomic_write_json

        atomic_write_json(args.json, result)
    bad = [r for r in rows if "error" in r or not r["ok"]]
    print(f"{len(rows)} cases, {len(bad)} with an error or a parity failure", flush=True)
    return 0 if rows and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
