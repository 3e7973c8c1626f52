"""Finite-difference gradient checks in float64, for the project's layers and yours:

    from arraynet.testing import check_gradients
    check_gradients(MyLayer(...), input_shape=(8, 8, 3))   # AssertionError when wrong

(public as `arraynet.testing`). The layer is built in float64 on the numpy backend, whose
arrays the check perturbs in place, and its backward is compared with central differences.
"""

from __future__ import annotations

import numpy as np

from arraynet.backends import get_backend
from arraynet.layers import BuildContext, Layer


def numeric_vs_analytic(
    layer: Layer,
    input_shape: tuple[int, ...],
    batch: int = 3,
    seed: int = 0,
    fast: bool = True,
    samples: int = 25,
    eps: float = 1e-6,
    x_host: np.ndarray | None = None,
) -> list[tuple[str, float]]:
    """Build `layer` in float64 on numpy and compare backward against central differences
    of f = sum(forward(x) * r) for the input and every parameter. Returns (name, rel err)."""
    b = get_backend("numpy", fast=fast)
    rng_seed = seed + 100
    ctx = BuildContext(backend=b, rng=b.rng(seed), dtype=b.dtype("float64"))
    out_shape = layer.build(input_shape, ctx)
    if hasattr(layer, "rng"):
        layer.rng = b.rng(rng_seed)
    g = np.random.default_rng(seed)
    x = x_host if x_host is not None else g.standard_normal((batch, *input_shape))
    r = g.standard_normal((x.shape[0], *out_shape))
    state = layer.rng.get_state() if hasattr(layer, "rng") else None

    def f() -> float:
        if state is not None:
            layer.rng.set_state(state)
        return float(np.sum(layer.forward(xv, training=True) * r))

    xv = x.copy()
    f()
    dx = layer.backward(r.copy())
    grads = {k: np.array(v) for k, v in layer.grads.items()}
    checks = [("input", xv, dx)] + [(k, layer.params[k], grads[k]) for k in layer.params]
    out = []
    for name, arr, analytic in checks:
        flat = arr.reshape(-1)
        idx = g.choice(flat.size, size=min(samples, flat.size), replace=False)
        num = np.empty(idx.size)
        for j, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + eps
            fp = f()
            flat[i] = old - eps
            fm = f()
            flat[i] = old
            num[j] = (fp - fm) / (2 * eps)
        ana = np.asarray(analytic).reshape(-1)[idx]
        err = np.max(np.abs(num - ana)) / max(1e-8, np.max(np.abs(num)) + np.max(np.abs(ana)))
        out.append((name, float(err)))
    return out


def check_gradients(
    layer: Layer,
    input_shape: tuple[int, ...],
    tol: float = 1e-6,
    **kw: object,
) -> list[tuple[str, float]]:
    """`numeric_vs_analytic`, raising AssertionError naming the worst array when any
    relative error exceeds `tol`; returns the (name, relative error) pairs."""
    errs = numeric_vs_analytic(layer, input_shape, **kw)  # type: ignore[arg-type]
    name, worst = max(errs, key=lambda e: e[1])
    if not worst <= tol:
        raise AssertionError(
            f"{type(layer).__name__}: gradient of {name!r} is off by {worst:.2e} (relative) "
            f"against finite differences (tolerance {tol:g})"
        )
    return errs
