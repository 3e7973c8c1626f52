"""`Sequential.fit`, `evaluate` and `predict` on plain arrays: the data are checked against
the model, moved to its backend, and trained through the same loop, callbacks and run
folders as the CLI (`arraynet.train.loop`, `arraynet.train.runfolder`). Under `mpiexec -n N` a fit
is data-parallel, as `arraynet train` is (`arraynet.parallel.data_parallel`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arraynet.augment_settings import AUGMENT_P
from arraynet.backends import Backend, get_backend
from arraynet.backends.host import backend_name_of, host_array
from arraynet.data.arrays import data_fingerprint, float_inputs
from arraynet.keras_names import loss_name, metric_names, optimizer_name
from arraynet.parallel.comm import Communicator
from arraynet.train.callbacks import (
    Accuracy,
    Callback,
    ChanceWarning,
    History,
    Progress,
    ProgressBar,
)
from arraynet.train.inputs import to_dataset
from arraynet.train.loop import RNG_KINDS, evaluate, fit_loop
from arraynet.train.recipe import Recipe
from arraynet.train.setup import RunSetup

Array = Any
# fit's defaults where no recipe is given (Keras-like: Adam 1e-3, batches of 32, 10 epochs)
FIT_RECIPE = Recipe(optimizer="adam", lr=1e-3, batch_size=32, epochs=10)


def ensure_built(model: Any, backend: str | Backend | None, seed: int, x: Any) -> Backend:
    """Build an unbuilt model (input shape from `x` when it has none) on `backend` (a name,
    a Backend, or None: the library that holds `x`); a built model keeps its own."""
    if model.backend is not None:
        if backend is not None:
            name = backend if isinstance(backend, str) else backend.name
            if name != model.backend.name:
                raise ValueError(f"the model is built on {model.backend.name}, not {name}")
        return model.backend
    if model.input_shape is None:
        model.input_shape = tuple(float_inputs(host_array(x[:1])).shape[1:])
    if not isinstance(backend, Backend):
        backend = get_backend(backend or backend_name_of(x))
    model.build(backend, seed=seed)
    return backend


def _augment(base: Recipe, augment: Any) -> dict:
    """fit's `augment` (None: the recipe's; False; True: every batch; a probability; or a
    dict of zoom, rotation, shift, elastic and p) as recipe settings."""
    if augment is None:
        return {}
    if augment is False:
        return {"aug_p": 0.0}
    if augment is True:
        return {"aug_p": 1.0}
    if isinstance(augment, int | float):
        return {"aug_p": float(augment)}
    if isinstance(augment, dict):
        spec = dict(augment)
        p = spec.pop("p", AUGMENT_P)
        return {"aug_p": p, "augment": {**base.augment, **spec}}
    raise ValueError(f"augment wants True, False, a probability or a dict, not {augment!r}")


def fit(
    model: Any,
    x: Any,
    y: Any,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    learning_rate: float | None = None,
    optimizer: str | None = None,
    loss: str | None = None,
    metrics: list[str] | None = None,
    schedule: str | None = None,
    warmup: int | None = None,
    label_smoothing: float | None = None,
    ema: float | None = None,
    augment: Any = None,
    recipe: Recipe | None = None,
    validation_data: tuple[Any, Any] | None = None,
    validation_split: float = 0.0,
    shuffle: bool = True,
    callbacks: list[Callback] | None = None,
    backend: str | Backend | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    resume: bool = False,
    verbose: int | str = 0,
    rng: str | None = None,
    comm: Communicator | None = None,
    sync_bn: bool = False,
    tf32: bool = False,
) -> History:
    """Train on images (N, H, W, C) or vectors (N, D), uint8 (scaled to [0, 1]) or float,
    NumPy or any backend's arrays, with integer labels (N,) or one-hot rows (N, K).

    The recipe's settings (None: `recipe`'s, else Adam 1e-3, batches of 32, 10 epochs):
    epochs, batch_size, lr or Keras's learning_rate, optimizer ('adam', 'sgd', 'adam-seed',
    'adam-seed-const'; Keras's 'Adam', 'SGD'), loss ('cross_entropy', 'mse'; Keras's
    'sparse_categorical_crossentropy' (integer labels), 'categorical_crossentropy' (one-hot),
    'mean_squared_error'), schedule, warmup, label_smoothing, ema, augment (True, False, a
    probability or a dict of zoom/rotation/shift/elastic/p); the run records arraynet's
    names. metrics=["accuracy"] (or "acc") adds training and validation accuracy to the
    history. recipe: a Recipe these override. validation_data=(xv, yv) or validation_split
    (a fraction or a count of the last samples). shuffle=False trains in the data's order.
    out_dir: a run folder, checkpointed every epoch; resume: continue it exactly. verbose:
    0 silent (the default), 1 or 'auto' a progress bar (terminal or notebook) and a line an
    epoch, 2 a line an epoch. rng: 'host' or 'device', where dropout masks and augmentation
    are drawn. tf32: TF32 products on NVIDIA GPUs (default off). Under `mpiexec -n N` the
    fit is data-parallel (sync_bn, comm): batch_size is the global batch, rank 0 alone
    writes and prints. An unbuilt model is built on `backend` or the one that holds `x`.

    Returns a `History`: the rows, one dict per epoch (a list, as before), with Keras's
    `.history` ("loss", "val_loss", the metrics), `.epoch` and `.params`. A loss no better
    than chance is an `arraynet.TrainingWarning`; a setting out of range is a ValueError
    naming the keyword (`lr=`).
    """
    level = verbosity(verbose)
    names = _metrics_and_checks(metrics, shuffle, rng, lr, learning_rate)
    loss, labels = loss_name(loss)
    base = recipe or FIT_RECIPE
    settings = dict(
        epochs=epochs, batch_size=batch_size, lr=lr if lr is not None else learning_rate,
        optimizer=optimizer_name(optimizer), loss=loss, schedule=schedule, warmup=warmup,
        label_smoothing=label_smoothing, ema=ema,
    )  # fmt: skip
    settings.update(_augment(base, augment))
    r = base.with_overrides(**settings).validate(words="api")
    ensure_built(model, backend, seed, x).set_tf32(tf32)
    x, y, validation_data = _split(x, y, validation_data, validation_split, labels)
    if r.distill:
        raise ValueError("fit does not distill (it has no teachers): use arraynet train --teacher")
    if r.aug_p > 0 and len(model.input_shape) != 3:
        raise ValueError(f"augment needs images (H, W, C); the model takes {model.input_shape}")
    train = to_dataset(model, x, y)
    val = to_dataset(model, *validation_data) if validation_data is not None else None
    r.validate(validation=val is not None, words="api")
    run = RunSetup.open(model.backend, r.batch_size, out_dir=out_dir, resume=resume, comm=comm,
                        sync_bn=sync_bn)  # fmt: skip
    shown = (ProgressBar() if level == 1 else Progress()) if level and run.comm.is_root else None
    cbs = [*(callbacks or []), *([Accuracy()] if names else []), *([shown] if shown else [])]
    if run.comm.is_root:
        cbs.append(ChanceWarning())
    meta: dict[str, Any] = {"model": "fit", "layout": model.config()}
    if run.parallel is not None:
        meta.update(ranks=run.comm.size, sync_bn=sync_bn)
    if run.folder is not None:
        meta["data"] = data_fingerprint(x, y, validation_data)
    meta["shuffle"] = shuffle
    run.check_same(meta, {"layout": "model layout", "data": "data", "sync_bn": "sync_bn",
                          "shuffle": "shuffle="})  # fmt: skip
    t = run.start(model, r, train, val, seed=seed, meta=meta, callbacks=cbs, rng=rng)
    if not shuffle:
        t.shuffle = InOrder(t.shuffle)
    try:
        fit_loop(t)
    finally:
        if isinstance(shown, ProgressBar):
            shown.close()
    if run.folder is not None:
        run.finish(t, run.val_metrics(model, val))
    steps = -(-len(train) // r.batch_size)
    history = History(t.history, names, {"epochs": r.epochs, "batch_size": r.batch_size,
                                         "steps": steps, "verbose": level})  # fmt: skip
    history.model = model
    return history


def verbosity(verbose: Any) -> int:
    """fit's `verbose` as Keras means it: 0 silent, 1 (or 'auto', True) a progress bar, 2
    a line an epoch."""
    if verbose == "auto":
        return 1
    if verbose in (0, 1, 2) and not isinstance(verbose, float):
        return int(verbose)
    raise ValueError(f"verbose= wants 0 (silent), 1 or 'auto' (a progress bar) or 2 (a line "
                     f"an epoch), not {verbose!r}")  # fmt: skip


def _metrics_and_checks(
    metrics: Any, shuffle: Any, rng: Any, lr: Any, learning_rate: Any
) -> list[str]:
    """fit's metric names, after checking the keywords the recipe does not hold."""
    if not isinstance(shuffle, bool):
        raise ValueError(f"shuffle= wants True or False, not {shuffle!r}")
    if rng is not None and rng not in RNG_KINDS:
        raise ValueError(f"rng= wants one of {', '.join(RNG_KINDS)}, not {rng!r}")
    if lr is not None and learning_rate is not None and lr != learning_rate:
        raise ValueError(f"lr= and learning_rate= are one setting: give one, not both "
                         f"({lr!r} and {learning_rate!r})")  # fmt: skip
    return metric_names(metrics)


