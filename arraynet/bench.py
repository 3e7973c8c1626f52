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
from arraynet.train.recipe import Recipe
from arraynet.train.step import GradHook, train_step


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


class TimedSteps:
    """Training steps as a run takes them (the recipe's optimizer, rate and loss through
    `train_step`, the one step), on consecutive batches of a device pool: what `arraynet
    bench` and the benchmark scripts time. `rank`/`ranks`: a data-parallel rank's share
    (each global batch is `batch_size * ranks` samples; this rank takes its slice)."""

    def __init__(
        self,
        net: Any,
        recipe: Recipe,
        x: Any,
        y: Any,
        batch_size: int,
        *,
        grad_hook: GradHook | None = None,
        rank: int = 0,
        ranks: int = 1,
    ) -> None:
        self.net, self.recipe, self.x, self.y = net, recipe, x, y
        self.batch_size, self.rank, self.ranks = batch_size, rank, ranks
        self.grad_hook = grad_hook
        self.opt = make_optimizer(recipe.optimizer)
        self.step_index = 0

    def batch(self) -> tuple[Any, Any]:
        """The next batch (from the pool's start again when it runs out)."""
        size, span = self.batch_size, self.batch_size * self.ranks
        n = int(self.x.shape[0])
        lo = self.step_index * span
        if lo + span > n:
            self.step_index, lo = 0, 0
        self.step_index += 1
        lo += self.rank * size
        return self.x[lo : lo + size, ...], self.y[lo : lo + size, ...]

    def __call__(self, augment: bool = False) -> Any:
        """One step; returns the batch loss (a device scalar)."""
        x, y = self.batch()
        if augment:
            x = augment_batch(x, self.net.rng)
        r = self.recipe
        return train_step(self.net, self.opt, x, y, lr=r.lr, loss=r.loss, grad_hook=self.grad_hook)


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
    from arraynet.train.inputs import fit_data, load_data, make_dataset, shape_from_data
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
    if backend.default_rng_kind() != "host":  # as training draws there (device on GPUs)
        net.set_rng(backend.rng(seed + 1, host=False))
    one_step = TimedSteps(net, recipe, pool.x, pool.y, batch_size)

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
    xe = pool.x[:eval_batch_size, ...]
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
