"""Stochastic weight averaging (SWA): a uniform average of epoch-end weights, and the
batch-norm statistics recomputed for the averaged network."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from arraynet.layers.batchnorm import BatchNorm
from arraynet.network import Network

Array = Any


class WeightAverage:
    """Running uniform mean of a model's parameters, one snapshot at a time."""

    def __init__(self, mean: dict[str, Array] | None = None, count: int = 0) -> None:
        self.mean = mean
        self.count = count

    def add(self, params: dict[str, Array]) -> None:
        """mean <- mean + (params - mean) / (count + 1)."""
        self.count += 1
        if self.mean is None:
            xp = array_namespace(*params.values())
            self.mean = {k: xp.asarray(v, copy=True) for k, v in params.items()}
            return
        w = 1.0 / self.count
        self.mean = {k: m + (params[k] - m) * w for k, m in self.mean.items()}


def recalibrate_batchnorm(model: Network, x: Array, batch_size: int = 500) -> int:
    """Replace every BatchNorm's running statistics by those of the inputs it sees when
    the model classifies `x` (dropout off): the mean over batches of each batch's mean and
    unbiased variance. Weights averaged from several points of a run need this, since
    the running statistics belong to none of them. Returns the number of batches."""
    norms = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    if not norms:
        return 0
    last = max(i for i, layer in enumerate(model.layers) if isinstance(layer, BatchNorm))
    saved = [layer.momentum for layer in norms]
    n_batches = 0
    try:
        for i in range(0, x.shape[0], batch_size):
            # momentum k/(k+1) at batch k makes the running value the plain mean so far
            for layer in norms:
                layer.momentum = n_batches / (n_batches + 1)
            h = x[i : min(i + batch_size, x.shape[0]), ...]
            for layer in model.layers[: last + 1]:
                h = layer.forward(h, isinstance(layer, BatchNorm))
            n_batches += 1
    finally:
        for layer, m in zip(norms, saved, strict=True):
            layer.momentum = m
            layer._saved = None
            layer._xhat = layer._inv = None
    return n_batches
