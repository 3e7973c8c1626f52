"""Layers that only move data: Flatten and Dropout."""

from __future__ import annotations

import math

from array_api_compat import array_namespace

from arraynet.layers.base import Array, BuildContext, GradCase, Layer, OnnxGraph, Shape, real


class Flatten(Layer):
    """Flattens each sample to one axis, in NHWC (row-major) order.

    Shapes: (batch, d1, ..., dn) -> (batch, d1 * ... * dn). No parameters.

    Example::

        Sequential([Conv2D(8, 3), Flatten(), Dense(10)], (28, 28, 1))
    """

    kind = "flatten"

    def _build(self, input_shape: Shape, ctx: BuildContext) -> Shape:
        return (math.prod(input_shape),)

    def forward(self, x: Array, training: bool = False) -> Array:
        xp = array_namespace(x)
        return xp.reshape(x, (x.shape[0], self.output_shape[0]))

    def backward(self, dy: Array) -> Array:
        xp = array_namespace(dy)
        return xp.reshape(dy, (dy.shape[0], *self.input_shape))

    def onnx_nodes(self, g: OnnxGraph, x: str) -> str:
        x = g.channels_last(x)  # flatten NHWC's order, as the model does
        return g.node("Flatten", [x], "flatten", axis=1)

    @classmethod
    def gradcheck_cases(cls) -> list[GradCase]:
        return [GradCase("flatten", lambda: Flatten(), (3, 4, 2))]


class Dropout(Layer):
    """Inverted dropout: in training, zero a random `rate` share of the values and scale the
    rest by 1 / (1 - rate); at inference, the identity.

    Args:
        rate: the share dropped, in [0, 1).

    Shapes: any input (batch, ...) -> the same shape. No parameters; the mask is drawn
    from the model's generator.

    Example::

        Sequential([Flatten(), Dense(256, activation="relu"), Dropout(0.5), Dense(10)],
                   (28, 28, 1))
    """

    kind = "dropout"

    def __init__(self, rate: float = 0.2) -> None:
        super().__init__()
        rate = real("Dropout", "rate", rate, 0.0, 1.0)
        if not rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.rng = None

    def _build(self, input_shape: Shape, ctx: BuildContext) -> Shape:
        self.rng = ctx.rng
        return input_shape

    def forward(self, x: Array, training: bool = False) -> Array:
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        self._mask = self.rng.bernoulli_scaled(tuple(x.shape), 1.0 - self.rate, x.dtype)
        return x * self._mask

    def backward(self, dy: Array) -> Array:
        mask, self._mask = self._mask, None
        return dy if mask is None else dy * mask

    def rng_uses(self) -> bool:
        return self.rate > 0.0

    def config(self) -> dict:
        return {"type": self.kind, "rate": self.rate}

    def onnx_nodes(self, g: OnnxGraph, x: str) -> str:
        return x  # the identity at inference

    @classmethod
    def gradcheck_cases(cls) -> list[GradCase]:
        return [GradCase("dropout", lambda: Dropout(0.3), (4, 5))]
