"""The Layer protocol: build from an input shape, explicit forward and backward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arraynet.backends.base import Backend, HostRNG

Array = Any
Shape = tuple[int, ...]


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
