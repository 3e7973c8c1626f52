"""The training loop: shuffling, mini-batches, schedules, augmentation, early stopping,
per-epoch checkpoints and resume."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from array_api_compat import array_namespace

from arraynet import __version__, ops
from arraynet.augment import maybe_augment
from arraynet.averaging import WeightAverage, recalibrate_batchnorm
from arraynet.backends import Backend, HostRNG
from arraynet.data.sharding import epoch_batches
from arraynet.early_stopping import EarlyStopping
from arraynet.io import WeightsError, atomic_write_json, load_arrays, save_arrays, save_model
from arraynet.model import Sequential
from arraynet.optimizers import make_optimizer
from arraynet.recipes import Recipe
from arraynet.schedules import learning_rate

if TYPE_CHECKING:
    from arraynet.data_parallel import DataParallel

Array = Any


@dataclass
class Dataset:
    """Images (N, 28, 28, 1) float32 and one-hot labels (N, 10) on a backend's device,
    plus the integer labels on the host for scoring."""

    x: Array
    y: Array
    labels: Any

    def __len__(self) -> int:
        return int(self.x.shape[0])


def evaluate(
    model: Sequential, data: Dataset, batch_size: int = 500, parallel: DataParallel | None = None
) -> dict:
    """Error rate and mean loss of `model` in eval mode on `data` (cross-entropy for a
    softmax output, else mean squared error over all outputs, as the MSE loss). With
    `parallel`, each rank scores every N-th batch and the sums are all-reduced."""
    b = model.backend
    xp = array_namespace(data.x)
    correct = 0
    loss_sum = 0.0
    n = len(data)
    rank, ranks = (parallel.rank, parallel.size) if parallel is not None else (0, 1)
    for i in range(rank * batch_size, n, batch_size * ranks):
        j = min(i + batch_size, n)  # (the standard leaves slices past the end undefined)
        out = model.forward(data.x[i:j, ...], False)
        pred = b.to_host(xp.argmax(out, axis=1))
        correct += int((pred == data.labels[i:j]).sum())
        if model.fused_softmax:
            yb = data.y[i:j, ...]
            p = ops.clip(out, 1e-7, 1.0)
            loss_sum += float(b.to_host(-xp.sum(yb * xp.log(p))))
        else:
            d = out - data.y[i:j, ...]
            loss_sum += float(b.to_host(xp.sum(d * d))) / out.shape[1]
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
class RunState:
    """What a checkpoint restores besides arrays."""

    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)
    stopped: bool = False
    elapsed: float = 0.0  # training seconds over all sessions


class Trainer:
    """Trains one model with one recipe; checkpoints into `out_dir` after every epoch."""

    def __init__(
        self,
        model: Sequential,
        recipe: Recipe,
        train: Dataset,
        val: Dataset | None = None,
        *,
        seed: int = 0,
        out_dir: str | Path | None = None,
        meta: dict | None = None,
        on_batch: Callable[[int, int], None] | None = None,
        on_epoch: Callable[[dict], None] | None = None,
        on_epoch_start: Callable[[int, int], None] | None = None,
        parallel: DataParallel | None = None,
    ) -> None:
        self.model = model
        self.recipe = recipe
        self.train_data = train
        self.val = val
        self.seed = seed
        self.out_dir = Path(out_dir) if out_dir else None
        self.meta = dict(meta or {})
        self.on_batch = on_batch
        self.on_epoch = on_epoch
        self.on_epoch_start = on_epoch_start
        self.parallel = parallel  # data-parallel runs: the seam (arraynet.data_parallel)
        self.backend: Backend = model.backend
        self.opt = make_optimizer(recipe.optimizer)
        self.rng = model.rng
        self.shuffle = HostRNG(self.backend, seed + 2)
        self.state = RunState()
        self.es = EarlyStopping(*recipe.early_stopping) if recipe.early_stopping else None
        self.ema: dict[str, Array] | None = None
        if recipe.ema:
            xp = model.backend.xp
            self.ema = {k: xp.asarray(v, copy=True) for k, v in model.parameters().items()}
        self.swa: WeightAverage | None = None
        if recipe.swa_from:
            if recipe.ema or recipe.early_stopping:
                raise ValueError(
                    "swa_from averages the weights itself: turn off ema and early stopping"
                )
            self.swa = WeightAverage()
        if recipe.monitor == "val_loss" and val is None:
            raise ValueError("monitor 'val_loss' needs a validation split (--val-split N)")

    # -- one epoch -------------------------------------------------------------------
    def _epoch(self, epoch: int) -> dict:
        r, b, model = self.recipe, self.backend, self.model
        xp = b.xp
        lr = learning_rate(r.schedule, r.lr, epoch, r.epochs, r.warmup)
        n = len(self.train_data)
        par = self.parallel
        perm = self.shuffle.permutation(n)  # the same global order on every rank
        if par is not None:
            perm, bounds = par.batches(perm, r.batch_size)  # this rank's share
        else:
            perm, bounds = epoch_batches(perm, r.batch_size)
        order = b.from_host(perm)  # one copy to the device an epoch
        nb = len(bounds)
        ranks = par.size if par is not None else 1
        if self.on_epoch_start:
            self.on_epoch_start(epoch, n)
        total = xp.zeros((), dtype=model.dtype, device=b.device)
        aug = r.augment
        t0 = time.perf_counter()
        for i, (start, stop) in enumerate(bounds):
            idx_dev = order[start:stop]
            xb = xp.take(self.train_data.x, idx_dev, axis=0)
            yb = xp.take(self.train_data.y, idx_dev, axis=0)
            if r.aug_p > 0:
                xb = maybe_augment(
                    xb, self.rng, r.aug_p,
                    zoom=tuple(aug["zoom"]), rotation=aug["rotation"], shift=aug["shift"],
                    elastic=aug.get("elastic"),
                )  # fmt: skip
            loss, _ = model.loss_and_grads(xb, yb, r.loss, r.label_smoothing)
            total = total + loss * idx_dev.shape[0]
            grads = model.gradients()
            step_lr = lr
            if par is not None:
                grads = par.grad_hook(grads)  # the mean over the ranks
                step_lr = par.step_lr(lr, epoch, i, nb)
            model.set_parameters(self.opt.step(model.parameters(), grads, step_lr, b))
            if self.ema is not None:
                self._update_ema()
            if self.on_batch:
                self.on_batch(i + 1, int(idx_dev.shape[0]) * ranks)
        used = float(int(perm.shape[0]))
        loss_sum = float(b.to_host(total))
        if par is not None:
            loss_sum, used = par.sum_floats([loss_sum, used])
            par.end_epoch(model)
        train_loss = loss_sum / used if used else 0.0
        n = int(used)
        b.synchronize()
        secs = time.perf_counter() - t0
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": train_loss,
            "seconds": round(secs, 3),
            "img_per_s": round(n / secs, 1) if secs > 0 else None,
        }
        if r.loss == "cross_entropy" and train_loss >= 0.99 * math.log(self.train_data.y.shape[1]):
            row["at_chance"] = True  # no better than uniform guessing: likely a dead network
        if self.val is not None:
            with self._averaged():
                ev = evaluate(model, self.val, parallel=self.parallel)
            row["val_loss"] = ev["loss"]
            row["val_error"] = ev["error_rate"]
        return row

    # -- weight averaging --------------------------------------------------------------
    def _update_ema(self) -> None:
        """ema <- d * ema + (1 - d) * params, with d warming up as (1 + t) / (10 + t)."""
        t = self.opt.t
        d = min(self.recipe.ema, (1.0 + t) / (10.0 + t))
        params = self.model.parameters()
        self.ema = {k: d * e + (1.0 - d) * params[k] for k, e in self.ema.items()}

    @contextmanager
    def _averaged(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights (when EMA is on)."""
        if self.ema is None:
            yield
            return
        raw = self.model.parameters()
        self.model.set_parameters(self.ema)
        try:
            yield
        finally:
            self.model.set_parameters(raw)

    # -- the whole run -----------------------------------------------------------------
    def fit(self, epochs: int | None = None) -> dict:
        """Train until `epochs` (default the recipe's) or an early stop; returns the state."""
        epochs = self.recipe.epochs if epochs is None else epochs
        st = self.state
        self.model.train()
        while st.epoch < epochs and not st.stopped:
            row = self._epoch(st.epoch)
            st.epoch += 1
            st.history.append(row)
            st.elapsed += row["seconds"]
            if self.swa is not None and st.epoch >= self.recipe.swa_from:
                self.swa.add(self.model.parameters())
                row["swa_count"] = self.swa.count
            if self.es is not None:
                monitored = row[self.recipe.monitor]
                with self._averaged():
                    snap = self._snapshot()
                if self.es.update(st.epoch, monitored, snap):
                    st.stopped = True
                    row["early_stop"] = True
            if self.on_epoch:
                self.on_epoch(row)
            self.save_checkpoint()
        self.model.eval()
        best_epoch = st.epoch
        if self.ema is not None:
            self.model.set_parameters(self.ema)
        if self.swa is not None and self.swa.mean is not None:
            self.model.set_parameters(self.swa.mean)
            recalibrate_batchnorm(self.model, self.train_data.x)
        if self.es is not None and self.es.values:
            best_epoch, _, weights = self.es.best()
            self._restore(weights)
        return {"epochs_run": st.epoch, "best_epoch": best_epoch, "stopped_early": st.stopped}

    def _snapshot(self) -> dict:
        b = self.backend
        return {k: b.to_host(v).copy() for k, v in self.model.state_dict().items()}

    def _restore(self, weights: dict) -> None:
        b = self.backend
        self.model.load_state_dict({k: b.from_host(v) for k, v in weights.items()})

    # -- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """checkpoint.safetensors (model, optimizer, early-stopping window) + state.json."""
        if self.out_dir is None:
            return
        par = self.parallel
        rank_rng = par.gather_json(self.rng.get_state()) if par and par.size > 1 else None
        if par is not None and not par.is_root:
            return  # rank 0 alone writes
        b, st = self.backend, self.state
        arrays = {f"model.{k}": b.to_host(v) for k, v in self.model.state_dict().items()}
        arrays.update({f"opt.{k}": b.to_host(v) for k, v in self.opt.state_dict().items()})
        if self.ema is not None:
            arrays.update({f"ema.{k}": b.to_host(v) for k, v in self.ema.items()})
        if self.swa is not None and self.swa.mean is not None:
            arrays.update({f"swa.{k}": b.to_host(v) for k, v in self.swa.mean.items()})
        if self.es is not None:
            for j, w in enumerate(self.es.weights):
                arrays.update({f"es{j}.{k}": v for k, v in w.items()})
        state = {
            "epoch": st.epoch,
            "stopped": st.stopped,
            "elapsed": st.elapsed,
            "history": st.history,
            "rng_state": self.rng.get_state(),
            "shuffle_state": self.shuffle.get_state(),
            "opt_t": self.opt.t,
            "es_window": self.es.window() if self.es else None,
            "swa_count": self.swa.count if self.swa else 0,
            "recipe": self.recipe.to_dict(),
            "seed": self.seed,
            "meta": self.meta,
            "arraynet_version": __version__,
        }
        if rank_rng is not None:
            state["rank_rng_states"] = rank_rng  # every rank's dropout/augmentation stream
        # The checkpoint carries the whole state, so weights and state change in one atomic
        # rename; state.json is a readable copy written after it.
        meta = {"epoch": st.epoch, "state": state}
        save_arrays(self.out_dir / "checkpoint.safetensors", arrays, meta)
        atomic_write_json(self.out_dir / "state.json", state)

    def load_checkpoint(self) -> None:
        """Continue from `out_dir`'s checkpoint (raises WeightsError when unusable)."""
        assert self.out_dir is not None
        arrays, ck_meta = load_arrays(self.out_dir / "checkpoint.safetensors")
        state = ck_meta.get("state")
        if not isinstance(state, dict):  # older checkpoints: epoch-only metadata
            path = self.out_dir / "state.json"
            try:
                state = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise WeightsError(f"{path}: cannot resume ({e})") from None
            if ck_meta.get("epoch", state.get("epoch")) != state.get("epoch"):
                raise WeightsError(
                    f"{self.out_dir}: checkpoint.safetensors (epoch {ck_meta['epoch']}) and "
                    f"state.json (epoch {state.get('epoch')}) disagree; cannot resume"
                )
        if state.get("seed", self.seed) != self.seed:
            raise WeightsError(
                f"{self.out_dir}: the checkpoint was trained with seed {state['seed']}, not "
                f"{self.seed}; resume with --seed {state['seed']}"
            )
        # --epochs may change on resume (a longer run), except under cosine decay, whose
        # rates are laid out over the whole run
        free = () if self.recipe.schedule == "cosine" else ("epochs",)
        saved = {k: v for k, v in (state.get("recipe") or {}).items() if k not in free}
        wanted = {k: v for k, v in self.recipe.to_dict().items() if k not in free}
        diff = sorted(k for k in saved.keys() & wanted.keys() if saved[k] != wanted[k])
        if diff:
            k = diff[0]
            raise WeightsError(
                f"{self.out_dir}: the checkpoint was trained with {k}={saved[k]!r}, not "
                f"{wanted[k]!r}; resume with the same recipe or start a new run folder"
            )
        b = self.backend
        model_state = {k[6:]: b.from_host(v) for k, v in arrays.items() if k.startswith("model.")}
        try:
            self.model.load_state_dict(model_state)
        except ValueError as e:
            raise WeightsError(f"{self.out_dir}: checkpoint does not fit the model ({e})") from None
        opt_state = {k[4:]: b.from_host(v) for k, v in arrays.items() if k.startswith("opt.")}
        self.opt.load_state(opt_state, state["opt_t"])
        if self.ema is not None:
            self.ema = {k[4:]: b.from_host(v) for k, v in arrays.items() if k.startswith("ema.")}
        if self.swa is not None and state.get("swa_count"):
            mean = {k[4:]: b.from_host(v) for k, v in arrays.items() if k.startswith("swa.")}
            self.swa = WeightAverage(mean, state["swa_count"])
        self.rng.set_state(state["rng_state"])
        par = self.parallel
        if par is not None and par.size > 1:
            states = state.get("rank_rng_states") or []
            if len(states) != par.size:
                raise WeightsError(
                    f"{self.out_dir}: the checkpoint holds {len(states) or 1} rank(s)' random "
                    f"streams, not {par.size}; resume with as many ranks as it was trained on"
                )
            self.rng.set_state(states[par.rank])
        self.shuffle.set_state(state["shuffle_state"])
        if self.es is not None and state.get("es_window"):
            w = state["es_window"]
            self.es.values = list(w["values"])
            self.es.epochs = list(w["epochs"])
            self.es.weights = [
                {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"es{j}.")}
                for j in range(len(w["values"]))
            ]
        self.state = RunState(
            epoch=state["epoch"],
            history=state["history"],
            stopped=state["stopped"],
            elapsed=state.get("elapsed", 0.0),
        )

    def save_final(self, path: Path, metrics: dict) -> None:
        """The final weights with layout, recipe, metrics and run facts (rank 0 writes)."""
        if self.parallel is not None and not self.parallel.is_root:
            return
        meta = {
            **self.meta,
            "recipe": self.recipe.to_dict(),
            "metrics": metrics,
            "history": self.state.history,
            "backend": self.backend.name,
            "device": self.backend.device_name(),
            "arraynet_version": __version__,
            "seed": self.seed,
        }
        save_model(path, self.model, meta)
