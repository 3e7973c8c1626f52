"""array-api-strict backend: the standard and nothing else (a portability check)."""

from __future__ import annotations

import numpy as np

from arraynet.backends.base import Array, Backend, BackendUnavailable


class StrictBackend(Backend):
    """Adapter for array_api_strict arrays (copies go through DLPack)."""

    def to_host(self, x: Array) -> np.ndarray:
        return np.from_dlpack(x).copy()

    label: str = "cpu"  # the device's name as given ('cpu', 'device1', ...)

    def device_name(self) -> str:
        return self.label


def make(device: str | None = None, *, fast: bool = True, threads: int | None = None) -> Backend:
    """The array-api-strict backend on `device`: its default CPU_DEVICE (None or 'cpu'), or
    one of its other simulated devices ('device1', 'device2', ...), on which any array
    created without `device=` fails as soon as it meets one on the right device. It has
    only the portable code (`fast` and `threads` change nothing)."""
    try:
        import array_api_strict as xps
    except ImportError as e:
        raise BackendUnavailable(
            "backend 'array-api-strict' is not installed: run `uv sync` (dev group) "
            "or `pip install array-api-strict`"
        ) from e
    name = "CPU_DEVICE" if device in (None, "cpu") else device
    try:
        dev = xps.Device(name)
    except ValueError:
        raise ValueError(
            f"array-api-strict has no device {device!r}; choose cpu, device1 or device2"
        ) from None
    b = StrictBackend(name="array-api-strict", xp=xps, device=dev)
    b.label = "cpu" if name == "CPU_DEVICE" else name
    return b
