"""NumPy backend (CPU), with fast kernels that NumPy's strided views make possible."""

from __future__ import annotations

import ctypes
import os
import sys

import array_api_compat.numpy as xp_numpy

from arraynet.backends import numpy_kernels
from arraynet.backends.base import Backend


def _tune_malloc() -> None:
    """Keep large freed buffers in the heap (glibc): big arrays are then reused instead of
    being mapped and page-faulted afresh at every step. Off with ARRAYNET_NO_MALLOPT=1."""
    global _TUNED
    if _TUNED or os.environ.get("ARRAYNET_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return
    _TUNED = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 31)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


_TUNED = False


def make(device: str | None = None, fast: bool = True) -> Backend:
    """The NumPy backend; `fast=False` runs only the portable Array-API code."""
    if device not in (None, "cpu"):
        raise ValueError(f"numpy backend has only the 'cpu' device, not {device!r}")
    if fast:
        _tune_malloc()
    kernels = numpy_kernels.KERNELS if fast else {}
    return Backend(name="numpy", xp=xp_numpy, device="cpu", kernels=dict(kernels))
