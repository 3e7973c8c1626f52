"""One training step (forward, loss, backward, gradient hook, optimizer update, EMA): the
single code path the training loop, `arraynet bench` and the benchmark scripts share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from array_api_compat import array_namespace

from arraynet.optimizers import Optimizer

Array = Any
# A gradient hook gets the gradients by parameter name and returns the ones to apply
# (e.g. averaged over workers); it runs between backward and the optimizer update.
GradHook = Callable[[dict[str, Array]], dict[str, Array]]


class WeightEMA:
    """Exponential moving average of a model's parameters, warming up as (1+t)/(10+t)."""

    def __init__(self, decay: float, params: dict[str, Array]) -> None:
        self.decay = float(decay)
        xp = array_namespace(*params.values())
        self.params = {k: xp.asarray(v, copy=True) for k, v in params.items()}

    def update(self, params: dict[str, Array], t: int) -> None:
        """ema <- d * ema + (1 - d) * params, with d = min(decay, (1 + t) / (10 + t))."""
        d = min(self.decay, (1.0 + t) / (10.0 + t))
        self.params = {k: d * e + (1.0 - d) * params[k] for k, e in self.params.items()}

    @contextmanager
    def applied(self, model: Any) -> Iterator[None]:
        """Within the block `model` holds the averaged weights."""
        raw = model.parameters()
        model.set_parameters(self.params)
        try:
            yield
        finally:
            model.set_parameters(raw)


def train_step(
    model: Any,
    opt: Optimizer,
    x: Array,
    y: Array,
    *,
    lr: float,
    loss: str = "cross_entropy",
    smoothing: float = 0.0,
    grad_hook: GradHook | None = None,
    ema: WeightEMA | None = None,
) -> Array:
    """Train `model` on one batch (x, y targets); returns the batch's mean loss (an array
    on the device, so the caller decides when to synchronise)."""
    value, _ = model.loss_and_grads(x, y, loss, smoothing)
    grads = model.gradients()
    if grad_hook is not None:
        grads = grad_hook(grads)
    model.set_parameters(opt.step(model.parameters(), grads, lr, model.backend))
    if ema is not None:
        ema.update(model.parameters(), opt.t)
    return value
