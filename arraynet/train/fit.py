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
from arraynet.parallel.comm import Communicator
from arraynet.train.callbacks import Callback, Progress
from arraynet.train.inputs import to_dataset
from arraynet.train.loop import evaluate, fit_loop
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
    optimizer: str | None = None,
    loss: str | None = None,
    schedule: str | None = None,
    warmup: int | None = None,
    label_smoothing: float | None = None,
    ema: float | None = None,
    augment: Any = None,
    recipe: Recipe | None = None,
    validation_data: tuple[Any, Any] | None = None,
    validation_split: float = 0.0,
    callbacks: list[Callback] | None = None,
    backend: str | Backend | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    resume: bool = False,
    verbose: bool = False,
    rng: str | None = None,
    comm: Communicator | None = None,
    sync_bn: bool = False,
    tf32: bool = False,
) -> list[dict]:
    """Train `model` on (x, y); see `Sequential.fit`. Returns the history rows."""
    ensure_built(model, backend, seed, x).set_tf32(tf32)
    base = recipe or FIT_RECIPE
    settings = dict(
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, loss=loss,
        schedule=schedule, warmup=warmup, label_smoothing=label_smoothing, ema=ema,
    )  # fmt: skip
    settings.update(_augment(base, augment))
    r = base.with_overrides(**settings).validate()
    if validation_data is not None and validation_split:
        raise ValueError("give validation_data or validation_split, not both")
    n = int(host_array(y).shape[0])
    hold = validation_split
    if isinstance(hold, float) and 0.0 <= hold < 1.0:
        hold = round(n * hold)
    if isinstance(hold, bool) or not isinstance(hold, int) or not 0 <= hold < n:
        raise ValueError(f"validation_split wants a fraction in [0, 1) or a count below {n}, "
                         f"not {validation_split!r}")  # fmt: skip
    if hold:
        xa, ya = host_array(x), host_array(y)
        validation_data = (xa[n - hold :], ya[n - hold :])
        x, y = xa[: n - hold], ya[: n - hold]
    if r.distill:
        raise ValueError("fit does not distill (it has no teachers): use arraynet train --teacher")
    if r.aug_p > 0 and len(model.input_shape) != 3:
        raise ValueError(f"augment needs images (H, W, C); the model takes {model.input_shape}")
    train = to_dataset(model, x, y)
    val = to_dataset(model, *validation_data) if validation_data is not None else None
    run = RunSetup.open(model.backend, r.batch_size, out_dir=out_dir, resume=resume, comm=comm,
                        sync_bn=sync_bn)  # fmt: skip
    cbs = list(callbacks or [])
    if verbose and run.comm.is_root:
        cbs.append(Progress())
    meta: dict[str, Any] = {"model": "fit", "layout": model.config()}
    if run.parallel is not None:
        meta.update(ranks=run.comm.size, sync_bn=sync_bn)
    if run.folder is not None:
        meta["data"] = data_fingerprint(x, y, validation_data)
    run.check_same(meta, {"layout": "model layout", "data": "data", "sync_bn": "sync_bn"})
    t = run.start(model, r, train, val, seed=seed, meta=meta, callbacks=cbs, rng=rng)
    fit_loop(t)
    if run.folder is not None:
        run.finish(t, run.val_metrics(model, val))
    return t.history


def evaluate_arrays(model: Any, x: Any, y: Any, batch_size: int = 500) -> dict:
    """error_rate, loss, correct and total of `model` (built) on (x, y)."""
    return evaluate(model, to_dataset(model, x, y), batch_size)
