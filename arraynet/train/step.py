"""One training step (forward, loss, backward, gradient hook, optimizer update, EMA): the
single code path the training loop, `arraynet bench` and the benchmark scripts share.

A step is `prepare_step` (on the host: the numbers that change from step to step, the
learning rate, Adam's bias corrections and the EMA's decay, written into small device
arrays) then `device_step` (the arrays' work alone: no host transfer, no wait, and the
same operations with the same arguments at every step of a fixed batch shape, which is
what capturing it as a CUDA graph needs; tests/test_graph_safe_step.py checks it on
torch)."""

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
        first = next(iter(self.params.values()))
        self.scalars = xp.zeros((2,), dtype=first.dtype, device=first.device)  # [d, 1 - d]

    def update(self, params: dict[str, Array], t: int, backend: Any = None) -> None:
        """ema <- d * ema + (1 - d) * params, with d = min(decay, (1 + t) / (10 + t))."""
        self.prepare(t, backend)
        self.apply(params)

    def prepare(self, t: int, backend: Any = None) -> None:
        """Write step t's d and 1 - d into `scalars` (on the device)."""
        d = min(self.decay, (1.0 + t) / (10.0 + t))
        if backend is None:
            xp = array_namespace(self.scalars)
            self.scalars = xp.asarray([d, 1.0 - d], dtype=self.scalars.dtype,
                                      device=self.scalars.device)  # fmt: skip
        else:
            backend.set_scalars(self.scalars, [d, 1.0 - d])

    def apply(self, params: dict[str, Array]) -> None:
        """The average's update from device arrays alone."""
        d, rest = self.scalars[0], self.scalars[1]
        self.params = {k: d * e + rest * params[k] for k, e in self.params.items()}

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
    prepare_step(model, opt, lr=lr, ema=ema)
    return device_step(
        model, opt, x, y, loss=loss, smoothing=smoothing, grad_hook=grad_hook, ema=ema
    )


def prepare_step(model: Any, opt: Optimizer, *, lr: float, ema: WeightEMA | None = None) -> None:
    """The host's part of a step: count it and write its numbers (learning rate, bias
    corrections, EMA decay) into the device arrays `device_step` reads."""
    opt.prepare(model.parameters(), lr, model.backend)
    if ema is not None:
        ema.prepare(opt.t, model.backend)


def device_step(
    model: Any,
    opt: Optimizer,
    x: Array,
    y: Array,
    *,
    loss: str = "cross_entropy",
    smoothing: float = 0.0,
    grad_hook: GradHook | None = None,
    ema: WeightEMA | None = None,
) -> Array:
    """The device's part of a step (after `prepare_step`): forward, loss, backward, the
    gradient hook, the update and the average. Returns the batch's mean loss."""
    value, _ = model.loss_and_grads(x, y, loss, smoothing)
    grads = model.gradients()
    if grad_hook is not None:
        grads = grad_hook(grads)
    model.set_parameters(opt.apply(model.parameters(), grads, model.backend))
    if ema is not None:
        ema.apply(model.parameters())
    return value
