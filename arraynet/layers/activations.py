"""Element-wise activations and softmax."""

from __future__ import annotations

from array_api_compat import array_namespace

from arraynet.backends.portable import log_softmax, softmax
from arraynet.layers.base import Array, Layer

__all__ = ["Activation", "log_softmax", "softmax"]


class Activation(Layer):
    """tanh, relu, sigmoid or softmax (over the last axis)."""

    kind = "activation"
    FUNCTIONS = ("tanh", "relu", "sigmoid", "softmax")

    def __init__(self, fn: str) -> None:
        super().__init__()
        if fn not in self.FUNCTIONS:
            raise ValueError(f"unknown activation {fn!r}; choose from {', '.join(self.FUNCTIONS)}")
        self.fn = fn

    def forward(self, x: Array, training: bool = False) -> Array:
        xp = array_namespace(x)
        if self.fn == "tanh":
            y = xp.tanh(x)
        elif self.fn == "relu":
            y = xp.maximum(x, xp.zeros((), dtype=x.dtype, device=x.device))
        elif self.fn == "sigmoid":
            y = 1.0 / (1.0 + xp.exp(-x))
        else:
            y = softmax(x)
        if training:
            self._y = y
        return y

    def backward(self, dy: Array) -> Array:
        xp = array_namespace(dy)
        y = self._y
        self._y = None
        if self.fn == "tanh":
            return dy * (1.0 - y * y)
        if self.fn == "relu":
            return dy * xp.astype(y > 0, dy.dtype)  # (faster than where on NumPy)
        if self.fn == "sigmoid":
            return dy * y * (1.0 - y)
        return y * (dy - xp.sum(dy * y, axis=-1, keepdims=True))

    def config(self) -> dict:
        return {"type": self.kind, "fn": self.fn}
