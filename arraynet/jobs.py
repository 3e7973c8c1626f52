"""High-level runs shared by the CLI and scripts: train a zoo model or a layout on a
dataset, evaluate weights."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arraynet.augment import affine_matrix, affine_resample
from arraynet.backends import Backend
from arraynet.data import load_mnist, locate, sha256_file
from arraynet.data.arrays import (
    check_inputs_fit,
    data_fingerprint,
    float_inputs,
    label_targets,
)
from arraynet.io import WeightsError, file_sha256, load_arrays, load_model
from arraynet.io.weights import first_nonfinite
from arraynet.network import Network
from arraynet.parallel.comm import Communicator, world
from arraynet.parallel.data_parallel import DataParallel, check_resume_ranks, lr_scaling_for
from arraynet.train.callbacks import Callback, Hooks, ModelCheckpoint
from arraynet.train.distill import (
    check_teacher,
    describe_teacher,
    distillation_targets,
    teacher_probabilities,
)
from arraynet.train.loop import Dataset, Training, evaluate, fit_loop
from arraynet.train.recipe import Recipe
from arraynet.train.runfolder import RUN_FILES, RunFolder
from arraynet.zoo import recipe_for
from arraynet.zoo.layouts import new_model

__all__ = ["RUN_FILES", "evaluate_weights", "make_dataset", "train_model"]


def make_dataset(images: Any, labels: Any, backend: Backend, num_classes: int = 10) -> Dataset:
    """Host images (uint8, scaled to [0, 1], or float) and integer (or one-hot) labels
    -> a Dataset on `backend`."""
    x = float_inputs(images)
    y, labels = label_targets(labels, num_classes)
    dtype = backend.dtype("float32")
    return Dataset(x=backend.from_host(x, dtype), y=backend.from_host(y, dtype), labels=labels)


def load_data(data: str | None, data_dir: str | None = None, quiet: bool = False) -> Any:
    """MNIST (data None or 'mnist', found as `arraynet data` finds it) or any dataset
    `arraynet.datasets.load` reads; an object with x_train, y_train, x_test, y_test and
    num_classes. Never downloads: missing MNIST files are a DataError that says how to
    fetch them (`arraynet data fetch`, into the `data_dir` given if any). `quiet` is kept
    for callers; nothing is printed."""
    if data is None or data == "mnist":
        m = load_mnist(locate(data_dir), quiet=True)
        return _Arrays("mnist", m.train_images, m.train_labels, m.test_images, m.test_labels)
    from arraynet import datasets

    return datasets.load(data, data_dir=data_dir, download=False)


class _Arrays:
    """MNIST's arrays as loaded (images (N, 28, 28), for run fingerprints), with its classes."""

    num_classes = 10
    input_shape = (28, 28, 1)

    def __init__(self, name: str, xtr: Any, ytr: Any, xte: Any, yte: Any) -> None:
        self.name = name
        self.x_train, self.y_train, self.x_test, self.y_test = xtr, ytr, xte, yte


def split_train(data: Any, val_split: int, train_limit: int | None) -> tuple[tuple, tuple | None]:
    """The last `val_split` training samples are held out; `train_limit` caps the rest."""
    n = data.x_train.shape[0]
    if not 0 <= val_split < n:
        raise ValueError(f"--val-split must be between 0 and {n - 1}")
    cut = n - val_split
    tr = (data.x_train[:cut], data.y_train[:cut])
    if train_limit is not None:
        if train_limit <= 0:
            raise ValueError("--train-limit must be positive")
        tr = (tr[0][:train_limit], tr[1][:train_limit])
    val = (data.x_train[cut:], data.y_train[cut:]) if val_split else None
    return tr, val


def shape_from_data(model: Network, data: Any) -> None:
    """A layout file may leave its input shape to the data: take it from a test sample."""
    if model.input_shape is None:
        model.input_shape = tuple(float_inputs(data.x_test[:1]).shape[1:])


