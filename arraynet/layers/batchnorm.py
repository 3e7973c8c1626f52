"""Batch normalisation over every axis but the last (dense and NHWC conv inputs)."""

from __future__ import annotations

import math
from collections.abc import Callable

from array_api_compat import array_namespace

from arraynet.backends.portable import channel_sum64, running_stats
from arraynet.layers.base import Array, BuildContext, GradCase, Layer, OnnxGraph, Shape, real


class BatchNorm(Layer):
    """Batch normalisation per channel (the last axis): y = gamma * (x - mean) /
    sqrt(var + eps) + beta.

    Training uses the batch statistics and updates running ones
    (running = momentum * running + (1 - momentum) * batch); eval uses the running ones.
    The per-channel sums accumulate in float64 (one value per channel comes back in the
    input's dtype): a float32 running sum over N*H*W values loses about log10(N*H*W)
    digits, which the normalisation then amplifies.

    Args:
        momentum: the running statistics' decay, in [0, 1].
        eps: added to the variance, in (0, 1].

    Shapes: (batch, features) or (batch, height, width, channels) -> the same shape.
    Parameters: gamma, beta (channels,); buffers: running_mean, running_var (channels,).

    Example::

        Sequential([Conv2D(16, 3), BatchNorm(), Activation("relu"), Flatten(), Dense(10)],
                   (28, 28, 1))
    """

    kind = "batchnorm"

    def __init__(self, momentum: float = 0.9, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = real("BatchNorm", "momentum", momentum, 0.0, 1.0)
        self.eps = real("BatchNorm", "eps", eps, 1e-30, 1.0)
        self._saved = None  # what the kernels' backward needs (a typed Saved value)
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
        kernels = self.backend.kernels
        gamma, beta = self.params["gamma"], self.params["beta"]
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        if not training:
            return kernels.batchnorm_inference(x, rm, rv, gamma, beta, self.eps)
        if self.sync is not None:
            return self._forward_sync(x)
        y, self._saved, rm, rv = kernels.batchnorm_forward(
            x, gamma, beta, rm, rv, self.momentum, self.eps
        )
        self.buffers["running_mean"], self.buffers["running_var"] = rm, rv
        return y

    def _forward_sync(self, x: Array) -> Array:
        """Training forward with the global batch's statistics: one all-reduce of the count,
        the sum and the sum of squares, taken about the running mean (equal on every rank)
        so that E[x^2] - E[x]^2 does not cancel away the variance."""
        xp = array_namespace(x)
        acc = xp.float64 if x.dtype == xp.float32 else x.dtype
        shift = self.buffers["running_mean"]
        xs = x - shift
        count = xp.full((1,), math.prod(x.shape[:-1]), dtype=acc, device=x.device)
        s1, s2 = channel_sum64(xs), channel_sum64(xs * xs)
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

    def _backward_sync(self, dy: Array) -> Array:
        """dx from the global sums of dy and dy * xhat (one all-reduce); the parameters'
        gradients stay this rank's own (the gradient all-reduce averages them)."""
        xp = array_namespace(dy)
        xhat, inv, n = self._xhat, self._inv, self._global_count
        self._xhat = self._inv = self._global_count = None
        dgamma = xp.astype(channel_sum64(dy * xhat), dy.dtype)
        dbeta = xp.astype(channel_sum64(dy), dy.dtype)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        c = dy.shape[-1]
        total = self.sync(xp.concat([dbeta, dgamma]))
        scale = self.params["gamma"] * inv / n
        return scale * (n * dy - total[:c] - xhat * total[c:])

    def _update_running(self, mean: Array, var: Array, count: int) -> None:
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        self.buffers["running_mean"], self.buffers["running_var"] = running_stats(
            rm, rv, mean, var, count, self.momentum
        )

    def backward(self, dy: Array) -> Array:
        if self._global_count is not None:
            return self._backward_sync(dy)
        saved, self._saved = self._saved, None
        dx, dgamma, dbeta = self.backend.kernels.batchnorm_backward(saved, dy, self.params["gamma"])
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        return dx

    def config(self) -> dict:
        return {"type": self.kind, "momentum": self.momentum, "eps": self.eps}

    def onnx_nodes(self, g: OnnxGraph, x: str) -> str:
        if g.rank not in (2, 4):  # ONNX normalises axis 1, arraynet the last one
            raise g.error("batch norm exports for flat or (height, width, channels) inputs only")
        if g.rank == 4:
            x = g.channels_first(x)
        i = g.index
        stats = (
            ("gamma", self.params["gamma"]),
            ("beta", self.params["beta"]),
            ("mean", self.buffers["running_mean"]),
            ("var", self.buffers["running_var"]),
        )
        inputs = [x] + [g.initializer(f"bn{i}_{k}", v) for k, v in stats]
        return g.node("BatchNormalization", inputs, f"bn{i}", epsilon=self.eps)

    @classmethod
    def gradcheck_cases(cls) -> list[GradCase]:
        return [
            GradCase("batchnorm-dense", lambda: BatchNorm(), (4,), batch=6),
            GradCase("batchnorm-conv", lambda: BatchNorm(), (3, 3, 2), batch=6),
        ]
