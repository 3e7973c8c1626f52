"""File I/O: weights and checkpoints (safetensors + JSON), images, plots."""

from arraynet.files import atomic_write_bytes, atomic_write_json, file_sha256
from arraynet.io.weights import (
    WeightsError,
    check_origin,
    load_arrays,
    load_model,
    read_header,
    refresh_manifest,
    save_arrays,
    save_model,
    write_manifest,
)

__all__ = [
    "WeightsError",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_origin",
    "file_sha256",
    "load_arrays",
    "load_model",
    "read_header",
    "refresh_manifest",
    "save_arrays",
    "save_model",
    "write_manifest",
]
