"""Fully connected layer: y = activation(x @ W + b)."""

from __future__ import annotations

from arraynet.initializers import bias_init, check_name, initialize
from arraynet.layers.activations import activation_or_none
from arraynet.layers.base import (
    MAX_UNITS,
    Array,
    BuildContext,
    GradCase,
    Layer,
    OnnxGraph,
    Shape,
    whole,
)


class Dense(Layer):
    """Fully connected layer: y = activation(x @ kernel + bias).

    Args:
        units: number of outputs.
        init: weight initializer name (`arraynet.initializers`), e.g. "he_normal" or
            "uniform"; the bias gets the matching bias initializer.
        activation: applied after the linear part: "relu", "tanh", "sigmoid", "softmax"
            (see `Activation`), or None / "linear" for none.

    Shapes: (batch, features) -> (batch, units); put `Flatten` before it for images.
    Parameters: kernel (features, units), bias (units,).

    Example::

        Sequential([Flatten(), Dense(128, activation="relu"), Dense(10)], (28, 28, 1))
    """

    kind = "dense"

    def __init__(self, units: int, init: str = "he_normal", activation: str | None = None) -> None:
        super().__init__()
        self.units = whole("Dense", "units", units, 1, MAX_UNITS)
        self.init = check_name(init)
        self.act = activation_or_none(activation)

    @property
    def activation(self) -> str | None:
        """The activation's name, or None."""
        return None if self.act is None else self.act.fn

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
        if self.act is not None:
            self.act.build((self.units,), ctx)
        return (self.units,)

    def forward(self, x: Array, training: bool = False) -> Array:
        y = self.forward_linear(x, training)
        return y if self.act is None else self.act.forward(y, training)

    def forward_linear(self, x: Array, training: bool = False) -> Array:
        """x @ kernel + bias, before the activation (a final softmax's logits)."""
        if training:
            self._x = x
        return self.backend.kernels.dense_forward(x, self.params["kernel"], self.params["bias"])

    def backward(self, dy: Array) -> Array | None:
        if self.act is not None:
            dy = self.act.backward(dy)
        return self.backward_linear(dy)

    def backward_linear(self, dy: Array) -> Array | None:
        """`backward` from dL/d(linear output), past the activation (for a fused softmax)."""
        x, self._x = self._x, None
        dw, db, dx = self.backend.kernels.dense_backward(
            x, dy, self.params["kernel"], self.need_input_grad
        )
        self.grads["kernel"], self.grads["bias"] = dw, db
        return dx

    def config(self) -> dict:
        cfg = {"type": self.kind, "units": self.units, "init": self.init}
        if self.act is not None:
            cfg["activation"] = self.act.fn
        return cfg

    def onnx_nodes(self, g: OnnxGraph, x: str) -> str:
        i = g.index
        w = g.initializer(f"fc{i}_w", self.params["kernel"])
        b = g.initializer(f"fc{i}_b", self.params["bias"])
        y = g.node("Gemm", [x, w, b], f"fc{i}")
        return y if self.act is None else self.act.onnx_nodes(g, y)

    @classmethod
    def gradcheck_cases(cls) -> list[GradCase]:
        return [
            GradCase("dense", lambda: Dense(7), (5,)),
            GradCase("dense-uniform", lambda: Dense(4, init="uniform"), (6,)),
            GradCase("dense-relu", lambda: Dense(5, activation="relu"), (6,)),
            GradCase("dense-tanh", lambda: Dense(4, activation="tanh"), (5,)),
            GradCase("dense-sigmoid", lambda: Dense(4, activation="sigmoid"), (3,)),
            GradCase("dense-softmax", lambda: Dense(6, activation="softmax"), (4,)),
            GradCase("dense-linear", lambda: Dense(3, activation="linear"), (4,)),
        ]
