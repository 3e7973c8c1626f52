"""float64 finite-difference checks for every registered layer kind (the cases live in
each layer class, `gradcheck_cases()`) and for the losses."""

from __future__ import annotations

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.layers import LAYER_TYPES, GradCase
from arraynet.losses import cross_entropy, mse, softmax_cross_entropy
from arraynet.testing import numeric_vs_analytic

TOL = 1e-6


def registered_cases() -> list[tuple[str, GradCase]]:
    """(kind, case) for every case of every registered layer kind (`gradcheck_cases`)."""
    return [(kind, case) for kind, cls in LAYER_TYPES.items() for case in cls.gradcheck_cases()]


def kinds_without_cases() -> list[str]:
    """Registered kinds with no gradient check of their own: none, or cases that build
    another class (e.g. inherited from the layer they subclass)."""
    return [
        kind
        for kind, cls in LAYER_TYPES.items()
        if not cls.gradcheck_cases()
        or any(type(c.make()) is not cls for c in cls.gradcheck_cases())
    ]


CASES = registered_cases()


def test_every_registered_layer_kind_has_a_gradient_check():
    """A new layer kind cannot forget its gradient check: `gradcheck_cases()` in its class."""
    assert kinds_without_cases() == [], "give these kinds a gradcheck_cases() classmethod"
    ids = [case.id for _, case in registered_cases()]
    assert len(ids) == len(set(ids)), "gradient-check ids must be unique"


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "portable"])
@pytest.mark.parametrize("kind,case", CASES, ids=[case.id for _, case in CASES])
def test_layer_gradients(kind, case, fast):
    layer = case.make()
    errs = numeric_vs_analytic(layer, case.input_shape, batch=case.batch, fast=fast)
    for what, err in errs:
        assert err < TOL, f"{case.id} ({kind}): gradient of {what} off by {err:.2e}"


def _loss_fd(fn, pred, target, eps=1e-6):
    _, grad = fn(pred, target)
    num = np.zeros_like(pred)
    for i in np.ndindex(pred.shape):
        p = pred.copy()
        p[i] += eps
        lp = float(fn(p, target)[0])
        p[i] -= 2 * eps
        lm = float(fn(p, target)[0])
        num[i] = (lp - lm) / (2 * eps)
    return np.max(np.abs(num - np.asarray(grad))) / (np.max(np.abs(num)) + 1e-12)


@pytest.mark.parametrize(
    "fn,kind",
    [
        (mse, "real"),
        (cross_entropy, "prob"),
        (softmax_cross_entropy, "real"),
        (lambda z, y: softmax_cross_entropy(z, y, 0.1), "real"),
        (softmax_cross_entropy, "soft"),
    ],
    ids=["mse", "cross_entropy", "softmax_cross_entropy", "smoothed", "soft_targets"],
)
def test_loss_gradients(fn, kind):
    g = np.random.default_rng(1)
    pred = g.standard_normal((4, 5))
    if kind == "prob":
        pred = np.exp(pred) / np.exp(pred).sum(1, keepdims=True)
    target = np.eye(5)[g.integers(0, 5, 4)]
    if kind == "soft":  # distillation: half one-hot, half another distribution
        other = np.exp(g.standard_normal((4, 5)))
        target = 0.5 * target + 0.5 * other / other.sum(1, keepdims=True)
    assert _loss_fd(fn, pred, target) < TOL


def test_fused_softmax_ce_matches_composition():
    g = np.random.default_rng(2)
    z = g.standard_normal((6, 10)) * 5
    y = np.eye(10)[g.integers(0, 10, 6)]
    loss_f, grad_f = softmax_cross_entropy(z, y)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert np.isclose(float(loss_f), -np.sum(y * np.log(p)) / 6)
    np.testing.assert_allclose(grad_f, (p - y) / 6, atol=1e-12)


def test_softmax_ce_is_stable_for_huge_logits():
    b = get_backend("numpy")
    z = b.xp.asarray([[1000.0, -1000.0, 0.0]], dtype=b.xp.float32)
    y = b.xp.asarray([[0.0, 1.0, 0.0]], dtype=b.xp.float32)
    loss, grad = softmax_cross_entropy(z, y)
    assert np.isfinite(float(loss)) and float(loss) == pytest.approx(2000.0)
    assert np.all(np.isfinite(grad)) and grad.dtype == np.float32


def test_model_gradient_end_to_end():
    """The whole m9 layout (conv, pool, dropout, dense, fused loss) in float64."""
    from arraynet.zoo import build_layout

    b = get_backend("numpy")
    m = build_layout("m9").build(b, seed=3, dtype="float64")
    g = np.random.default_rng(3)
    x = g.random((2, 28, 28, 1))
    y = np.eye(10)[[3, 7]]
    state = m.rng.get_state()

    def f():
        m.rng.set_state(state)
        return float(m.loss_and_grads(x, y)[0])

    f()
    grads = {k: np.array(v) for k, v in m.gradients().items()}
    for name, p in m.parameters().items():
        flat = p.reshape(-1)
        for i in g.choice(flat.size, size=min(4, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + 1e-6
            lp = f()
            flat[i] = old - 1e-6
            lm = f()
            flat[i] = old
            num = (lp - lm) / 2e-6
            ana = grads[name].reshape(-1)[i]
            assert abs(num - ana) <= 1e-6 + 1e-5 * abs(num), name
