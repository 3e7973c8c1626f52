"""Max pooling over non-overlapping windows."""

from __future__ import annotations

from arraynet.layers.base import MAX_SIZE, Array, BuildContext, Layer, Shape, whole


class MaxPool2D(Layer):
    """p x p max pooling with stride p on NHWC inputs (a ragged edge is dropped)."""

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
