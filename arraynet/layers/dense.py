"""Fully connected layer: y = x @ W + b."""

from __future__ import annotations

from arraynet.initializers import bias_init, check_name, initialize
from arraynet.layers.base import MAX_UNITS, Array, BuildContext, Layer, Shape, whole


class Dense(Layer):
    """Dense layer with `units` outputs; inputs are (batch, features)."""

    kind = "dense"

    def __init__(self, units: int, init: str = "he_normal") -> None:
        super().__init__()
        self.units = whole("Dense", "units", units, 1, MAX_UNITS)
        self.init = check_name(init)

    def _build(self, input_shape: Shape, ctx: BuildContext) -> Shape:
        if len(input_shape) != 1:
            raise ValueError(f"Dense expects flat inputs, got shape {input_shape}; add Flatten")
        fan_in = input_shape[0]
        self.params["kernel"] = initialize(
            self.init, ctx.rng, (fan_in, self.units), fan_in, self.units, ctx.dtype
        )
        self.params["bias"] = initialize(
            bias_init(self.init), ctx.rng, (self.units,), fan_in, self.units, ctx.dtype
        )
        return (self.units,)

    def forward(self, x: Array, training: bool = False) -> Array:
        if training:
            self._x = x
        return self.backend.kernels.dense_forward(x, self.params["kernel"], self.params["bias"])

    def backward(self, dy: Array) -> Array | None:
        x, self._x = self._x, None
        dw, db, dx = self.backend.kernels.dense_backward(
            x, dy, self.params["kernel"], self.need_input_grad
        )
        self.grads["kernel"], self.grads["bias"] = dw, db
        return dx

    def config(self) -> dict:
        return {"type": self.kind, "units": self.units, "init": self.init}
