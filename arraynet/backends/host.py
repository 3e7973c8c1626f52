"""Arrays of any supported library as NumPy arrays on the host, the backend that holds an
array natively (the one place outside the adapters that knows the libraries by name), and
the host buffers message passing (MPI) reads and writes."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["backend_name_of", "host_array", "host_buffer", "host_copy"]


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


def host_copy(backend: Any, x: Any) -> np.ndarray:
    """A contiguous host copy of the backend array `x` (a buffer MPI may write into)."""
    return np.ascontiguousarray(backend.to_host(x))


def host_buffer(values: Any, dtype: str = "uint8") -> np.ndarray:
    """A new, writable, contiguous host array: of `values` (a sequence of numbers) in
    `dtype`, or of the bytes of `values` when it is `bytes`."""
    if isinstance(values, bytes | bytearray):
        return np.frombuffer(values, dtype=np.uint8).copy()
    return np.array(values, dtype=dtype)
