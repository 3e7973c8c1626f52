"""array-api-strict backend: the standard and nothing else (a portability check)."""

from __future__ import annotations

import numpy as np

from arraynet.backends.base import Array, Backend, BackendUnavailable


class StrictBackend(Backend):
    """Adapter for array_api_strict arrays (copies go through DLPack)."""

    def to_host(self, x: Array) -> np.ndarray:
        return np.from_dlpack(x).copy()


def make(device: str | None = None) -> Backend:
    """The array-api-strict backend (CPU only)."""
    try:
        import array_api_strict as xps
    except ImportError as e:
        raise BackendUnavailable(
            "backend 'array-api-strict' is not installed: run `uv sync` (dev group) "
            "or `pip install array-api-strict`"
        ) from e
    if device not in (None, "cpu"):
        raise ValueError(f"array-api-strict backend has only the 'cpu' device, not {device!r}")
    return StrictBackend(name="array-api-strict", xp=xps, device=xps.Device("CPU_DEVICE"))
