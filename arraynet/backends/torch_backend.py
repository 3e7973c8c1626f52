"""PyTorch backend: torch tensors (CPU or CUDA) through array-api-compat."""

from __future__ import annotations

from typing import Any

import numpy as np

from arraynet.backends.base import Array, Backend, BackendUnavailable


class TorchBackend(Backend):
    """Adapter for torch tensors."""

    torch: Any = None
    _gen: Any = None  # the torch.Generator of DeviceRNG's draws, on self.device
    _pinned: Any = None  # the last per-epoch page-locked buffer (kept alive for its copy)

    def default_rng_kind(self) -> str:
        return "device" if self.device.type == "cuda" else "host"

    def random_uniform(self, key: int, shape: tuple[int, ...], dtype: Any) -> Array:
        if self._gen is None:
            self._gen = self.torch.Generator(device=self.device)
        self._gen.manual_seed(key)
        return self.torch.rand(shape, generator=self._gen, dtype=dtype, device=self.device)

    def from_host_pinned(self, a: np.ndarray) -> Array:
        """On CUDA: copy into a page-locked buffer, then an asynchronous copy to the device
        (untested here: no GPU has run it yet). On the CPU: from_host."""
        if self.device.type != "cuda":
            return self.from_host(a)
        src = self.torch.from_numpy(np.ascontiguousarray(a))
        pinned = self.torch.empty(src.shape, dtype=src.dtype, pin_memory=True)
        pinned.copy_(src)
        self._pinned = pinned  # the copy below may still read it after we return
        return pinned.to(self.device, non_blocking=True)

    def from_host(self, a: np.ndarray, dtype: Any = None) -> Array:
        t = self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        return t

    def to_host(self, x: Array) -> np.ndarray:
        return x.detach().cpu().numpy()

    def set_tf32(self, on: bool) -> None:
        """torch's process-wide TF32 switches for cuBLAS products and cuDNN convolutions
        (torch's own default allows TF32 in cuDNN convolutions; arraynet's is off)."""
        self.torch.backends.cuda.matmul.allow_tf32 = bool(on)
        self.torch.backends.cudnn.allow_tf32 = bool(on)
        self.tf32 = bool(on) and self.device.type == "cuda"

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def devices(self) -> list[str]:
        names = ["cpu"]
        if self.torch.cuda.is_available():
            names += [f"cuda:{i}" for i in range(self.torch.cuda.device_count())]
        return names

    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"{self.device} ({self.torch.cuda.get_device_name(self.device)})"
        return "cpu"


def make(device: str | None = None, *, fast: bool = True, threads: int | None = None) -> Backend:
    """The torch backend on `device` ('cpu', 'cuda', 'cuda:N'; default cpu); `fast=False`
    runs only the portable Array-API code. (`threads` is the NumPy backend's.)"""
    try:
        import array_api_compat.torch as xpt
        import torch
    except ImportError as e:
        raise BackendUnavailable(
            "backend 'torch' is not installed: run `uv sync --extra torch` (or `pip install torch`)"
        ) from e
    dev = torch.device(device or "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"backend 'torch' sees no CUDA device for --device {device}")
    from arraynet.backends.kernels import Kernels
    from arraynet.backends.torch_kernels import TorchKernels

    torch.set_grad_enabled(False)
    kernels = TorchKernels() if fast else Kernels()
    b = TorchBackend(name="torch", xp=xpt, device=dev, kernels=kernels)
    b.torch = torch
    return b
