"""Batch normalisation over every axis but the last (dense and NHWC conv inputs)."""

from __future__ import annotations

import math
from collections.abc import Callable

from array_api_compat import array_namespace

from arraynet import ops
from arraynet.layers.base import Array, BuildContext, Layer, Shape


class BatchNorm(Layer):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta.

    Training uses the batch statistics and updates running ones
    (running = momentum * running + (1 - momentum) * batch); eval uses the running ones.
    The per-channel sums accumulate in float64 (one value per channel comes back in the
    input's dtype): a float32 running sum over N*H*W values loses about log10(N*H*W)
    digits, which the normalisation then amplifies.
    """

    kind = "batchnorm"

    def __init__(self, momentum: float = 0.9, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = float(momentum)
        self.eps = float(eps)
        self._saved = None  # what the fast kernel's backward needs
        # Synchronised batch norm (data-parallel runs): a function that sums an array over
        # the ranks; training then normalises with the statistics of the global batch.
        self.sync: Callable[[Array], Array] | None = None
        self._global_count: float | None = None

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
        if training and self.sync is not None:
            return self._forward_sync(x, axes)
        fast = self.backend.kernel("batchnorm_forward") if self.backend is not None else None
        if training and fast is not None:
            y, self._saved, mean, var = fast(x, self.params["gamma"], self.params["beta"], self.eps)
            self._update_running(mean, var, math.prod(x.shape[:-1]))
            return y
        if training:
            mean = _channel_sum(x, axes) / math.prod(x.shape[:-1])
            xc = x - mean
            var = _channel_sum(xc * xc, axes) / math.prod(x.shape[:-1])
            inv = 1.0 / xp.sqrt(var + self.eps)
            xhat = xc * inv
            self._update_running(mean, var, math.prod(x.shape[:-1]))
            self._xhat, self._inv = xhat, inv
            return xhat * self.params["gamma"] + self.params["beta"]
        inv = 1.0 / xp.sqrt(self.buffers["running_var"] + self.eps)
        mean = self.buffers["running_mean"]
        infer = ops.dispatch(self.backend, "batchnorm_inference", ops.batchnorm_inference)
        return infer(x, mean, inv, self.params["gamma"], self.params["beta"])

    def _forward_sync(self, x: Array, axes: tuple[int, ...]) -> Array:
        """Training forward with the global batch's statistics: one all-reduce of the count,
        the sum and the sum of squares, taken about the running mean (equal on every rank)
        so that E[x^2] - E[x]^2 does not cancel away the variance."""
        xp = array_namespace(x)
        acc = xp.float64 if x.dtype == xp.float32 else x.dtype
        shift = self.buffers["running_mean"]
        xs = x - shift
        count = xp.full((1,), math.prod(x.shape[:-1]), dtype=acc, device=x.device)
        s1 = xp.sum(xs, axis=axes, dtype=acc)
        s2 = xp.sum(xs * xs, axis=axes, dtype=acc)
        total = self.sync(xp.concat([count, s1, s2]))
        c = x.shape[-1]
        n = float(total[0])
        mean_s = total[1 : 1 + c] / n
        var = xp.maximum(total[1 + c :] / n - mean_s * mean_s, xp.zeros_like(mean_s))
        mean = shift + xp.astype(mean_s, x.dtype)
        var = xp.astype(var, x.dtype)
        xc = x - mean
        inv = 1.0 / xp.sqrt(var + self.eps)
        xhat = xc * inv
        self._update_running(mean, var, int(n))
        self._xhat, self._inv, self._global_count = xhat, inv, n
        return xhat * self.params["gamma"] + self.params["beta"]

    def _backward_sync(self, dy: Array, axes: tuple[int, ...]) -> Array:
        """dx from the global sums of dy and dy * xhat (one all-reduce); the parameters'
        gradients stay this rank's own (the gradient all-reduce averages them)."""
        xp = array_namespace(dy)
        xhat, inv, n = self._xhat, self._inv, self._global_count
        self._xhat = self._inv = self._global_count = None
        dgamma = _channel_sum(dy * xhat, axes)
        dbeta = _channel_sum(dy, axes)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        c = dy.shape[-1]
        total = self.sync(xp.concat([dbeta, dgamma]))
        scale = self.params["gamma"] * inv / n
        return scale * (n * dy - total[:c] - xhat * total[c:])

    def _update_running(self, mean: Array, var: Array, count: int) -> None:
        m = self.momentum
        unbiased = var * (count / max(count - 1, 1))
        self.buffers["running_mean"] = m * self.buffers["running_mean"] + (1 - m) * mean
        self.buffers["running_var"] = m * self.buffers["running_var"] + (1 - m) * unbiased

    def backward(self, dy: Array) -> Array:
        saved, self._saved = self._saved, None
        if saved is not None:
            fast = self.backend.kernel("batchnorm_backward")
            dx, self.grads["gamma"], self.grads["beta"] = fast(dy, saved, self.params["gamma"])
            return dx
        axes = tuple(range(dy.ndim - 1))
        if self._global_count is not None:
            return self._backward_sync(dy, axes)
        xhat, inv = self._xhat, self._inv
        self._xhat = self._inv = None
        dgamma = _channel_sum(dy * xhat, axes)
        dbeta = _channel_sum(dy, axes)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        count = math.prod(dy.shape[:-1])
        scale = self.params["gamma"] * inv / count
        return scale * (count * dy - dbeta - xhat * dgamma)

    def config(self) -> dict:
        return {"type": self.kind, "momentum": self.momentum, "eps": self.eps}


def _channel_sum(x: Array, axes: tuple[int, ...]) -> Array:
    """Sum over `axes`, accumulated in float64, returned in x's dtype."""
    xp = array_namespace(x)
    acc = xp.float64 if x.dtype == xp.float32 else x.dtype
    return xp.astype(xp.sum(x, axis=axes, dtype=acc), x.dtype)
