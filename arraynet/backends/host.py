"""Arrays of any supported library as NumPy arrays on the host, and the backend that holds
an array natively: the one place outside the adapters that knows the libraries by name."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["backend_name_of", "host_array"]


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
