"""High-level runs shared by the CLI and scripts: train a zoo model, evaluate weights."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arraynet.augment import affine_matrix, affine_resample
from arraynet.backends import Backend
from arraynet.backends.comm import Communicator, world
from arraynet.data import MNIST, load_mnist, one_hot, sha256_file, to_float
from arraynet.data_parallel import DataParallel, lr_scaling_for
from arraynet.distill import (
    check_teacher,
    describe_teacher,
    distillation_targets,
    teacher_probabilities,
)
from arraynet.io import WeightsError, load_arrays, load_model
from arraynet.model import Sequential
from arraynet.recipes import Recipe, recipe_for
from arraynet.training import Dataset, Trainer, evaluate
from arraynet.zoo import build_layout


def make_dataset(images: Any, labels: Any, backend: Backend) -> Dataset:
    """Host uint8 images and integer labels -> a Dataset on `backend`."""
    dtype = backend.dtype("float32")
    return Dataset(
        x=to_float(images, backend),
        y=backend.from_host(one_hot(labels), dtype=dtype),
        labels=labels.astype("int64"),
    )


def split_train(
    mnist: MNIST, val_split: int, train_limit: int | None
) -> tuple[tuple, tuple | None]:
    """The last `val_split` training images are held out; `train_limit` caps the rest."""
    n = mnist.train_images.shape[0]
    if not 0 <= val_split < n:
        raise ValueError(f"--val-split must be between 0 and {n - 1}")
    cut = n - val_split
    tr = (mnist.train_images[:cut], mnist.train_labels[:cut])
    if train_limit is not None:
        if train_limit <= 0:
            raise ValueError("--train-limit must be positive")
        tr = (tr[0][:train_limit], tr[1][:train_limit])
    val = (mnist.train_images[cut:], mnist.train_labels[cut:]) if val_split else None
    return tr, val


def _val_metrics(
    model: Sequential, val_ds: Dataset | None, par: DataParallel | None = None
) -> dict:
    """Error and loss of the final weights on the validation split (empty without one)."""
    if val_ds is None:
        return {}
    m = evaluate(model, val_ds, parallel=par)
    return {"val_error": m["error_rate"], "val_loss": m["loss"]}


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
    callbacks: dict[str, Callable] | None = None,
    quiet_data: bool = False,
    init: str | Path | None = None,
    teachers: list[str | Path] | None = None,
    comm: Communicator | None = None,
    sync_bn: bool = False,
    lr_scaling: bool = False,
    lr_warmup_epochs: float = 5.0,
) -> dict:
    """Train zoo model `name`; writes checkpoints and `model.safetensors` into `out_dir`.

    With `init`, training starts from that weights file (it must fit the layout) instead
    of a fresh initialisation: a fine-tune, e.g. weight averaging after a finished run.
    With a recipe whose `distill` is above 0, the training targets mix in the averaged
    probabilities of `teachers` (weights files; a resumed run reuses its own).

    Under a launcher with several ranks (`mpiexec -n N`, `srun`), or given `comm`, the run
    is data-parallel (arraynet.data_parallel): `recipe.batch_size` is the global batch,
    `sync_bn` normalises over it, `lr_scaling` scales the rate linearly from the zoo
    recipe's batch (with `lr_warmup_epochs` of warm-up); rank 0 alone writes.

    Returns the summary: error_rate, correct, total (test set), epochs_run, and more.
    """
    recipe = (recipe or recipe_for(name)).validate()
    comm = comm or world()
    par = None
    if comm.size > 1 or sync_bn or lr_scaling:
        scaling = None
        if lr_scaling:
            scaling = lr_scaling_for(recipe.batch_size, recipe_for(name).batch_size,
                                     lr_warmup_epochs)  # fmt: skip
        par = DataParallel(comm, backend, sync_bn=sync_bn, lr_scaling=scaling)
        par.check_batch(recipe.batch_size)
    out = Path(out_dir)
    if resume and not (out / "state.json").is_file():
        raise FileNotFoundError(f"{out}: nothing to resume (no state.json)")
    if not resume:
        _check_new_run_folder(out, probe=comm.is_root)
    if comm.size > 1 and not comm.is_root:
        comm.barrier()  # rank 0 fetches the files first, if they are missing
    mnist = load_mnist(data_dir, quiet=quiet_data or not comm.is_root)
    if comm.size > 1 and comm.is_root:
        comm.barrier()
    (trx, try_), val = split_train(mnist, val_split, train_limit)
    train = make_dataset(trx, try_, backend)
    val_ds = make_dataset(*val, backend) if val else None
    model = build_layout(name).build(backend, seed=seed)
    meta = {"model": name, "val_split": val_split, "train_limit": train_limit}
    if par is not None:
        meta.update(ranks=comm.size, sync_bn=sync_bn,
                    lr_scaling=par.lr_scaling.to_dict() if par.lr_scaling else None)  # fmt: skip
    saved = _saved_meta(out) if resume else {}
    if resume and saved.get("ranks", 1) != comm.size:
        raise ValueError(
            f"{out}: the run was trained on {saved.get('ranks', 1)} rank(s), not {comm.size}; "
            f"resume it with as many (mpiexec -n {saved.get('ranks', 1)})"
        )
    for key in ("sync_bn", "lr_scaling"):
        if resume and saved.get(key) != meta.get(key):
            raise ValueError(f"{out}: the run was begun with {key} {saved.get(key)}, not "
                             f"{meta.get(key)}")  # fmt: skip
    for key, flag in (("model", "--model"), ("val_split", "--val-split"),
                      ("train_limit", "--train-limit")):  # fmt: skip
        if key in saved and saved[key] != meta[key]:
            raise ValueError(f"{out}: the run was begun with {flag} {saved[key]}, not {meta[key]}")
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
    cb = callbacks or {}
    if par is not None:
        par.setup(model, seed)  # rank 0's weights everywhere, per-rank random streams
    trainer = Trainer(
        model, recipe, train, val_ds, seed=seed, out_dir=out, meta=meta,
        on_batch=cb.get("on_batch"), on_epoch=cb.get("on_epoch"),
        on_epoch_start=cb.get("on_epoch_start"), parallel=par,
    )  # fmt: skip
    if resume:
        trainer.load_checkpoint()
    t0 = time.perf_counter()
    summary = trainer.fit(epochs)
    test = make_dataset(mnist.test_images, mnist.test_labels, backend)
    metrics = evaluate(model, test, parallel=par)
    result = {
        "model": name,
        "error_rate": metrics["error_rate"],
        "correct": metrics["correct"],
        "total": metrics["total"],
        "test_loss": metrics["loss"],
        **summary,
        **_val_metrics(model, val_ds, par),
        "train_seconds": round(trainer.state.elapsed, 2),
        "wall_seconds_this_session": round(time.perf_counter() - t0, 2),
        "backend": backend.name,
        "device": backend.device_name(),
        "threads": backend.threads,
        "seed": seed,
        "out": str(out),
        "ranks": comm.size,
        "communicator": comm.name,
    }
    if par is not None:
        result["distributed"] = par.describe()
    trainer.save_final(out / "model.safetensors", result)
    return result


RUN_FILES = ("state.json", "checkpoint.safetensors", "model.safetensors")


def _check_new_run_folder(out: Path, probe: bool = True) -> None:
    """A fresh run's folder must not hold another run (or weights), and must be writable:
    both are checked before any training, so nothing is lost and no epoch is wasted."""
    found = [f for f in RUN_FILES if (out / f).exists()]
    if found == ["checkpoint.safetensors"]:  # a save cut between its two files
        raise ValueError(
            f"{out} holds checkpoint.safetensors without state.json (an interrupted save): "
            "remove it to start afresh, or pick another --out"
        )
    if found:
        raise ValueError(
            f"{out} already holds {found[0]}: continue that run with --resume, "
            "or pick another --out"
        )
    if not probe:  # (data-parallel ranks other than 0 write nothing)
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".arraynet-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"{out}: cannot write the run there ({e.strerror or e})") from None


def _saved_meta(out: Path) -> dict:
    """The run facts a run folder's checkpoint keeps (its state's 'meta')."""
    try:
        state = json.loads((out / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"{out}: cannot resume ({e})") from None
    return state.get("meta") or {}


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


def _start_from(model: Sequential, path: Path) -> dict:
    """Load `path`'s state into `model`; returns what the run's record keeps about it."""
    arrays, meta = load_arrays(path)
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
    paths: list[str], backend: Backend, data_dir: str | None = None, tta: bool = False
) -> dict:
    """Test error of one weights file, or of several averaged (an ensemble); `tta` also
    averages each model over shifted copies of every image."""
    xp = backend.xp
    mnist = load_mnist(data_dir, quiet=True)
    test = make_dataset(mnist.test_images, mnist.test_labels, backend)
    models = [load_model(p, backend)[0] for p in paths]
    if len(models) == 1 and not tta:
        m = evaluate(models[0], test)
        return {k: m[k] for k in ("error_rate", "correct", "total")}
    total = None
    for model in models:
        probs = predict_probs(model, test.x, tta)
        total = probs if total is None else total + probs
    pred = backend.to_host(xp.argmax(total, axis=1))
    correct = int((pred == test.labels).sum())
    n = len(test)
    return {"error_rate": (n - correct) / n, "correct": correct, "total": n}
