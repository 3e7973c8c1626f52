"""CuPy backend: NVIDIA GPUs."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from arraynet.backends.base import Array, Backend, BackendUnavailable


class CupyBackend(Backend):
    """Adapter for CuPy arrays on one GPU."""

    cupy: Any = None
    _pinned: Any = None

    def from_host(self, a: np.ndarray, dtype: Any = None) -> Array:
        with self.device:
            x = self.cupy.asarray(np.ascontiguousarray(a))
            return x.astype(dtype, copy=False) if dtype is not None else x

    def to_host(self, x: Array) -> np.ndarray:
        return self.cupy.asnumpy(x)

    def set_tf32(self, on: bool) -> None:
        """CuPy's float32 GEMMs in TF32 or plain FP32: CUPY_TF32 for this process, and the
        compute type CuPy already fixed if a product has run (it reads the variable once)."""
        os.environ["CUPY_TF32"] = "1" if on else "0"
        try:
            from cupy._core import _routines_linalg as linalg

            kind = linalg.COMPUTE_TYPE_TF32 if on else linalg.COMPUTE_TYPE_DEFAULT
            linalg.set_compute_type(self.cupy.float32, kind)
        except (ImportError, AttributeError):  # another CuPy: the variable alone decides
            pass
        self.tf32 = bool(on)

    def synchronize(self) -> None:
        self.cupy.cuda.Device(self.device.id).synchronize()

    def devices(self) -> list[str]:
        return [f"cuda:{i}" for i in range(self.cupy.cuda.runtime.getDeviceCount())]

    def device_name(self) -> str:
        props = self.cupy.cuda.runtime.getDeviceProperties(self.device.id)
        name = props["name"]
        return f"cuda:{self.device.id} ({name.decode() if isinstance(name, bytes) else name})"

    def default_rng_kind(self) -> str:
        return "device"

    def random_uniform(self, key: int, shape: tuple[int, ...], dtype: Any) -> Array:
        cp = self.cupy
        with self.device:
            gen = cp.random.Generator(cp.random.Philox4x3210(key))
            return gen.random(size=shape, dtype=dtype)

    def from_host_pinned(self, a: np.ndarray) -> Array:
        """Stage `a` in page-locked memory and copy it on the current stream without
        blocking the host (untested here: no GPU has run it yet)."""
        cp = self.cupy
        a = np.ascontiguousarray(a)
        with self.device:
            pinned = np.frombuffer(cp.cuda.alloc_pinned_memory(a.nbytes), a.dtype, a.size)
            pinned = pinned.reshape(a.shape)
            pinned[...] = a
            out = cp.empty(a.shape, dtype=a.dtype)
            out.set(pinned, stream=cp.cuda.get_current_stream())
        self._pinned = pinned  # keep the buffer alive while the copy may still read it
        return out


def cuda_kernels_requested() -> bool:
    """Whether ARRAYNET_CUDA_KERNELS=1 asks for arraynet's own CUDA kernels on CuPy
    (`arraynet.backends.cuda_kernels`: opt-in while no GPU has measured them)."""
    value = os.environ.get("ARRAYNET_CUDA_KERNELS", "").strip().lower()
    if value not in ("", "0", "1", "false", "true", "no", "yes", "off", "on"):
        raise ValueError(f"ARRAYNET_CUDA_KERNELS must be 1 or 0, not {value!r}")
    return value in ("1", "true", "yes", "on")


def cuda_usable() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def make(device: str | None = None, *, fast: bool = True, threads: int | None = None) -> Backend:
    """The CuPy backend on `device` ('cuda', 'cuda:N', or an integer string); `fast=False`
    runs only the portable Array-API code. (`threads` is the NumPy backend's.)"""
    hint = "run `uv sync --extra cuda12` (CUDA 12) or `uv sync --extra cuda13` (CUDA 13)"
    try:
        import cupy
    except ImportError as e:
        raise BackendUnavailable(f"backend 'cupy' is not installed: {hint}") from e
    try:
        import array_api_compat.cupy as xpc
    except ImportError as e:  # cupy is there; arraynet's own dependency is not
        raise BackendUnavailable(f"backend 'cupy' needs array-api-compat ({e})") from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        raise BackendUnavailable(f"backend 'cupy' cannot reach a CUDA driver ({e})") from e
    if count == 0:
        raise BackendUnavailable("backend 'cupy' sees no CUDA device")
    index = 0
    if device:
        tail = device.split(":", 1)[-1] if ":" in device else device
        if tail not in ("cuda", "gpu"):
            if not tail.isdigit() or int(tail) >= count:
                raise BackendUnavailable(f"backend 'cupy' has no device {device!r} ({count} seen)")
            index = int(tail)
    from arraynet.backends.cupy_kernels import CupyKernels
    from arraynet.backends.kernels import Kernels

    kernels = CupyKernels() if fast else Kernels()
    if fast and cuda_kernels_requested():
        from arraynet.backends.cuda_kernels import CudaKernels, CupyRuntime

        kernels = CudaKernels(CupyRuntime(cupy))
    b = CupyBackend(name="cupy", xp=xpc, device=cupy.cuda.Device(index), kernels=kernels)
    b.cupy = cupy
    b.device.use()
    return b
