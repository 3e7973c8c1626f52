"""Parameter initialisers. Each draws from the model's seeded generator."""

from __future__ import annotations

import math
from typing import Any

from arraynet.backends.base import HostRNG

Array = Any
NAMES = ("uniform", "he_normal", "he_normal_input", "xavier", "zeros")


def initialize(
    name: str, rng: HostRNG, shape: tuple[int, ...], fan_in: int, fan_out: int, dtype: Any
) -> Array:
    """Draw an array of `shape`.

    uniform: U(-0.5, 0.5) (the seed's default); he_normal: N(0, 2/fan_in);
    xavier: U(-a, a) with a = sqrt(6/(fan_in+fan_out)); zeros.
    `he_normal_input` is he_normal where the caller passes the seed's fan_in (C*H*W of
    the conv input) instead of the usual C*kh*kw.
    """
    if name == "uniform":
        return rng.uniform(shape, -0.5, 0.5, dtype)
    if name in ("he_normal", "he_normal_input"):
        return rng.normal(shape, 0.0, math.sqrt(2.0 / fan_in), dtype)
    if name == "xavier":
        a = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(shape, -a, a, dtype)
    if name == "zeros":
        return rng.backend.xp.zeros(shape, dtype=dtype, device=rng.backend.device)
    raise ValueError(f"unknown initialiser {name!r}; choose from {', '.join(NAMES)}")


def check_name(name: Any) -> str:
    """`name` if it names an initialiser, else ValueError (so a layout fails when read)."""
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"unknown initialiser {name!r}; choose from {', '.join(NAMES)}")
    return name


def bias_init(weight_init: str) -> str:
    """The seed's rule: uniform weights come with uniform biases, the others with zeros."""
    return "uniform" if weight_init == "uniform" else "zeros"