def _split(x: Any, y: Any, validation_data: Any, validation_split: Any, labels: str | None):
    """(x, y, validation_data): the last `validation_split` samples held out (a fraction
    or a count), after checking the labels a Keras loss name asks for."""
    if validation_data is not None and validation_split:
        raise ValueError("give validation_data or validation_split, not both")
    ya = host_array(y)
    n = int(ya.shape[0])
    if labels is not None and (ya.ndim == 1) != (labels == "integer"):
        name = (
            "sparse_categorical_crossentropy" if labels == "integer" else "categorical_crossentropy"
        )
        other = (
            "categorical_crossentropy" if labels == "integer" else "sparse_categorical_crossentropy"
        )
        given = "integer labels (N,)" if ya.ndim == 1 else f"rows of shape {tuple(ya.shape)}"
        raise ValueError(f"loss='{name}' takes {labels} labels, but y holds {given}: use "
                         f"loss='{other}' (or 'cross_entropy', which takes either)")  # fmt: skip
    hold = validation_split
    if isinstance(hold, float) and 0.0 <= hold < 1.0:
        hold = round(n * hold)
    if isinstance(hold, bool) or not isinstance(hold, int) or not 0 <= hold < n:
        raise ValueError(f"validation_split wants a fraction in [0, 1) or a count below {n}, "
                         f"not {validation_split!r}")  # fmt: skip
    if hold:
        xa = host_array(x)
        validation_data = (xa[n - hold :], ya[n - hold :])
        x, y = xa[: n - hold], ya[: n - hold]
    return x, y, validation_data


class InOrder:
    """fit's `shuffle=False`: the run's shuffling generator, whose permutations come back
    sorted (the training order is the data's). It still draws them, so its state, saved
    in checkpoints and restored on a resume, moves as a shuffled run's does."""

    def __init__(self, rng: Any) -> None:
        self.rng = rng

    def permutation(self, n: int) -> Any:
        order = self.rng.permutation(n)  # (a fresh host array)
        order.sort()
        return order

    def __getattr__(self, name: str) -> Any:  # get_state, set_state ...
        return getattr(self.rng, name)


def evaluate_arrays(model: Any, x: Any, y: Any, batch_size: int = 500) -> dict:
    """error_rate, accuracy (Keras's name: correct / total), loss, correct and total of
    `model` (built) on (x, y)."""
    res = evaluate(model, to_dataset(model, x, y), batch_size)
    res["accuracy"] = res["correct"] / res["total"] if res["total"] else 0.0
    return res
