"""Losses. Each returns (loss as a 0-d array, gradient with respect to its input)."""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

from arraynet.backends.kernels import PORTABLE, Kernels
from arraynet.backends.portable import clip

Array = Any


def mse(pred: Array, target: Array) -> tuple[Array, Array]:
    """Mean squared error over all elements; gradient 2 (p - y) / size."""
    xp = array_namespace(pred)
    diff = pred - target
    size = math.prod(diff.shape)
    return xp.sum(diff * diff) / size, diff * (2.0 / size)


def cross_entropy(prob: Array, target: Array, eps: float = 1e-7) -> tuple[Array, Array]:
    """Categorical cross-entropy of probabilities (mean over the batch)."""
    xp = array_namespace(prob)
    n = prob.shape[0]
    p = clip(prob, eps, 1.0)
    loss = -xp.sum(target * xp.log(p)) / n
    return loss, -(target / p) / n


def softmax_cross_entropy(
    logits: Array, target: Array, smoothing: float = 0.0, kernels: Kernels | None = None
) -> tuple[Array, Array]:
    """Softmax + cross-entropy fused, stable; gradient (softmax - y) / batch.

    `smoothing` > 0 mixes the one-hot targets with the uniform distribution. The work is
    the kernel contract's `softmax_cross_entropy`: `kernels` (a backend's, e.g.
    `model.backend.kernels`), else the portable definition.
    """
    return (kernels or PORTABLE).softmax_cross_entropy(logits, target, smoothing)


LOSSES = {"mse": mse, "cross_entropy": cross_entropy}