def fit_data(model: Network, data: Any) -> int:
    """The model's number of outputs, after checking that it fits the data's samples and
    labels (one line naming both when it does not)."""
    from arraynet import datasets
    from arraynet.data.container import misfit_message

    num_outputs = int(model.output_shape[-1])
    if isinstance(data, datasets.Data):
        datasets.check_fits(model.input_shape, num_outputs, data)
    sample = float_inputs(data.x_test[:1], model.input_shape)
    check_inputs_fit(sample.shape[1:], model.input_shape)
    for y in (data.y_train, data.y_test):
        label_targets(y, num_outputs)
    if isinstance(data, _Arrays) and num_outputs != data.num_classes:  # (more outputs)
        raise ValueError(misfit_message(model.input_shape, num_outputs, data.name,
                                        data.input_shape, data.num_classes))  # fmt: skip
    return num_outputs


def _val_metrics(model: Network, val_ds: Dataset | None, par: DataParallel | None = None) -> dict:
    """Error and loss of the final weights on the validation split (empty without one)."""
    if val_ds is None:
        return {}
    m = evaluate(model, val_ds, parallel=par)
    return {"val_error": m["error_rate"], "val_loss": m["loss"]}


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
    folder = RunFolder(out_dir)
    out = folder.path
    if recipe is None:
        recipe = recipe_for(name) if layout is None else Recipe()
    recipe = recipe.validate(validation=val_split > 0)
    comm = comm or world()
    par = None
    if comm.size > 1 or sync_bn or lr_scaling:
        scaling = None
        if lr_scaling:
            reference = recipe_for(name).batch_size if layout is None else recipe.batch_size
            scaling = lr_scaling_for(recipe.batch_size, reference, lr_warmup_epochs)
        par = DataParallel(comm, backend, sync_bn=sync_bn, lr_scaling=scaling)
        par.check_batch(recipe.batch_size)
    if resume:
        folder.check_resumable()
    else:
        folder.check_new(probe=comm.is_root)
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
    meta: dict[str, Any] = {"model": name, "val_split": val_split, "train_limit": train_limit}
    if data is not None:
        meta["data"] = data  # the path, for the record; the contents are checked by hash
    meta["data_sha256"] = data_fingerprint(ds.x_train, ds.y_train)["sha256"]
    if layout is not None:
        meta["layout"] = model.config()
    if par is not None:
        meta.update(ranks=comm.size, sync_bn=sync_bn,
                    lr_scaling=par.lr_scaling.to_dict() if par.lr_scaling else None)  # fmt: skip
    flags = {"model": "--model", "val_split": "--val-split", "train_limit": "--train-limit",
             "data": "--data", "layout": "layout (--model file)"}  # fmt: skip
    saved = folder.saved_meta() if resume else {}
    if resume:
        check_resume_ranks(out, saved, comm.size)
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
        folder.check_same(meta, flags)
    if init is not None:
        meta["init"] = _start_from(model, Path(init))
        if saved.get("init") and saved["init"]["sha256"] != meta["init"]["sha256"]:
            raise ValueError(f"{out}: the run was begun from other --init weights")
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
    cbs = [*_callbacks(callbacks), ModelCheckpoint(folder)]
    if par is not None:
        par.setup(model)  # rank 0's weights (or --init's, the same) on every rank
    t = Training(model, recipe, train, val_ds, seed=seed, callbacks=cbs, meta=meta,
                 rng_kind=rng, parallel=par)  # fmt: skip
    if resume:
        folder.resume(t)
    t0 = time.perf_counter()
    summary = fit_loop(t, epochs)
    test = make_dataset(ds.x_test, ds.y_test, backend, num_classes)
    metrics = evaluate(model, test, parallel=par)
    result = {
        "model": name,
        "error_rate": metrics["error_rate"],
        "correct": metrics["correct"],
        "total": metrics["total"],
        "test_loss": metrics["loss"],
        **summary,
        **_val_metrics(model, val_ds, par),
        "train_seconds": round(t.elapsed, 2),
        "wall_seconds_this_session": round(time.perf_counter() - t0, 2),
        "backend": backend.name,
        "device": backend.device_name(),
        "threads": backend.threads,
        "tf32": backend.tf32,
        "seed": seed,
        "out": str(out),
        "ranks": comm.size,
        "communicator": comm.name,
    }
    if par is not None:
        result["distributed"] = par.describe()
    if data is not None:
        result["data"] = data
    folder.save_final(t, result)
    return result


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
