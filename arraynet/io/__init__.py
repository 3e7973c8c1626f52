"""File I/O: weights and checkpoints (safetensors + JSON), images, plots."""

from arraynet.io.weights import (
    WeightsError,
    atomic_write_bytes,
    atomic_write_json,
    load_arrays,
    load_model,
    save_arrays,
    save_model,
)

__all__ = [
    "WeightsError",
    "atomic_write_bytes",
    "atomic_write_json",
    "load_arrays",
    "load_model",
    "save_arrays",
    "save_model",
]
