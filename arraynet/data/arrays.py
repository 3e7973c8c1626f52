"""Arrays a user hands to training: images or vectors and labels, checked and converted
(uint8 scaled to [0, 1], labels to target rows) on the host."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def host_array(x: Any) -> np.ndarray:
    """A NumPy view or copy of an array of any supported library (NumPy, CuPy, PyTorch,
    array-api-strict, or anything NumPy can read)."""
    if isinstance(x, np.ndarray):
        return x
    lib = type(x).__module__.split(".")[0]
    if lib == "torch":
        return x.detach().cpu().numpy()
    if lib == "cupy":
        return x.get()
    try:
        return np.from_dlpack(x)
    except (TypeError, AttributeError, RuntimeError, BufferError):
        return np.asarray(x)


def backend_name_of(x: Any) -> str:
    """The backend that holds `x` natively ('numpy' for NumPy and plain sequences)."""
    lib = type(x).__module__.split(".")[0]
    return {"torch": "torch", "cupy": "cupy", "array_api_strict": "array-api-strict"}.get(
        lib, "numpy"
    )


def float_inputs(x: Any, input_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Host float32 inputs: uint8 scaled to [0, 1], floats as float32; (N, H, W) grey
    images get a channel axis (unless the model takes (H, W) samples as they are)."""
    a = host_array(x)
    if a.ndim < 2:
        raise ValueError(f"inputs must be (N, H, W, C) images or (N, D) vectors, not {a.shape}")
    if a.ndim == 3 and (input_shape is None or tuple(input_shape) != tuple(a.shape[1:])):
        a = a[..., None]
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype.kind == "f":
        return a.astype(np.float32, copy=False)
    raise ValueError(f"inputs must be uint8 or floating point, not {a.dtype}")


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
        rows = np.zeros((a.shape[0], num_classes), dtype=np.float32)
        rows[np.arange(a.shape[0]), labels] = 1.0
        return rows, labels
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
