"""Backend selector: `get_backend(name, device)` returns the adapter for one array library."""

from __future__ import annotations

from arraynet.backends.base import Array, Backend, BackendUnavailable, HostRNG

NAMES = ("numpy", "cupy", "torch", "array-api-strict")
ALIASES = {"strict": "array-api-strict", "np": "numpy", "cp": "cupy", "pytorch": "torch"}

__all__ = ["NAMES", "Array", "Backend", "BackendUnavailable", "HostRNG", "get_backend", "probe"]


def get_backend(
    name: str = "numpy",
    device: str | None = None,
    fast: bool = True,
    threads: int | None = None,
    tf32: bool = False,
) -> Backend:
    """Return the backend `name` ('numpy', 'cupy', 'torch', 'array-api-strict' or 'auto').

    'auto' picks CuPy when a CUDA device is usable, else NumPy. `threads` is the number of
    threads NumPy's fast kernels use (default: ARRAYNET_THREADS, else OPENBLAS_NUM_THREADS,
    else OMP_NUM_THREADS, else the usable CPUs); other backends ignore it. `tf32` lets
    float32 products and convolutions run in TF32 on NVIDIA GPUs (CuPy's CUPY_TF32,
    torch's cuBLAS and cuDNN switches); off, they run in plain float32
    (`Backend.set_tf32`). Raises BackendUnavailable (one line saying what to install)
    when the library or the device is missing, and ValueError for an unknown name or a
    bad thread count.
    """
    b = _make(name, device, fast, threads)
    b.set_tf32(tf32)
    return b


def _make(name: str, device: str | None, fast: bool, threads: int | None) -> Backend:
    key = ALIASES.get(name, name)
    if key == "auto":
        from arraynet.backends import cupy_backend

        key = "cupy" if cupy_backend.cuda_usable() else "numpy"
    if key == "numpy":
        from arraynet.backends import numpy_backend

        return numpy_backend.make(device, fast=fast, threads=threads)
    if key == "cupy":
        from arraynet.backends import cupy_backend

        return cupy_backend.make(device)
    if key == "torch":
        from arraynet.backends import torch_backend

        return torch_backend.make(device)
    if key == "array-api-strict":
        from arraynet.backends import strict_backend

        return strict_backend.make(device)
    raise ValueError(f"unknown backend {name!r}; choose from {', '.join((*NAMES, 'auto'))}")


def probe() -> list[dict]:
    """Which backends import here and which devices they see."""
    rows = []
    for name in NAMES:
        try:
            b = get_backend(name)
            rows.append({"backend": name, "available": True, "devices": b.devices(), "error": None})
        except (BackendUnavailable, ValueError) as e:
            rows.append({"backend": name, "available": False, "devices": [], "error": str(e)})
    return rows
