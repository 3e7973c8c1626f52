"""NumPy backend (CPU), with fast kernels that NumPy's strided views make possible."""

from __future__ import annotations

import array_api_compat.numpy as xp_numpy

from arraynet.backends import numpy_kernels
from arraynet.backends.base import Backend


def make(device: str | None = None, fast: bool = True) -> Backend:
    """The NumPy backend; `fast=False` runs only the portable Array-API code."""
    if device not in (None, "cpu"):
        raise ValueError(f"numpy backend has only the 'cpu' device, not {device!r}")
    kernels = numpy_kernels.KERNELS if fast else {}
    return Backend(name="numpy", xp=xp_numpy, device="cpu", kernels=dict(kernels))
