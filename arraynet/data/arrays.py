"""Arrays a user hands to training: images or vectors and labels, checked and converted
(uint8 scaled to [0, 1], labels to target rows) on the host.

The two conversions are defined here once: `uint8_to_float32` (uint8 -> float32 in [0, 1])
and `one_hot_rows` (class indices -> float32 one-hot rows); `float_inputs`, `to_float`,
`label_targets` and `one_hot` check their inputs and call them."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

# Re-exported from their home in `arraynet.backends.host` (the library-specific code).
from arraynet.backends.host import backend_name_of, host_array

__all__ = [
    "backend_name_of",
    "check_inputs_fit",
    "data_fingerprint",
    "float_inputs",
    "host_array",
    "label_targets",
    "one_hot",
    "one_hot_rows",
    "to_float",
    "uint8_to_float32",
]


def uint8_to_float32(a: np.ndarray) -> np.ndarray:
    """uint8 values 0..255 -> float32 in [0, 1], as `a.astype(float32) / float32(255)` (the
    one conversion: every uint8 input reaches a model through it)."""
    return a.astype(np.float32) / np.float32(255.0)


def one_hot_rows(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Checked integer class indices (N,) -> float32 one-hot rows (N, num_classes)."""
    rows = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    rows[np.arange(labels.shape[0]), labels] = 1.0
    return rows


def float_inputs(x: Any, input_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Host float32 inputs: uint8 scaled to [0, 1], floats as float32; (N, H, W) grey
    images get a channel axis (unless the model takes (H, W) samples as they are)."""
    a = host_array(x)
    if a.ndim < 2:
        raise ValueError(f"inputs must be (N, H, W, C) images or (N, D) vectors, not {a.shape}")
    if a.ndim == 3 and (input_shape is None or tuple(input_shape) != tuple(a.shape[1:])):
        a = a[..., None]
    if a.dtype == np.uint8:
        return uint8_to_float32(a)
    if a.dtype.kind == "f":
        return a.astype(np.float32, copy=False)
    raise ValueError(f"inputs must be uint8 or floating point, not {a.dtype}")


def to_float(images_uint8: np.ndarray, backend: Any) -> Any:
    """uint8 images (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1] on `backend` (NHWC)."""
    x = np.asarray(images_uint8)
    if x.dtype != np.uint8:
        raise ValueError(f"to_float expects uint8 images, got {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"to_float expects images of shape (N, H, W), got {x.shape}")
    return backend.from_host(uint8_to_float32(x), backend.dtype("float32"))


def one_hot(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Integer labels (N,) -> float32 one-hot rows (N, num_classes)."""
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"one_hot expects a 1-D integer array, got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return one_hot_rows(y, num_classes)


def label_targets(y: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(target rows (N, num_classes) float32, integer labels (N,) int64) from integer
    labels or from one-hot (or probability) rows."""
    a = host_array(y)
    if a.ndim == 1:
        if a.dtype.kind not in "iu":
            raise ValueError(f"labels must be integers (or one-hot rows), not {a.dtype}")
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            lo, hi = int(a.min()), int(a.max())
            raise ValueError(f"labels run from {lo} to {hi}, but the model has {num_classes} "
                             f"outputs (classes 0..{num_classes - 1})")  # fmt: skip
        labels = a.astype(np.int64)
        return one_hot_rows(labels, num_classes), labels
    if a.ndim == 2:
        if a.shape[1] != num_classes:
            raise ValueError(f"one-hot labels have {a.shape[1]} columns, but the model has "
                             f"{num_classes} outputs")  # fmt: skip
        rows = a.astype(np.float32)
        return rows, rows.argmax(axis=1).astype(np.int64)
    raise ValueError(f"labels must be (N,) integers or (N, K) one-hot rows, not {a.shape}")


def check_inputs_fit(x_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> None:
    """One line naming both shapes when the data's samples do not fit the model's input."""
    if tuple(x_shape) != tuple(input_shape):
        raise ValueError(f"the model takes inputs of shape {tuple(input_shape)}, but the data's "
                         f"samples are {tuple(x_shape)}")  # fmt: skip


def data_fingerprint(x: Any, y: Any, val: tuple | None = None) -> dict:
    """Sample count and SHA-256 of the training (and validation) arrays: what a resumed
    run checks to be continuing on the same data."""
    h = hashlib.sha256()
    for a in (x, y, *(val or ())):
        a = np.ascontiguousarray(host_array(a))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a)
    return {"samples": int(host_array(y).shape[0]), "sha256": h.hexdigest()}
