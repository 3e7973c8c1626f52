"""Optimizers over named parameters. Updates replace arrays (no in-place writes), except
through a backend's fast kernel, which tests check against this code."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

Array = Any


class Optimizer:
    """Base: `step(params, grads, lr)` returns the updated parameters."""

    kind = "optimizer"

    def __init__(self) -> None:
        self.t = 0
        self.state: dict[str, Array] = {}

    def step(
        self, params: dict[str, Array], grads: dict[str, Array], lr: float, backend: Any = None
    ) -> dict[str, Array]:
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

    def step(self, params, grads, lr, backend=None):
        self.t += 1
        return {k: p - lr * grads[k] for k, p in params.items()}


class Adam(Optimizer):
    """Adam with bias correction: p <- p - lr * m_hat / (sqrt(v_hat) + eps).

    `seed_correction=True` ('adam-seed') evaluates the bias correction at step 1 on every
    step, as the seed library's published errors imply (see docs in recipes.py): the same
    as uncorrected Adam at lr * sqrt(1 - beta2) / (1 - beta1), about 0.316 * lr.
    """

    kind = "adam"

    def __init__(
        self,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        seed_correction: bool = False,
    ) -> None:
        super().__init__()
        self.b1, self.b2, self.eps = float(beta1), float(beta2), float(eps)
        self.seed_correction = bool(seed_correction)
        if self.seed_correction:
            self.kind = "adam-seed"

    def step(self, params, grads, lr, backend=None):
        self.t += 1
        t, b1, b2 = (1 if self.seed_correction else self.t), self.b1, self.b2
        fast = backend.kernel("adam_update") if backend is not None else None
        out = {}
        for k, p in params.items():
            g = grads[k]
            if k + ".m" not in self.state:
                xp = array_namespace(p)
                self.state[k + ".m"] = xp.zeros_like(p)
                self.state[k + ".v"] = xp.zeros_like(p)
            m, v = self.state[k + ".m"], self.state[k + ".v"]
            if fast is not None:
                p, m, v = fast(p, g, m, v, lr, b1, b2, self.eps, t)
            else:
                p, m, v = adam_update(p, g, m, v, lr, b1, b2, self.eps, t)
            self.state[k + ".m"], self.state[k + ".v"] = m, v
            out[k] = p
        return out

    def config(self) -> dict:
        return {"type": self.kind, "beta1": self.b1, "beta2": self.b2, "eps": self.eps}


OPTIMIZERS = ("sgd", "adam", "adam-seed")


def adam_update(p, g, m, v, lr: float, b1: float, b2: float, eps: float, t: int):
    """One portable Adam step for one parameter; returns new (p, m, v)."""
    xp = array_namespace(p)
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * (g * g)
    c1 = 1.0 - b1**t
    c2 = 1.0 - b2**t
    p = p - (lr / c1) * m / (xp.sqrt(v) * (1.0 / c2**0.5) + eps)
    return p, m, v


def make_optimizer(name: str, **kw: Any) -> Optimizer:
    """'sgd', 'adam' or 'adam-seed' (Adam with the seed's step-1 bias correction)."""
    if name == "sgd":
        return SGD()
    if name == "adam":
        return Adam(**kw)
    if name == "adam-seed":
        return Adam(seed_correction=True, **kw)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
