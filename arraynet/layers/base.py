"""The Layer protocol: build from an input shape, explicit forward and backward."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from arraynet.backends.base import Backend, HostRNG

Array = Any
Shape = tuple[int, ...]

# Bounds on a layout's sizes: generous for any real model, small enough that a layout read
# from a file cannot ask for absurd allocations before its tensors are checked.
MAX_SIZE = 1 << 16  # an input side, a kernel, a stride, a pool window, padding
MAX_UNITS = 1 << 24  # dense units, conv filters
MAX_INPUT = 1 << 28  # values of one input sample


def whole(layer: str, name: str, value: Any, low: int, high: int) -> int:
    """`value` as an int in [low, high], else ValueError naming the layer and argument (a
    bool, a fraction, NaN, an infinity or another type is refused, not truncated)."""
    ok = isinstance(value, Integral) or (
        isinstance(value, Real) and math.isfinite(value) and float(value).is_integer()
    )
    if isinstance(value, bool) or not ok:
        raise ValueError(f"{layer} {name} must be a whole number, not {value!r}")
    v = int(value)
    if not low <= v <= high:
        raise ValueError(f"{layer} {name} must be {low}..{high}, not {v}")
    return v


def real(layer: str, name: str, value: Any, low: float, high: float) -> float:
    """`value` as a finite float in [low, high], else ValueError naming the layer."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{layer} {name} must be a finite number, not {value!r}")
    if not low <= float(value) <= high:
        raise ValueError(f"{layer} {name} must lie in [{low:g}, {high:g}], not {value!r}")
    return float(value)


def input_shape_of(shape: Any) -> Shape:
    """A model's input shape (without the batch axis) as a tuple of sizes, checked."""
    if not isinstance(shape, list | tuple) or not shape or len(shape) > 8:
        raise ValueError(f"input_shape wants 1 to 8 positive sizes, not {shape!r}")
    dims = tuple(whole("input_shape", "size", d, 1, MAX_SIZE) for d in shape)
    if math.prod(dims) > MAX_INPUT:
        raise ValueError(f"input_shape {dims} holds over {MAX_INPUT:,} values per sample")
    return dims


@dataclass
class BuildContext:
    """What a layer needs to create its parameters."""

    backend: Backend
    rng: HostRNG
    dtype: Any


class Layer:
    """Base class. Shapes exclude the batch axis; images are NHWC (channels last).

    After `build`, `params` holds trainable arrays, `buffers` non-trainable state, and
    `backward` fills `grads` with one array per parameter.
    """

    kind: str = "layer"

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        self.input_shape: Shape = ()
        self.output_shape: Shape = ()
        self.need_input_grad = True
        self.backend: Backend | None = None

    def build(self, input_shape: Shape, ctx: BuildContext) -> Shape:
        """Create parameters for inputs of `input_shape`; return the output shape."""
        self.input_shape = tuple(input_shape)
        self.backend = ctx.backend
        self.output_shape = self._build(self.input_shape, ctx)
        return self.output_shape

    def _build(self, input_shape: Shape, ctx: BuildContext) -> Shape:
        return input_shape

    def forward(self, x: Array, training: bool = False) -> Array:
        """Output for a batch `x`; in training mode, keep what backward needs."""
        raise NotImplementedError

    def backward(self, dy: Array) -> Array | None:
        """Given dL/dy, set `grads` and return dL/dx (None when not needed)."""
        raise NotImplementedError

    def config(self) -> dict:
        """JSON-able constructor arguments (with 'type')."""
        return {"type": self.kind}

    def rng_uses(self) -> bool:
        """True when forward in training mode draws random numbers."""
        return False

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"
