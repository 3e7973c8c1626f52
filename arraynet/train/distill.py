"""Knowledge distillation (Hinton et al. 2015): training targets that mix the one-hot
labels with the averaged probabilities of finished models (the teachers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arraynet.backends import Backend
from arraynet.data import sha256_file
from arraynet.io import WeightsError, load_arrays, load_model

Array = Any


def describe_teacher(path: Path, val_split: int) -> dict:
    """What a run's record keeps about one teacher; refuses a teacher that saw images the
    run holds out (its knowledge of them would leak into the validation error)."""
    _, meta = load_arrays(path)
    if val_split and meta.get("val_split") != val_split:
        raise WeightsError(
            f"{path}: a teacher must hold out the same {val_split} validation images as the "
            f"run (it held out {meta.get('val_split') or 0})"
        )
    return {
        "weights": str(path),
        "sha256": sha256_file(path),
        "model": meta.get("model"),
        "seed": meta.get("seed"),
        "val_split": meta.get("val_split"),
    }


def check_teacher(record: dict) -> Path:
    """The teacher file a resumed run names, unchanged since the run began."""
    path = Path(record["weights"])
    if not path.is_file():
        raise WeightsError(f"{path}: teacher weights missing; cannot resume the distillation")
    if sha256_file(path) != record["sha256"]:
        raise WeightsError(f"{path}: teacher weights changed since the run began")
    return path


def teacher_probabilities(
    paths: list[Path], x: Array, backend: Backend, batch_size: int = 500
) -> Array:
    """The teachers' class probabilities for images `x` (eval mode), averaged."""
    total = None
    for path in paths:
        model, _ = load_model(path, backend)
        if not model.fused_softmax:
            raise WeightsError(f"{path}: a teacher must end in softmax")
        probs = model.predict(x, batch_size)
        total = probs if total is None else total + probs
    return total / len(paths)


def distillation_targets(onehot: Array, teacher: Array, weight: float) -> Array:
    """weight * teacher probabilities + (1 - weight) * one-hot labels (rows sum to 1)."""
    return teacher * weight + onehot * (1.0 - weight)
