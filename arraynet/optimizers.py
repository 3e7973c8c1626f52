"""Optimizers over named parameters. Adam's update is the kernel contract's `adam_update`
(`backend.kernels`): the portable definition replaces arrays, a backend's kernel may
update them in place; tests check the two agree.

A step is two parts: `prepare` writes the numbers that change from step to step (the
learning rate, Adam's bias corrections) into a small array on the parameters' device, and
`apply` updates the parameters from device arrays alone. So `apply` launches the same
work with the same arguments at every step, as a captured CUDA graph replays it."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from arraynet.backends.kernels import PORTABLE, adam_one

Array = Any


class Optimizer:
    """Base: `step(params, grads, lr)` returns the updated parameters; the training loop
    calls `start_epoch(e)` (1-based) once before the first step of every epoch."""

    kind = "optimizer"

    def __init__(self) -> None:
        self.t = 0
        self.state: dict[str, Array] = {}
        self.scalars: Array | None = None  # this step's numbers, on the parameters' device

    def start_epoch(self, epoch: int) -> None:
        """Epoch `epoch` (1-based) begins; a no-op except for 'adam-seed'."""

    def step(
        self, params: dict[str, Array], grads: dict[str, Array], lr: float, backend: Any = None
    ) -> dict[str, Array]:
        """One update: `prepare` then `apply`; returns the new parameters."""
        self.prepare(params, lr, backend)
        return self.apply(params, grads, backend)

    def prepare(self, params: dict[str, Array], lr: float, backend: Any = None) -> None:
        """Count the step and write its numbers (`step_numbers`) into `scalars`."""
        self.t += 1
        values = self.step_numbers(lr)
        if not params:  # (nothing to train)
            return
        p = next(iter(params.values()))
        xp = array_namespace(p)
        if backend is None:  # (no adapter: a fresh array from the host numbers)
            self.scalars = xp.asarray(values, dtype=p.dtype, device=p.device)
            return
        if self.scalars is None:  # made on the device: no host-to-device copy
            self.scalars = xp.zeros((len(values),), dtype=p.dtype, device=p.device)
        backend.set_scalars(self.scalars, values)

    def step_numbers(self, lr: float) -> list[float]:
        """The numbers of the step being prepared (`t` already counts it)."""
        raise NotImplementedError

    def apply(
        self, params: dict[str, Array], grads: dict[str, Array], backend: Any = None
    ) -> dict[str, Array]:
        """The update from device arrays alone (`scalars` holds this step's numbers)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Array]:
        """Named arrays of the optimizer's state (the step count is `t`)."""
        return dict(self.state)

    def load_state(self, state: dict[str, Array], t: int) -> None:
        self.state = dict(state)
        self.t = int(t)

    def config(self) -> dict:
        return {"type": self.kind}


class SGD(Optimizer):
    """Plain stochastic gradient descent: p <- p - lr * g."""

    kind = "sgd"

    def step_numbers(self, lr):
        return [lr]

    def apply(self, params, grads, backend=None):
        if not params:
            return {}
        lr = self.scalars[0]
        return {k: p - lr * grads[k] for k, p in params.items()}


# What Adam's bias correction counts: steps (textbook), epochs (the seed library's own
# Adam), or nothing (the correction of step 1 on every step).
BIAS_COUNTS = {"adam": "step", "adam-seed": "epoch", "adam-seed-const": "one"}


class Adam(Optimizer):
    """Adam: m and v are per-step running averages, p <- p - lr * m_hat / (sqrt(v_hat) + eps)
    with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t), and t counted by `bias_count`:

    - 'step' ('adam'): textbook Adam, t = the step number.
    - 'epoch' ('adam-seed'): the seed library's Adam, t = e on every step of epoch e
      (1-based, from `start_epoch`): the step is lr * m / sqrt(v) times
      sqrt(1 - b2^e) / (1 - b1^e), 0.316 in epoch 1, 0.235 in epoch 2, about 0.15 in epochs
      10-20, 0.31 at 100 (spec: seed-models.md).
    - 'one' ('adam-seed-const'): t = 1 on every step, about 0.316 * lr * m / sqrt(v); the
      zoo's 'adam-seed' before the seed's source was read, kept to name what trained the
      models shipped then.
    """

    kind = "adam"

    def __init__(
        self,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        bias_count: str = "step",
    ) -> None:
        super().__init__()
        self.b1, self.b2, self.eps = float(beta1), float(beta2), float(eps)
        kinds = {v: k for k, v in BIAS_COUNTS.items()}
        if bias_count not in kinds:
            raise ValueError(f"bias_count wants one of {', '.join(kinds)}, not {bias_count!r}")
        self.bias_count = bias_count
        self.kind = kinds[bias_count]
        self.epoch = 1  # set by start_epoch; a loop that never calls it stays in epoch 1

    def start_epoch(self, epoch: int) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"start_epoch wants a 1-based epoch number, not {epoch!r}")
        self.epoch = epoch

    def bias_t(self) -> int:
        """The t of the bias correction for the next step."""
        return {"step": self.t + 1, "epoch": self.epoch, "one": 1}[self.bias_count]

    def step_numbers(self, lr):
        """[lr / (1 - b1^t), 1 / sqrt(1 - b2^t)] for the bias-correction t of this step."""
        t = {"step": self.t, "epoch": self.epoch, "one": 1}[self.bias_count]
        return [lr / (1.0 - self.b1**t), 1.0 / (1.0 - self.b2**t) ** 0.5]

    def apply(self, params, grads, backend=None):
        names = list(params)
        if not names:
            return {}
        for k in names:
            if k + ".m" not in self.state:
                xp = array_namespace(params[k])
                self.state[k + ".m"] = xp.zeros_like(params[k])
                self.state[k + ".v"] = xp.zeros_like(params[k])
        kernels = backend.kernels if backend is not None else PORTABLE
        new_p, new_m, new_v = kernels.adam_update(
            [params[k] for k in names],
            [grads[k] for k in names],
            [self.state[k + ".m"] for k in names],
            [self.state[k + ".v"] for k in names],
            self.scalars, self.b1, self.b2, self.eps,
        )  # fmt: skip
        for k, m, v in zip(names, new_m, new_v, strict=True):
            self.state[k + ".m"], self.state[k + ".v"] = m, v
        return dict(zip(names, new_p, strict=True))

    def config(self) -> dict:
        return {"type": self.kind, "beta1": self.b1, "beta2": self.b2, "eps": self.eps}


OPTIMIZERS = ("sgd", "adam", "adam-seed", "adam-seed-const")


def adam_update(p, g, m, v, lr: float, b1: float, b2: float, eps: float, t: int):
    """One portable Adam step for one parameter at step t; returns new (p, m, v)."""
    return adam_one(p, g, m, v, lr / (1.0 - b1**t), 1.0 / (1.0 - b2**t) ** 0.5, b1, b2, eps)


def make_optimizer(name: str, **kw: Any) -> Optimizer:
    """'sgd', 'adam' (textbook), 'adam-seed' (the seed's Adam: bias correction counted in
    epochs) or 'adam-seed-const' (the bias correction of step 1 on every step)."""
    if name == "sgd":
        return SGD()
    if name in BIAS_COUNTS:
        return Adam(bias_count=BIAS_COUNTS[name], **kw)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
