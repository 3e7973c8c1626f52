"""Random numbers drawn on the backend's own device, counter-based.

Every draw seeds a fresh device generator with a key derived on the host from
(seed, counter) and then advances the counter, so the generator's whole state is two
integers: JSON-able, the same on every backend, saved in checkpoints (a resumed run
continues the exact stream). The device generator is `torch.Generator` on torch (on the
tensor's device), `cupy.random.Generator` on CuPy and NumPy's PCG64 on numpy and
array-api-strict (whose "device" is the host); see `Backend.random_uniform`.

Decisions the host must take (the augmentation coin, the epoch's shuffle) are drawn on the
host from the same counter, which moves nothing between host and device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any
Backend = Any  # arraynet.backends.base.Backend


def draw_key(seed: int, counter: int) -> int:
    """The 64-bit key of draw number `counter` of stream `seed` (SeedSequence mixing)."""
    ss = np.random.SeedSequence([int(seed), int(counter)])
    return int(ss.generate_state(1, dtype=np.uint64)[0])


class DeviceRNG:
    """Seeded generator whose arrays are created on `backend`'s device (no host copy)."""

    kind = "device"

    def __init__(self, backend: Backend, seed: int, counter: int = 0) -> None:
        if int(seed) < 0:
            raise ValueError(f"seed must be non-negative, not {seed}")
        self.backend = backend
        self.seed = int(seed)
        self.counter = int(counter)

    def _key(self) -> int:
        key = draw_key(self.seed, self.counter)
        self.counter += 1
        return key

    def _host(self) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(self._key()))

    # -- on the device -----------------------------------------------------------------
    def uniform(self, shape: tuple[int, ...], low: float, high: float, dtype: Any) -> Array:
        """Uniform numbers in [low, high) on the device."""
        u = self.backend.random_uniform(self._key(), tuple(shape), dtype)
        return u * (high - low) + low

    def bernoulli_scaled(self, shape: tuple[int, ...], keep: float, dtype: Any) -> Array:
        """Inverted-dropout mask on the device: 1/keep with probability keep, else 0."""
        xp = self.backend.xp
        u = self.backend.random_uniform(self._key(), tuple(shape), xp.float32)
        return xp.astype(u < keep, dtype) * (1.0 / keep)

    def params(self, shape: tuple[int, ...], low: float, high: float) -> Array:
        """Small per-image parameters (augmentation), float64 on the device."""
        return self.uniform(shape, low, high, self.backend.dtype("float64"))

    # -- on the host (decisions, indices) ----------------------------------------------
    def host_random(self, size: int | None = None) -> Any:
        """Uniform [0, 1) float64 number(s) on the host (e.g. the augmentation coin)."""
        return self._host().random(size)

    def host_uniform(self, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
        """Uniform float64 numbers on the host."""
        return self._host().uniform(low, high, size=shape)

    def permutation(self, n: int) -> np.ndarray:
        """A random permutation of range(n), on the host."""
        return self._host().permutation(n)

    # -- state -------------------------------------------------------------------------
    def get_state(self) -> dict:
        """{'kind': 'device', 'seed': ..., 'counter': ...}."""
        return {"kind": self.kind, "seed": self.seed, "counter": self.counter}

    def set_state(self, state: dict) -> None:
        """Restore a snapshot made by get_state."""
        if not isinstance(state, dict) or state.get("kind") != self.kind:
            raise ValueError("not a device generator's state (the run used --rng host)")
        self.seed, self.counter = int(state["seed"]), int(state["counter"])


def rng_kind_of(state: dict) -> str:
    """'device' or 'host': which generator a checkpoint's rng_state belongs to."""
    return "device" if isinstance(state, dict) and state.get("kind") == "device" else "host"
