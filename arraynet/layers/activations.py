"""Element-wise activations and softmax."""

from __future__ import annotations

from array_api_compat import array_namespace

from arraynet.backends.portable import log_softmax, softmax
from arraynet.layers.base import Array, GradCase, Layer, OnnxGraph

__all__ = ["Activation", "activation_or_none", "log_softmax", "softmax"]

ONNX_OPS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softmax": "Softmax"}


class Activation(Layer):
    """An element-wise activation, or softmax over the last axis (the channels).

    Args:
        fn: "tanh", "relu", "sigmoid" or "softmax".

    Shapes: any input (batch, ...) -> the same shape.

    Example::

        Sequential([Flatten(), Dense(10), Activation("softmax")], (28, 28, 1))

    `Dense` and `Conv2D` take `activation=` and apply one of these after their linear part.
    """

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

    def onnx_nodes(self, g: OnnxGraph, x: str) -> str:
        if self.fn not in ONNX_OPS:
            raise g.error(f"activation {self.fn!r} has no ONNX export rule")
        # softmax is over the channels, axis 1 of NCHW (opset >= 13: one axis)
        attrs = {"axis": 1 if g.nchw else -1} if self.fn == "softmax" else {}
        return g.node(ONNX_OPS[self.fn], [x], self.fn, **attrs)

    @classmethod
    def gradcheck_cases(cls) -> list[GradCase]:
        return [
            GradCase("tanh", lambda: Activation("tanh"), (6,)),
            GradCase("relu", lambda: Activation("relu"), (3, 3, 2)),
            GradCase("sigmoid", lambda: Activation("sigmoid"), (6,)),
            GradCase("softmax", lambda: Activation("softmax"), (5,)),
        ]


def activation_or_none(fn: str | None) -> Activation | None:
    """The `Activation` a layer's `activation=` argument asks for: None for None or
    "linear" (Keras's name for no activation); an unknown name is a ValueError."""
    if fn is None or fn == "linear":
        return None
    if not isinstance(fn, str):
        raise ValueError(f"activation must be a name or None, not {fn!r}")
    return Activation(fn)
