"""Backend selector: `get_backend(name, device)` returns the adapter for one array library.

The registry `BACKENDS` names, for each backend, the module whose
`make(device=None, *, fast=True, threads=None)` builds it; the module is imported only
when the backend is asked for. `register_backend` adds one (see CONTRIBUTING.md).
"""

from __future__ import annotations

import importlib

from arraynet.backends.base import Array, Backend, BackendUnavailable, HostRNG

BACKENDS: dict[str, str] = {
    "numpy": "arraynet.backends.numpy_backend",
    "cupy": "arraynet.backends.cupy_backend",
    "torch": "arraynet.backends.torch_backend",
    "array-api-strict": "arraynet.backends.strict_backend",
    # arraynet's CUDA kernels compiled for the host, on NumPy arrays: kernel parity without
    # a GPU (slow: every launch runs its threads one after another)
    "cuda-on-cpu": "arraynet.backends.cuda_on_cpu",
}
NAMES = tuple(BACKENDS)  # the built-in backends
ALIASES = {"strict": "array-api-strict", "np": "numpy", "cp": "cupy", "pytorch": "torch"}

__all__ = [
    "BACKENDS",
    "NAMES",
    "Array",
    "Backend",
    "BackendUnavailable",
    "HostRNG",
    "get_backend",
    "probe",
    "register_backend",
]


def register_backend(name: str, module: str, aliases: tuple[str, ...] = ()) -> None:
    """Make `get_backend(name)` build the backend with `module`'s `make` (a module path)."""
    taken = [n for n in (name, *aliases) if n in BACKENDS or n in ALIASES or n == "auto"]
    if taken:
        raise ValueError(f"backend name {taken[0]!r} is taken")
    BACKENDS[name] = module
    ALIASES.update(dict.fromkeys(aliases, name))


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
    if key not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join((*BACKENDS, 'auto'))}")
    return importlib.import_module(BACKENDS[key]).make(device, fast=fast, threads=threads)


def probe() -> list[dict]:
    """Which backends import here and which devices they see."""
    rows = []
    for name in BACKENDS:
        try:
            b = get_backend(name)
            rows.append({"backend": name, "available": True, "devices": b.devices(), "error": None})
        except (BackendUnavailable, ValueError) as e:
            rows.append({"backend": name, "available": False, "devices": [], "error": str(e)})
    return rows
