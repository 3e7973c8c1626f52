"""Throughput benchmark: training steps (forward, backward, optimizer) and evaluation."""

from __future__ import annotations

import platform
import statistics
import time
from typing import Any

from arraynet import __version__
from arraynet.augment import augment_batch
from arraynet.backends import Backend
from arraynet.optimizers import make_optimizer
from arraynet.train.step import train_step


def median_seconds(fn: Any, steps: int, warmup: int, backend: Backend) -> float:
    """Median wall time of `fn()` over `steps` calls after `warmup` ones, each waited for
    on the device."""
    for _ in range(warmup):
        fn()
    backend.synchronize()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        backend.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _median_rate(fn: Any, batch: int, steps: int, warmup: int, backend: Backend) -> float:
    return batch / median_seconds(fn, steps, warmup, backend)


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
    data: str | None = None,
) -> dict:
    """Median images/s of training (augmentation off, then on) and of evaluation, on
    batches of MNIST (or of the dataset `data`)."""
    from arraynet.jobs import fit_data, load_data, make_dataset, shape_from_data
    from arraynet.zoo.layouts import model_factory

    name, make, recipe = model_factory(model)
    ds = load_data(data, data_dir, quiet=True)
    net = make()
    shape_from_data(net, ds)
    net.build(backend, seed=seed)
    classes = fit_data(net, ds)
    n_pool = max(batch_size * (steps + warmup), eval_batch_size)
    n_pool = min(n_pool, ds.x_train.shape[0])
    pool = make_dataset(ds.x_train[:n_pool], ds.y_train[:n_pool], backend, classes)
    xs, ys = pool.x, pool.y
    opt = make_optimizer(recipe.optimizer)
    if backend.default_rng_kind() != "host":  # as training draws there (device on GPUs)
        net.set_rng(backend.rng(seed + 1, host=False))
    rng = net.rng
    pos = [0]

    def batch() -> tuple[Any, Any]:
        i = pos[0]
        if i + batch_size > n_pool:
            i = 0
        pos[0] = i + batch_size
        return xs[i : i + batch_size, ...], ys[i : i + batch_size, ...]

    def one_step(aug: bool = False) -> None:
        x, y = batch()
        if aug:
            x = augment_batch(x, rng)
        train_step(net, opt, x, y, lr=recipe.lr, loss=recipe.loss)

    result: dict[str, Any] = {
        "model": name,
        "backend": backend.name,
        "device": backend.device_name(),
        "threads": backend.threads,
        "tf32": backend.tf32,
        "kernels": type(backend.kernels).__name__,
        "batch_size": batch_size,
        "steps": steps,
        "parameters": net.num_parameters(),
    }
    result["train_img_per_s"] = round(_median_rate(one_step, batch_size, steps, warmup, backend), 1)
    if augment:
        rate = _median_rate(lambda: one_step(True), batch_size, steps, warmup, backend)
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
