"""Max pooling over non-overlapping windows."""

from __future__ import annotations

from arraynet.layers.base import (
    MAX_SIZE,
    Array,
    BuildContext,
    GradCase,
    Layer,
    OnnxGraph,
    Shape,
    whole,
)


class MaxPool2D(Layer):
    """Max pooling over non-overlapping p x p windows of NHWC images.

    Args:
        pool_size: the window side p; the stride is p too.
        stride: None or p (only non-overlapping windows are supported).

    Shapes: (batch, height, width, channels) -> (batch, height // p, width // p, channels);
    a ragged bottom row or right column of fewer than p pixels is dropped.

    Example::

        Sequential([Conv2D(16, 3, activation="relu"), MaxPool2D(2), Flatten(), Dense(10)],
                   (28, 28, 1))
    """

    kind = "maxpool2d"

    def __init__(self, pool_size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.p = whole("MaxPool2D", "pool_size", pool_size, 1, MAX_SIZE)
        if stride is not None and whole("MaxPool2D", "stride", stride, 1, MAX_SIZE) != self.p:
            raise ValueError("MaxPool2D supports stride == pool_size only (non-overlapping)")

    def _build(self, input_shape: Shape, ctx: BuildContext) -> Shape:
        if len(input_shape) != 3:
            raise ValueError(f"MaxPool2D expects (height, width, channels), got {input_shape}")
        h, w, c = input_shape
        if h < self.p or w < self.p:
            raise ValueError(f"MaxPool2D window {self.p} is larger than input {input_shape}")
        return (h // self.p, w // self.p, c)

    def forward(self, x: Array, training: bool = False) -> Array:
        y, saved = self.backend.kernels.maxpool_forward(x, self.p, training)
        if training:
            self._saved = saved
        return y

    def backward(self, dy: Array) -> Array:
        saved, self._saved = self._saved, None
        return self.backend.kernels.maxpool_backward(saved, dy)

    def config(self) -> dict:
        return {"type": self.kind, "pool_size": self.p}

    def onnx_nodes(self, g: OnnxGraph, x: str) -> str:
        x = g.channels_first(x)
        size = [self.p, self.p]
        return g.node("MaxPool", [x], f"pool{g.index}", kernel_shape=size, strides=size)

    @classmethod
    def gradcheck_cases(cls) -> list[GradCase]:
        return [
            GradCase("maxpool-2", lambda: MaxPool2D(2), (6, 4, 3)),
            GradCase("maxpool-2-odd", lambda: MaxPool2D(2), (7, 5, 2)),
            GradCase("maxpool-3", lambda: MaxPool2D(3), (6, 9, 2)),
        ]
