"""The backend adapter: everything a layer needs that the Array API standard lacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arraynet.backends.kernels import Kernels

Array = Any


class BackendUnavailable(RuntimeError):
    """A backend cannot be used here; the message says what to install or fix."""


def derived_seed(seed: int, *keys: int) -> int:
    """An independent 64-bit seed derived from `seed` and `keys` (e.g. a rank and a job
    size): NumPy's SeedSequence, so nearby inputs give unrelated streams."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint64)[0])


class HostRNG:
    """Seeded random numbers drawn on the host with NumPy, then copied to the backend.

    Every backend can use it, so two backends fed the same seed see identical numbers; on a
    GPU each array it hands over is a host-to-device copy.
    """

    kind = "host"

    def __init__(self, backend: Backend, seed: int) -> None:
        self.backend = backend
        self.gen = np.random.Generator(np.random.PCG64(seed))

    def _out(self, a: np.ndarray, dtype: Any) -> Array:
        return self.backend.from_host(a, dtype=dtype)

    def uniform(self, shape: tuple[int, ...], low: float, high: float, dtype: Any) -> Array:
        """Uniform numbers in [low, high)."""
        return self._out(self.gen.uniform(low, high, size=shape).astype(np.float64), dtype)

    def normal(self, shape: tuple[int, ...], mean: float, std: float, dtype: Any) -> Array:
        """Normal numbers with the given mean and standard deviation."""
        return self._out(self.gen.normal(mean, std, size=shape), dtype)

    def bernoulli_scaled(self, shape: tuple[int, ...], keep: float, dtype: Any) -> Array:
        """Inverted-dropout mask: 1/keep with probability keep, else 0."""
        u = self.gen.random(size=shape, dtype=np.float32)
        return self._out((u < keep).astype(np.float32) * np.float32(1.0 / keep), dtype)

    def permutation(self, n: int) -> np.ndarray:
        """A random permutation of range(n), on the host (it indexes host data)."""
        return self.gen.permutation(n)

    def host_uniform(self, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
        """Uniform float64 numbers kept on the host (for small per-image parameters)."""
        return self.gen.uniform(low, high, size=shape)

    def host_random(self, size: int | None = None) -> Any:
        """Uniform [0, 1) float64 number(s) on the host."""
        return self.gen.random(size)

    def params(self, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
        """Small per-image parameters (augmentation): here float64 on the host, drawn
        exactly as `host_uniform` draws them."""
        return self.gen.uniform(low, high, size=shape)

    def get_state(self) -> dict:
        """A JSON-serialisable snapshot of the generator."""
        return _jsonable(self.gen.bit_generator.state)

    def set_state(self, state: dict) -> None:
        """Restore a snapshot made by get_state."""
        if state.get("kind", "host") != "host":
            raise ValueError(f"not a host generator's state (kind {state.get('kind')!r})")
        self.gen.bit_generator.state = state


def _jsonable(state: dict) -> dict:
    out: dict = {}
    for k, v in state.items():
        out[k] = (
            _jsonable(v) if isinstance(v, dict) else (int(v) if isinstance(v, np.integer) else v)
        )
    return out


@dataclass
class Backend:
    """Base adapter. Subclasses set `name`, `xp` and the copy functions; `kernels` holds
    the backend's fast kernels behind the one contract (`arraynet.backends.kernels`), the
    portable definitions where it has none."""

    name: str
    xp: Any
    device: Any = None
    kernels: Kernels = field(default_factory=Kernels)
    threads: int | None = None  # host threads of the fast kernels (NumPy), if it has any
    tf32: bool = False  # float32 products and convolutions in TF32 (GPU backends, set_tf32)

    # -- host <-> device -------------------------------------------------------------
    def from_host(self, a: np.ndarray, dtype: Any = None) -> Array:
        """Copy a NumPy array onto this backend's device (optionally casting)."""
        x = self.xp.asarray(np.ascontiguousarray(a), device=self.device)
        if dtype is not None and x.dtype != dtype:
            x = self.xp.astype(x, dtype)
        return x

    def to_host(self, x: Array) -> np.ndarray:
        """Copy an array of this backend to a NumPy array on the host."""
        return np.asarray(x)

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU backends)."""

    def devices(self) -> list[str]:
        """Names of the devices this backend sees."""
        return ["cpu"]

    def device_name(self) -> str:
        """A human-readable name of the device in use."""
        return "cpu"

    def describe(self) -> str:
        """'numpy (cpu, 2 threads)': the name, device and kernel threads, for people."""
        threads = f", {self.threads} thread{'s' * (self.threads > 1)}" if self.threads else ""
        tf32 = ", TF32" if self.tf32 else ""
        return f"{self.name} ({self.device_name()}{threads}{tf32})"

    def set_tf32(self, on: bool) -> None:
        """Let float32 matrix products and convolutions run in TF32 on NVIDIA tensor cores
        (10-bit mantissa inputs, float32 sums), or not. CPU backends have no TF32: `tf32`
        stays False."""
        self.tf32 = False

    # -- dtypes and random numbers ------------------------------------------------------
    def dtype(self, name: str) -> Any:
        """The namespace's dtype object for 'float32' or 'float64'."""
        return getattr(self.xp, name)

    def rng(self, seed: int, host: bool = True) -> Any:
        """A seeded generator: `host=True` a HostRNG (identical across backends), else a
        DeviceRNG that draws on this backend's device (see arraynet.backends.device_rng)."""
        if host:
            return HostRNG(self, seed)
        from arraynet.backends.device_rng import DeviceRNG

        return DeviceRNG(self, seed)

    def default_rng_kind(self) -> str:
        """'host' or 'device': what a training run draws dropout masks and augmentation
        from unless told (`--rng`). CPU backends: 'host' (free there, and the same numbers
        on every backend); GPU backends override it with 'device'."""
        return "host"

    def random_uniform(self, key: int, shape: tuple[int, ...], dtype: Any) -> Array:
        """Uniform [0, 1) numbers of `dtype` on the device from a generator freshly seeded
        with `key` (the counter-based draws of DeviceRNG). Here: NumPy's PCG64, for numpy and
        array-api-strict, whose devices are the host (strict has no generator of its own)."""
        gen = np.random.Generator(np.random.PCG64(key))
        kind = "float32" if dtype == self.xp.float32 else "float64"
        return self.xp.asarray(gen.random(size=shape, dtype=kind), device=self.device)

    def set_scalars(self, buf: Array, values: list[float]) -> None:
        """Write host numbers into a small array on the device, in place and one element
        at a time: each write is a fill with the number as its argument (no host-to-device
        copy, no wait), and code that reads `buf` later, a replayed CUDA graph included,
        sees the new numbers. The one in-place write outside the kernels (the step's
        learning rate and bias corrections, `Optimizer.prepare`)."""
        for i, v in enumerate(values):
            buf[i] = v

    def from_host_pinned(self, a: np.ndarray) -> Array:
        """Copy a per-epoch host array (the shuffled order) to the device; GPU backends
        stage it in page-locked memory so the copy does not block the host."""
        return self.from_host(a)

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, device={self.device_name()!r})"
