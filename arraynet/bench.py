"""Throughput benchmark: training steps (forward, backward, optimizer) and evaluation."""

from __future__ import annotations

import platform
import statistics
import time
from typing import Any

from arraynet import __version__
from arraynet.augment import augment_batch
from arraynet.backends import Backend
from arraynet.data import load_mnist, one_hot, to_float
from arraynet.optimizers import make_optimizer
from arraynet.recipes import recipe_for
from arraynet.zoo import build_layout


def _median_rate(fn: Any, batch: int, steps: int, warmup: int, backend: Backend) -> float:
    for _ in range(warmup):
        fn()
    backend.synchronize()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        backend.synchronize()
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def run_bench(
    model: str,
    backend: Backend,
    *,
    batch_size: int = 16,
    steps: int = 100,
    warmup: int = 10,
    eval_batch_size: int = 500,
    seed: int = 0,
    data_dir: str | None = None,
    augment: bool = True,
) -> dict:
    """Median images/s of training (augmentation off, then on) and of evaluation."""
    recipe = recipe_for(model)
    mnist = load_mnist(data_dir, quiet=True)
    n_pool = max(batch_size * (steps + warmup), eval_batch_size)
    n_pool = min(n_pool, mnist.train_images.shape[0])
    xs = to_float(mnist.train_images[:n_pool], backend)
    ys = backend.from_host(one_hot(mnist.train_labels[:n_pool]), dtype=backend.dtype("float32"))
    net = build_layout(model).build(backend, seed=seed)
    opt = make_optimizer(recipe.optimizer)
    rng = net.rng
    pos = [0]

    def batch() -> tuple[Any, Any]:
        i = pos[0]
        if i + batch_size > n_pool:
            i = 0
        pos[0] = i + batch_size
        return xs[i : i + batch_size, ...], ys[i : i + batch_size, ...]

    def train_step(aug: bool = False) -> None:
        x, y = batch()
        if aug:
            x = augment_batch(x, rng)
        net.loss_and_grads(x, y, recipe.loss)
        net.set_parameters(opt.step(net.parameters(), net.gradients(), recipe.lr, backend))

    result: dict[str, Any] = {
        "model": model,
        "backend": backend.name,
        "device": backend.device_name(),
        "threads": backend.threads,
        "batch_size": batch_size,
        "steps": steps,
        "parameters": net.num_parameters(),
    }
    result["train_img_per_s"] = round(
        _median_rate(train_step, batch_size, steps, warmup, backend), 1
    )
    if augment:
        rate = _median_rate(lambda: train_step(True), batch_size, steps, warmup, backend)
        result["train_aug_img_per_s"] = round(rate, 1)
    xe = xs[:eval_batch_size, ...]
    eval_steps = max(3, min(20, steps // 5))
    rate = _median_rate(lambda: net.forward(xe, False), xe.shape[0], eval_steps, 2, backend)
    result["eval_img_per_s"] = round(rate, 1)
    result["eval_batch_size"] = int(xe.shape[0])
    result["versions"] = versions()
    result["machine"] = {"platform": platform.platform(), "processor": platform.machine()}
    return result


def versions() -> dict:
    """Versions of the libraries that matter for speed."""
    import contextlib
    import importlib.metadata as md

    out = {"arraynet": __version__, "python": platform.python_version()}
    for pkg in ("numpy", "array-api-compat", "torch", "cupy-cuda12x", "cupy-cuda13x"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out
