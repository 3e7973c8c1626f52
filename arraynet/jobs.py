"""High-level runs shared by the CLI and scripts: train a zoo model or a layout on a
dataset, evaluate weights."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arraynet.augment import affine_matrix, affine_resample
from arraynet.backends import Backend
from arraynet.data import sha256_file
from arraynet.data.arrays import (
    data_fingerprint,
)
from arraynet.io import WeightsError, file_sha256, load_arrays, load_model
from arraynet.io.weights import first_nonfinite
from arraynet.network import Network
from arraynet.parallel.comm import Communicator
from arraynet.parallel.data_parallel import lr_scaling_for
from arraynet.train.callbacks import Callback, Hooks
from arraynet.train.distill import (
    check_teacher,
    describe_teacher,
    distillation_targets,
    teacher_probabilities,
)
from arraynet.train.inputs import (
    fit_data,
    load_data,
    make_dataset,
    shape_from_data,
    split_train,
)
from arraynet.train.loop import Dataset, Training, evaluate, fit_loop
from arraynet.train.recipe import Recipe
from arraynet.train.runfolder import RUN_FILES
from arraynet.train.setup import RunSetup
from arraynet.zoo import recipe_for
from arraynet.zoo.layouts import new_model

__all__ = ["RUN_FILES", "evaluate_weights", "make_dataset", "train_model"]


def _callbacks(given: dict[str, Callable] | list | None) -> list[Callback]:
    if given is None:
        return []
    if isinstance(given, dict):
        return [Hooks(given)]
    return [c if isinstance(c, Callback) else Hooks(c) for c in given]


def train_model(
    name: str,
    backend: Backend,
    *,
    recipe: Recipe | None = None,
    seed: int = 0,
    out_dir: str | Path,
    resume: bool = False,
    data_dir: str | None = None,
    val_split: int = 0,
    train_limit: int | None = None,
    epochs: int | None = None,
    callbacks: dict[str, Callable] | list | None = None,
    quiet_data: bool = False,
    init: str | Path | None = None,
    teachers: list[str | Path] | None = None,
    layout: dict | None = None,
    data: str | None = None,
    rng: str | None = None,
    comm: Communicator | None = None,
    sync_bn: bool = False,
    lr_scaling: bool = False,
    lr_warmup_epochs: float = 5.0,
) -> dict:
    """Train zoo model `name` (or, with `layout`, that layout under the name `name`) on
    MNIST (or the dataset `data`); writes checkpoints and `model.safetensors` into `out_dir`.

    With `init`, training starts from that weights file (it must fit the layout) instead
    of a fresh initialisation: a fine-tune, e.g. weight averaging after a finished run.
    With a recipe whose `distill` is above 0, the training targets mix in the averaged
    probabilities of `teachers` (weights files; a resumed run reuses its own).
    `callbacks`: training-loop callbacks, or a dict of plain functions (`Hooks`).
    `rng`: 'host' or 'device' generator for dropout and augmentation (None: the backend's
    default; a resume keeps the run's own).

    Under a launcher with several ranks (`mpiexec -n N`, `srun`), or given `comm`, the run
    is data-parallel (arraynet.parallel.data_parallel): `recipe.batch_size` is the global batch,
    `sync_bn` normalises over it, `lr_scaling` scales the rate linearly from the recipe's
    own batch (zoo entries: the zoo recipe's) with `lr_warmup_epochs` of warm-up; rank 0
    alone writes, and loads (fetches) the data before the others.

    Returns the summary: error_rate, correct, total (test set), epochs_run, and more.
    """
    if recipe is None:
        recipe = recipe_for(name) if layout is None else Recipe()
    recipe = recipe.validate(validation=val_split > 0)
    scaling = None
    if lr_scaling:
        reference = recipe_for(name).batch_size if layout is None else recipe.batch_size
        scaling = lr_scaling_for(recipe.batch_size, reference, lr_warmup_epochs)
    run = RunSetup.open(backend, recipe.batch_size, out_dir=out_dir, resume=resume, comm=comm,
                        sync_bn=sync_bn, lr_scaling=scaling)  # fmt: skip
    comm = run.comm
    if comm.size > 1 and not comm.is_root:
        comm.barrier()  # rank 0 reads (and checks) the files first
    ds = load_data(data, data_dir, quiet=quiet_data or not comm.is_root)
    if comm.size > 1 and comm.is_root:
        comm.barrier()
    model = new_model(name, layout)
    shape_from_data(model, ds)
    model.build(backend, seed=seed)
    num_classes = fit_data(model, ds)
    (trx, try_), val = split_train(ds, val_split, train_limit)
    train = make_dataset(trx, try_, backend, num_classes)
    val_ds = make_dataset(*val, backend, num_classes) if val else None
    meta = _run_meta(run, name, model, ds, data, layout, val_split, train_limit)
    if resume:
        _check_resumed(run, meta, data)
    _starting_point(run, model, recipe, train, meta, init, teachers, val_split)
    t = run.start(model, recipe, train, val_ds, seed=seed, meta=meta,
                  callbacks=_callbacks(callbacks), rng=rng)  # fmt: skip
    t0 = time.perf_counter()
    summary = fit_loop(t, epochs)
    test = make_dataset(ds.x_test, ds.y_test, backend, num_classes)
    result = _summary(run, t, test, val_ds, summary, time.perf_counter() - t0, data)
    run.finish(t, result)
    return result


def _starting_point(
    run: RunSetup,
    model: Network,
    recipe: Recipe,
    train: Dataset,
    meta: dict,
    init: str | Path | None,
    teachers: list | None,
    val_split: int,
) -> None:
    """Start from --init's weights, and mix the teachers' probabilities into the targets
    of a distilling recipe; both are recorded in `meta` (a resume keeps the run's own)."""
    saved, backend = run.saved, model.backend
    if init is not None:
        meta["init"] = _start_from(model, Path(init))
        if saved.get("init") and saved["init"]["sha256"] != meta["init"]["sha256"]:
            raise ValueError(f"{run.folder.path}: the run was begun from other --init weights")
    elif saved.get("init"):
        meta["init"] = saved["init"]  # the checkpoint holds the weights; keep the record
    if recipe.distill:
        meta["teachers"] = _teachers(teachers, val_split, saved)
        probs = teacher_probabilities(
            [Path(t["weights"]) for t in meta["teachers"]], train.x, backend
        )
        train.y = distillation_targets(train.y, probs, recipe.distill)
    elif teachers:
        raise ValueError("--teacher needs a recipe that distills (--distill WEIGHT)")


def _summary(
    run: RunSetup,
    t: Training,
    test: Dataset,
    val: Dataset | None,
    summary: dict,
    wall: float,
    data: str | None,
) -> dict:
    """The run's result: test figures, the loop's summary, validation, timing, set-up."""
    model, backend, comm = t.model, t.backend, run.comm
    metrics = evaluate(model, test, parallel=run.parallel)
    result = {
        "model": t.meta["model"],
        "error_rate": metrics["error_rate"],
        "correct": metrics["correct"],
        "total": metrics["total"],
        "test_loss": metrics["loss"],
        **summary,
        **run.val_metrics(model, val),
        "train_seconds": round(t.elapsed, 2),
        "wall_seconds_this_session": round(wall, 2),
        "backend": backend.name,
        "device": backend.device_name(),
        "threads": backend.threads,
        "tf32": backend.tf32,
        "seed": t.seed,
        "out": str(run.folder.path),
        "ranks": comm.size,
        "communicator": comm.name,
    }
    if run.parallel is not None:
        result["distributed"] = run.parallel.describe()
    if data is not None:
        result["data"] = data
    return result


_FLAGS = {"model": "--model", "val_split": "--val-split", "train_limit": "--train-limit",
          "data": "--data", "layout": "layout (--model file)"}  # fmt: skip


def _run_meta(run: RunSetup, name: str, model: Network, ds: Any, data: str | None,
              layout: dict | None, val_split: int, train_limit: int | None) -> dict:  # fmt: skip
    """The facts of a run that its record keeps and a resume must match."""
    meta: dict[str, Any] = {"model": name, "val_split": val_split, "train_limit": train_limit}
    if data is not None:
        meta["data"] = data  # the path, for the record; the contents are checked by hash
    meta["data_sha256"] = data_fingerprint(ds.x_train, ds.y_train)["sha256"]
    if layout is not None:
        meta["layout"] = model.config()
    meta.update(run.parallel_meta())
    return meta


def _check_resumed(run: RunSetup, meta: dict, data: str | None) -> None:
    """A resume continues the same run: ranks, batch-norm sync, rate scaling, data
    (by content) and the flags in _FLAGS."""
    saved, out = run.saved, run.folder.path
    flags = dict(_FLAGS)
    for key in ("sync_bn", "lr_scaling"):
        if saved.get(key) != meta.get(key):
            raise ValueError(f"{out}: the run was begun with {key} {saved.get(key)}, not "
                             f"{meta.get(key)}")  # fmt: skip
    if "data_sha256" in saved:  # the contents decide, wherever the files now lie
        del flags["data"]
        if saved["data_sha256"] != meta["data_sha256"]:
            raise ValueError(f"{out}: the training data differ from the run's "
                             f"(SHA-256 of the training arrays)")  # fmt: skip
    elif data not in (None, "mnist") and "data" not in saved:  # (an older MNIST run)
        raise ValueError(f"{out}: the run was begun on MNIST, not --data {data}")
    run.check_same(meta, flags)


def _teachers(given: list[str | Path] | None, val_split: int, saved: dict) -> list[dict]:
    """The teachers' records: from `given`, or those of the run being resumed (checked)."""
    records = [describe_teacher(Path(t), val_split) for t in given or []]
    if saved.get("teachers"):
        if records and [r["sha256"] for r in records] != [r["sha256"] for r in saved["teachers"]]:
            raise ValueError("the run being resumed was begun with other teachers")
        records = [dict(r) for r in saved["teachers"]]
        for r in records:
            check_teacher(r)
    if not records:
        raise ValueError("a distilling recipe needs teachers (--teacher WEIGHTS, repeatable)")
    return records


def _start_from(model: Network, path: Path) -> dict:
    """Load `path`'s state into `model`; returns what the run's record keeps about it."""
    arrays, meta = load_arrays(path)
    bad = first_nonfinite(arrays)
    if bad is not None:
        raise WeightsError(f"{path}: tensor {bad!r} holds NaN or infinite values; "
                           "cannot start a run from it")  # fmt: skip
    b = model.backend
    try:
        model.load_state_dict({k: b.from_host(v, dtype=model.dtype) for k, v in arrays.items()})
    except ValueError as e:
        raise WeightsError(f"{path}: does not fit the layout ({e})") from None
    return {
        "weights": str(path),
        "sha256": sha256_file(path),
        "model": meta.get("model"),
        "seed": meta.get("seed"),
        "epochs_run": len(meta.get("history") or []),
        "train_seconds": (meta.get("metrics") or {}).get("train_seconds"),
        "val_split": meta.get("val_split"),
    }


TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def predict_probs(model: Any, x: Any, tta: bool = False, batch_size: int = 500) -> Any:
    """Eval-mode outputs; with `tta`, averaged over the image and four 1-pixel shifts."""
    if not tta:
        return model.predict(x, batch_size)
    xp = model.backend.xp
    total = None
    for dx, dy in TTA_SHIFTS:
        parts = []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : min(i + batch_size, x.shape[0]), ...]
            maps = affine_matrix([1.0] * xb.shape[0], [0.0] * xb.shape[0],
                                 [dx] * xb.shape[0], [dy] * xb.shape[0])  # fmt: skip
            parts.append(model.forward(affine_resample(xb, maps), False))
        probs = xp.concat(parts, axis=0)
        total = probs if total is None else total + probs
    return total / len(TTA_SHIFTS)


def evaluate_weights(
    paths: list[str],
    backend: Backend,
    data_dir: str | None = None,
    tta: bool = False,
    data: str | None = None,
    *,
    sha256: list[str] | None = None,
    allow_unchecked: bool = False,
    allow_nonfinite: bool = False,
) -> dict:
    """Test error of one weights file, or of several averaged (an ensemble), on MNIST's
    test set (or that of the dataset `data`); `tta` also averages each model over shifted
    copies of every image. `sha256` (one per file), `allow_unchecked` and `allow_nonfinite`
    are `load_model`'s checks; the result names each file's SHA-256."""
    xp = backend.xp
    expected = list(sha256) if sha256 else [None] * len(paths)
    if len(expected) != len(paths):
        raise ValueError(f"{len(expected)} SHA-256 values for {len(paths)} weights files")
    models = [
        load_model(p, backend, sha256=h, allow_unchecked=allow_unchecked,
                   allow_nonfinite=allow_nonfinite)[0]
        for p, h in zip(paths, expected, strict=True)
    ]  # fmt: skip
    ds = load_data(data, data_dir, quiet=True)
    widths = sorted({fit_data(m, ds) for m in models})
    if len(widths) > 1:
        raise ValueError(f"the models have different numbers of outputs ({widths})")
    num_classes = widths[0]
    test = make_dataset(ds.x_test, ds.y_test, backend, num_classes)
    hashes = {"sha256": [file_sha256(p) for p in paths]}
    if len(models) == 1 and not tta:
        m = evaluate(models[0], test)
        return {**{k: m[k] for k in ("error_rate", "correct", "total")}, **hashes}
    total = None
    for model in models:
        probs = predict_probs(model, test.x, tta)
        total = probs if total is None else total + probs
    pred = backend.to_host(xp.argmax(total, axis=1))
    correct = int((pred == test.labels).sum())
    n = len(test)
    return {"error_rate": (n - correct) / n, "correct": correct, "total": n, **hashes}
