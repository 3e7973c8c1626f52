"""A backend that allocates nothing: its "arrays" are their shapes.

Building a model on it gives the shape of every parameter and buffer the layout would
create, at no cost, so a weights file's layout can be checked against its tensors before
any memory is taken (`Sequential.state_shapes`). It supports what layers use to build
(`zeros`, `ones`, `full`, `empty`, the generators' draws); a layer that does anything else
while building raises TypeError here.
"""

from __future__ import annotations

import math
from typing import Any

from arraynet.backends.base import Backend


class ShapeOnly:
    """The shape (and dtype name) of an array that was never made."""

    __slots__ = ("dtype", "shape")

    def __init__(self, shape: Any, dtype: Any = "float32") -> None:
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        if not all(isinstance(d, int) and d >= 0 for d in dims):
            raise TypeError(f"not an array shape: {shape!r}")
        self.shape = dims
        self.dtype = dtype

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class _Namespace:
    """The few array constructors layers call while building."""

    float32, float64 = "float32", "float64"

    @staticmethod
    def zeros(shape: Any, dtype: Any = "float32", device: Any = None) -> ShapeOnly:
        return ShapeOnly(shape, dtype)

    ones = empty = zeros

    @staticmethod
    def full(shape: Any, fill_value: Any, dtype: Any = "float32", device: Any = None) -> ShapeOnly:
        return ShapeOnly(shape, dtype)


class ShapeRNG:
    """A generator whose draws are shapes."""

    kind = "host"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def uniform(self, shape: Any, low: float, high: float, dtype: Any) -> ShapeOnly:
        return ShapeOnly(shape, dtype)

    def normal(self, shape: Any, mean: float, std: float, dtype: Any) -> ShapeOnly:
        return ShapeOnly(shape, dtype)

    def bernoulli_scaled(self, shape: Any, keep: float, dtype: Any) -> ShapeOnly:
        return ShapeOnly(shape, dtype)


def shape_backend() -> Backend:
    """The allocation-free backend (name 'shapes')."""
    return Backend(name="shapes", xp=_Namespace, device=None)
