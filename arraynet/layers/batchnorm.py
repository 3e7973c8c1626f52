"""Batch normalisation over every axis but the last (dense and NHWC conv inputs)."""

from __future__ import annotations

import math

from array_api_compat import array_namespace

from arraynet.layers.base import Array, BuildContext, Layer, Shape


class BatchNorm(Layer):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta.

    Training uses the batch statistics and updates running ones
    (running = momentum * running + (1 - momentum) * batch); eval uses the running ones.
    """

    kind = "batchnorm"

    def __init__(self, momentum: float = 0.9, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = float(momentum)
        self.eps = float(eps)

    def _build(self, input_shape: Shape, ctx: BuildContext) -> Shape:
        c = input_shape[-1]
        xp, dev = ctx.backend.xp, ctx.backend.device
        self.params["gamma"] = xp.ones((c,), dtype=ctx.dtype, device=dev)
        self.params["beta"] = xp.zeros((c,), dtype=ctx.dtype, device=dev)
        self.buffers["running_mean"] = xp.zeros((c,), dtype=ctx.dtype, device=dev)
        self.buffers["running_var"] = xp.ones((c,), dtype=ctx.dtype, device=dev)
        return input_shape

    def forward(self, x: Array, training: bool = False) -> Array:
        xp = array_namespace(x)
        axes = tuple(range(x.ndim - 1))
        if training:
            mean = xp.mean(x, axis=axes)
            xc = x - mean
            var = xp.mean(xc * xc, axis=axes)
            inv = 1.0 / xp.sqrt(var + self.eps)
            xhat = xc * inv
            m = self.momentum
            count = math.prod(x.shape[:-1])
            unbiased = var * (count / max(count - 1, 1))
            self.buffers["running_mean"] = m * self.buffers["running_mean"] + (1 - m) * mean
            self.buffers["running_var"] = m * self.buffers["running_var"] + (1 - m) * unbiased
            self._xhat, self._inv = xhat, inv
        else:
            inv = 1.0 / xp.sqrt(self.buffers["running_var"] + self.eps)
            xhat = (x - self.buffers["running_mean"]) * inv
        return xhat * self.params["gamma"] + self.params["beta"]

    def backward(self, dy: Array) -> Array:
        xp = array_namespace(dy)
        axes = tuple(range(dy.ndim - 1))
        xhat, inv = self._xhat, self._inv
        self._xhat = self._inv = None
        dgamma = xp.sum(dy * xhat, axis=axes)
        dbeta = xp.sum(dy, axis=axes)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        count = math.prod(dy.shape[:-1])
        scale = self.params["gamma"] * inv / count
        return scale * (count * dy - dbeta - xhat * dgamma)

    def config(self) -> dict:
        return {"type": self.kind, "momentum": self.momentum, "eps": self.eps}
