"""The training loop: a small loop over epochs and mini-batches; everything else (early
stopping, weight averaging, checkpoints, progress, logs) is a callback.

`Training` holds what the loop and its callbacks share (model, optimizer, data, random
streams, the run's progress); `fit_loop` runs it. Each batch goes through
`arraynet.train.step.train_step`, the one training step of the project. A data-parallel run
(`parallel`, see `arraynet.parallel.data_parallel`) takes its rank's share of every batch, averages
the gradients over the ranks in the step's gradient hook and all-reduces the epoch totals.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from array_api_compat import array_namespace

from arraynet.augment import maybe_augment
from arraynet.backends import HostRNG
from arraynet.backends.portable import clip
from arraynet.files import one_line
from arraynet.network import Network
from arraynet.optimizers import make_optimizer
from arraynet.parallel.sharding import epoch_batches
from arraynet.schedules import learning_rate
from arraynet.train.recipe import Recipe
from arraynet.train.step import GradHook, WeightEMA, train_step

if TYPE_CHECKING:
    from arraynet.parallel.data_parallel import DataParallel

Array = Any
RNG_KINDS = ("host", "device")


class TrainingDiverged(ValueError):
    """The loss or the weights stopped being finite numbers: the run ends (one line),
    and the run folder keeps its last good checkpoint."""


class EpochSavedError(RuntimeError):
    """A callback failed after the epoch's checkpoint was written: the epoch is kept
    (--resume continues it); the message says what failed."""


@dataclass
class Dataset:
    """The training loop's device copy of one split of a `Data` (`arraynet.data.container`):
    images (N, H, W, C) or vectors (N, D) and target rows (N, K) on a backend's device,
    plus the integer labels on the host for scoring."""

    x: Array
    y: Array
    labels: Any

    def __len__(self) -> int:
        return int(self.x.shape[0])


def evaluate(
    model: Network, data: Dataset, batch_size: int = 500, parallel: DataParallel | None = None
) -> dict:
    """Error rate and mean loss of `model` in eval mode on `data` (cross-entropy for a
    softmax output, else mean squared error over all outputs, as the MSE loss). With
    `parallel`, each rank scores every N-th batch and the sums are all-reduced.

    Each batch makes one device-to-host copy: its predicted classes and its summed loss,
    packed into one array (class indices are exact in any float dtype up to 2**24)."""
    b = model.backend
    xp = array_namespace(data.x)
    correct = 0
    loss_sum = 0.0
    n = len(data)
    rank, ranks = (parallel.rank, parallel.size) if parallel is not None else (0, 1)
    for i in range(rank * batch_size, n, batch_size * ranks):
        j = min(i + batch_size, n)  # (the standard leaves slices past the end undefined)
        out = model.forward(data.x[i:j, ...], False)
        if model.fused_softmax:
            p = clip(out, 1e-7, 1.0)
            batch_loss = -xp.sum(data.y[i:j, ...] * xp.log(p))
        else:
            d = out - data.y[i:j, ...]
            batch_loss = xp.sum(d * d)
        pred = xp.astype(xp.argmax(out, axis=1), out.dtype)
        packed = b.to_host(xp.concat([pred, xp.reshape(batch_loss, (1,))]))
        correct += int((packed[:-1].astype("int64") == data.labels[i:j]).sum())
        if model.fused_softmax:
            loss_sum += float(packed[-1])
        else:
            loss_sum += float(packed[-1]) / out.shape[1]
    if ranks > 1:
        total_correct, loss_sum = parallel.sum_floats([correct, loss_sum])
        correct = round(total_correct)
    return {
        "error_rate": (n - correct) / n if n else 0.0,
        "correct": correct,
        "total": n,
        "loss": loss_sum / n if n else 0.0,
    }


@dataclass
class Training:
    """One training run's shared state. The recipe is checked here (Recipe.validate).

    At an epoch's end the callbacks run in three groups: first those whose state the
    checkpoint keeps (the recipe's weight averaging and early stopping, and any callback
    with `checkpoint_arrays`/`checkpoint_state`) or that add to the row (`writes_row`),
    then the checkpoint (`saves_run`), then
    the rest (progress, CSV and TensorBoard logs ...), so a logger that fails cannot lose
    the epoch. Within a group: the recipe's first, then `callbacks` in the order given,
    then by `order`."""

    model: Network
    recipe: Recipe
    train: Dataset
    val: Dataset | None = None
    seed: int = 0
    callbacks: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    grad_hook: GradHook | None = None
    rng_kind: str | None = None  # 'host', 'device' or None: the backend's default
    parallel: DataParallel | None = None  # a data-parallel run (arraynet.parallel.data_parallel)

    def __post_init__(self) -> None:
        from arraynet.train.callbacks import recipe_callbacks

        self.recipe.validate(validation=self.val is not None)
        self.backend = self.model.backend
        par = self.parallel
        if par is not None and par.size > 1:  # the ranks' mean first, then the caller's hook
            hook = self.grad_hook
            self.grad_hook = par.grad_hook if hook is None else lambda g: hook(par.grad_hook(g))
        self.opt = make_optimizer(self.recipe.optimizer)
        self.use_rng(self.rng_kind or self.backend.default_rng_kind())
        self.shuffle = HostRNG(self.backend, self.seed + 2)
        self.ema = WeightEMA(self.recipe.ema, self.model.parameters()) if self.recipe.ema else None
        cbs = recipe_callbacks(self.recipe) + list(self.callbacks)
        self.callbacks = sorted(cbs, key=lambda c: (_group(c), getattr(c, "order", 0)))
        self.epoch = 0  # epochs completed
        self.history: list[dict] = []
        self.stopped = False
        self.elapsed = 0.0  # training seconds over all sessions
        self.best_epoch = 0

    def use_rng(self, kind: str) -> None:
        """Draw dropout masks and augmentation from a 'host' or a 'device' generator. The
        model keeps its own when it is of that kind (a second fit continues its stream).
        Data-parallel ranks draw from their own streams, derived from (seed, rank, ranks)."""
        if kind not in RNG_KINDS:
            raise ValueError(f"--rng must be one of {', '.join(RNG_KINDS)}, not {kind!r}")
        par = self.parallel
        ranks = (par.rank, par.size) if par is not None else (0, 1)
        rng = self.model.rng
        if getattr(rng, "kind", "host") != kind or getattr(rng, "rank_stream", (0, 1)) != ranks:
            seed = par.stream_seed(self.seed + 1) if par is not None else self.seed + 1
            rng = self.backend.rng(seed, host=kind == "host")
            rng.rank_stream = ranks
            self.model.set_rng(rng)
        self.rng = self.model.rng

    def averaged(self) -> Any:
        """A block in which the model holds its averaged weights (when EMA is on)."""
        return self.ema.applied(self.model) if self.ema is not None else nullcontext()

    def snapshot(self) -> dict:
        """The model's state as host arrays (copies)."""
        b = self.backend
        return {k: b.to_host(v).copy() for k, v in self.model.state_dict().items()}

    def restore(self, weights: dict) -> None:
        b = self.backend
        self.model.load_state_dict({k: b.from_host(v) for k, v in weights.items()})

    def each(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def end_epoch(self, row: dict) -> None:
        """The callbacks' `on_epoch_end`, in their groups (see the class docstring); a
        failure after the checkpoint is an EpochSavedError that says the epoch is kept."""
        saved = None
        for cb in self.callbacks:
            if saved is None:
                cb.on_epoch_end(self, row)
                if getattr(cb, "saves_run", False):
                    saved = cb
                continue
            try:
                cb.on_epoch_end(self, row)
            except Exception as e:
                where = getattr(saved, "folder", None)
                place = f" in {where.path}" if where is not None else ""
                raise EpochSavedError(
                    f"epoch {self.epoch} is saved{place} (--resume continues from it), but "
                    f"then {type(cb).__name__} failed: {one_line(e)}"
                ) from e


def _group(cb: Any) -> int:
    """0: a callback whose state the checkpoint keeps, or that adds to the epoch's row
    (`writes_row`); 1: the checkpoint; 2: the rest."""
    from arraynet.train.callbacks import Callback

    if getattr(cb, "saves_run", False):
        return 1
    kind = type(cb)
    keeps = any(
        getattr(kind, name, None) is not getattr(Callback, name)
        for name in ("checkpoint_arrays", "checkpoint_state", "restore")
    )
    return 0 if keeps or getattr(cb, "writes_row", False) else 2


def run_epoch(t: Training) -> dict:
    """One pass over the shuffled training set; returns the epoch's history row."""
    r, b, model = t.recipe, t.backend, t.model
    xp = b.xp
    epoch = t.epoch
    lr = learning_rate(r.schedule, r.lr, epoch, r.epochs, r.warmup)
    n = len(t.train)
    par = t.parallel
    perm = t.shuffle.permutation(n)  # the same global order on every rank
    if par is not None:
        perm, bounds = par.batches(perm, r.batch_size)  # this rank's share of each batch
    else:
        perm, bounds = epoch_batches(perm, r.batch_size)
    order = b.from_host_pinned(perm)  # one copy to the device an epoch
    nb = len(bounds)
    ranks = par.size if par is not None else 1
    t.opt.start_epoch(epoch + 1)  # (1-based; 'adam-seed' counts its bias correction)
    t.each("on_epoch_begin", epoch, n)
    total = xp.zeros((), dtype=model.dtype, device=b.device)
    first_bad = xp.full((), float(len(bounds)), dtype=model.dtype, device=b.device)
    aug = r.augment
    t0 = time.perf_counter()
    for i, (lo, hi) in enumerate(bounds):
        idx = order[lo:hi]
        xb = xp.take(t.train.x, idx, axis=0)
        yb = xp.take(t.train.y, idx, axis=0)
        if r.aug_p > 0:
            xb = maybe_augment(
                xb, t.rng, r.aug_p,
                zoom=tuple(aug["zoom"]), rotation=aug["rotation"], shift=aug["shift"],
                elastic=aug.get("elastic"),
            )  # fmt: skip
        step_lr = par.step_lr(lr, epoch, i, nb) if par is not None else lr
        loss = train_step(model, t.opt, xb, yb, lr=step_lr, loss=r.loss,
                          smoothing=r.label_smoothing, grad_hook=t.grad_hook,
                          ema=t.ema)  # fmt: skip
        total = total + loss * idx.shape[0]
        first_bad = _first_bad(xp, loss, first_bad, i)
        t.each("on_batch_end", i + 1, int(idx.shape[0]) * ranks)
    finite_weights = _all_finite(xp, model.parameters(), model.dtype, b.device)
    checks = b.to_host(xp.stack([total, first_bad, finite_weights]))  # one read an epoch
    loss_sum, used = float(checks[0]), float(perm.shape[0])
    if par is not None:
        loss_sum, used = par.sum_floats([loss_sum, used])
        par.end_epoch(model)
    n = int(used)
    _check_finite(t, loss_sum, int(checks[1]), bool(checks[2]), nb, lr)
    train_loss = loss_sum / n if n else 0.0
    b.synchronize()
    secs = time.perf_counter() - t0
    row = {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": train_loss,
        "seconds": round(secs, 3),
        "img_per_s": round(n / secs, 1) if secs > 0 else None,
    }
    if r.loss == "cross_entropy" and train_loss >= 0.99 * math.log(t.train.y.shape[1]):
        row["at_chance"] = True  # no better than uniform guessing: likely a dead network
    if t.val is not None:
        with t.averaged():
            ev = evaluate(model, t.val, parallel=par)
        row["val_loss"] = ev["loss"]
        row["val_error"] = ev["error_rate"]
    return row


def _first_bad(xp: Any, loss: Array, first_bad: Array, i: int) -> Array:
    """The index of the first batch whose loss is not finite, kept on the device (no
    wait): `first_bad` holds the batch count until one is."""
    step = xp.full((), float(i), dtype=first_bad.dtype, device=first_bad.device)
    return xp.where(xp.isfinite(loss), first_bad, xp.minimum(first_bad, step))


def _all_finite(xp: Any, params: dict[str, Array], dtype: Any, device: Any) -> Array:
    """1.0 when every parameter is finite, else 0.0 (a 0-d array on the device)."""
    ok = xp.ones((), dtype=dtype, device=device)
    for p in params.values():
        ok = ok * xp.astype(xp.all(xp.isfinite(p)), dtype)
    return ok


def _check_finite(t: Training, loss_sum: float, bad: int, weights_ok: bool, nb: int, lr: float):
    """TrainingDiverged unless the epoch's loss and the weights are finite."""
    if math.isfinite(loss_sum) and weights_ok:
        return
    epoch = t.epoch + 1
    what = (
        f"the loss became non-finite at step {bad + 1} of {nb}"
        if bad < nb
        else f"the weights became non-finite by the end of the epoch ({nb} steps)"
    )
    kept = f"epoch {t.epoch}" if t.epoch else "none yet"
    raise TrainingDiverged(
        f"training diverged in epoch {epoch}: {what} (learning rate {lr:g}); the last "
        f"good checkpoint is kept ({kept}); try a lower --lr"
    )


def fit_loop(t: Training, epochs: int | None = None) -> dict:
    """Train until `epochs` (default the recipe's) or a callback stops the run; the model
    ends in eval mode with its final weights. Returns epochs_run, best_epoch, stopped_early."""
    epochs = t.recipe.epochs if epochs is None else epochs
    t.each("on_train_begin")
    t.model.train()
    while t.epoch < epochs and not t.stopped:
        row = run_epoch(t)
        t.epoch += 1
        t.history.append(row)
        t.elapsed += row["seconds"]
        t.end_epoch(row)
    t.model.eval()
    t.best_epoch = t.epoch
    if t.ema is not None:
        t.model.set_parameters(t.ema.params)
    t.each("on_train_end")
    return {"epochs_run": t.epoch, "best_epoch": t.best_epoch, "stopped_early": t.stopped}
