"""Data-parallel training over a communicator: one model trained by N ranks.

Every rank holds the whole model and the whole training set. Rank 0's initial weights are
broadcast; each epoch every rank takes its 1/N share of each global batch of the same
shuffled order (`arraynet.parallel.sharding`); after every backward the gradients are
all-reduced in one flat buffer and averaged (`grad_hook`), so every rank applies the same
update and the weights stay bitwise equal. Dropout and augmentation draw from per-rank
streams derived from the seed (`stream_seed`; `arraynet.train.loop.Training.use_rng` makes
them, host or device generators alike). Batch norm uses per-rank statistics (its running statistics
are averaged over the ranks at the end of every epoch, before anything is saved), or with
`sync_bn` the statistics of the global batch. The trainer asks `is_root` before it prints
or writes.

The seam with the training loop (`arraynet.train.loop`) is small: `batches` (the epoch's
local batches), `grad_hook` (composed into `train_step`'s gradient hook), `step_lr` (linear
scaling), `sum_floats` (epoch totals), `end_epoch` (buffers); the run folder
(`arraynet.train.runfolder`) uses `gather_json` (every rank's RNG state) and `is_root`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from arraynet.backends import Backend
from arraynet.layers.batchnorm import BatchNorm
from arraynet.network import Network
from arraynet.parallel.comm import Communicator, rank_seed
from arraynet.parallel.sharding import epoch_batches

Array = Any


@dataclass(frozen=True)
class LinearScaling:
    """Goyal et al. 2017: the learning rate times `factor` (global batch over the recipe's
    reference batch), reached by a linear warm-up over `warmup_epochs` from the unscaled rate,
    step by step."""

    factor: float
    warmup_epochs: float = 5.0

    def __call__(self, lr: float, epoch: int, i: int, nb: int) -> float:
        if self.warmup_epochs <= 0:
            return lr * self.factor
        progress = min(1.0, (epoch + i / max(nb, 1)) / self.warmup_epochs)
        return lr * (1.0 + (self.factor - 1.0) * progress)

    def to_dict(self) -> dict:
        return {"factor": self.factor, "warmup_epochs": self.warmup_epochs}


class DataParallel:
    """The data-parallel policy for one run on `comm` (a single process works too)."""

    def __init__(
        self,
        comm: Communicator,
        backend: Backend,
        *,
        sync_bn: bool = False,
        lr_scaling: LinearScaling | None = None,
    ) -> None:
        if comm.name == "nccl" and backend.name != "cupy":
            raise ValueError(f"--comm nccl needs --backend cupy, not {backend.name}")
        self.comm = comm
        self.backend = backend
        self.sync_bn = sync_bn
        self.lr_scaling = lr_scaling

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def size(self) -> int:
        return self.comm.size

    @property
    def is_root(self) -> bool:
        return self.comm.is_root

    def check_batch(self, batch_size: int) -> None:
        """The global batch must split evenly over the ranks (one-line ValueError)."""
        if batch_size % self.size:
            raise ValueError(
                f"--batch-size {batch_size} (the global batch) is not divisible by the "
                f"{self.size} ranks; pick a multiple of {self.size}"
            )

    def setup(self, model: Network) -> None:
        """Rank 0's parameters and buffers on every rank, and (with sync_bn) batch norm over
        the global batch."""
        b = self.backend
        model.load_state_dict(self.comm.broadcast_arrays(model.state_dict(), b))
        for layer in model.layers:
            if isinstance(layer, BatchNorm):
                layer.sync = self._sum if (self.sync_bn and self.size > 1) else None

    def stream_seed(self, seed: int) -> int:
        """This rank's seed for the random stream `seed` (`seed` itself on one rank)."""
        return rank_seed(seed, self.rank, self.size)

    def _sum(self, x: Array) -> Array:
        return self.comm.allreduce_sum(x, self.backend)

    # -- the training loop's seam ---------------------------------------------------------
    def batches(self, order: Any, batch_size: int) -> tuple[Any, list[tuple[int, int]]]:
        """This rank's indices (host) and its batches' (start, stop) in them."""
        self.check_batch(batch_size)
        return epoch_batches(order, batch_size, self.rank, self.size)

    def grad_hook(self, grads: dict[str, Array]) -> dict[str, Array]:
        """The mean of every rank's gradients (one all-reduce of one flat buffer)."""
        if self.size == 1:
            return grads
        return self.comm.allreduce_mean(grads, self.backend)

    def step_lr(self, lr: float, epoch: int, i: int, nb: int) -> float:
        """The rate for step i of nb in `epoch` (linear scaling, when on)."""
        return self.lr_scaling(lr, epoch, i, nb) if self.lr_scaling else lr

    def sum_floats(self, values: list[float]) -> list[float]:
        return self.comm.sum_floats(values)

    def end_epoch(self, model: Network) -> None:
        """Per-rank batch norm: average the running statistics, so that every rank holds
        (and rank 0 saves) the same ones. Synchronised batch norm's are equal already."""
        if self.size == 1 or self.sync_bn:
            return
        buffers = {
            f"{i}.{k}": v for i, layer in enumerate(model.layers) for k, v in layer.buffers.items()
        }
        if buffers:
            state = model.state_dict()
            state.update(self.comm.allreduce_mean(buffers, self.backend))
            model.load_state_dict(state)

    def gather_json(self, obj: Any) -> list | None:
        return self.comm.gather_json(obj)

    def bcast_json(self, obj: Any) -> Any:
        return self.comm.bcast_json(obj)

    def describe(self) -> dict:
        d = {**self.comm.describe(), "sync_bn": self.sync_bn}
        d.pop("rank", None)
        if self.lr_scaling:
            d["lr_scaling"] = self.lr_scaling.to_dict()
        return d


def check_resume_ranks(path: Any, saved_meta: dict, size: int) -> None:
    """A run resumes on as many ranks as it was begun with (one-line ValueError)."""
    was = saved_meta.get("ranks", 1)
    if was != size:
        raise ValueError(
            f"{path}: the run was trained on {was} rank(s), not {size}; resume it with as "
            f"many (mpiexec -n {was})"
        )


def lr_scaling_for(batch_size: int, reference_batch: int, warmup_epochs: float) -> LinearScaling:
    """Linear scaling from the recipe's reference batch to the global batch."""
    if warmup_epochs < 0 or not math.isfinite(warmup_epochs):
        raise ValueError(f"--lr-warmup-epochs wants a number >= 0, not {warmup_epochs}")
    return LinearScaling(batch_size / reference_batch, warmup_epochs)
