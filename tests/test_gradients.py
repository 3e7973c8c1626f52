"""float64 finite-difference checks for every layer and both losses."""

from __future__ import annotations

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.layers import Activation, BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D
from arraynet.losses import cross_entropy, mse, softmax_cross_entropy
from arraynet.testing import numeric_vs_analytic

TOL = 1e-6

CASES = [
    ("dense", lambda: Dense(7), (5,)),
    ("dense-uniform", lambda: Dense(4, init="uniform"), (6,)),
    ("conv-same-5x5", lambda: Conv2D(3, 5, padding="same"), (7, 6, 2)),
    ("conv-valid-3x3", lambda: Conv2D(4, 3, padding="valid"), (6, 5, 3)),
    ("conv-stride2-same", lambda: Conv2D(2, 3, stride=2, padding="same"), (7, 8, 2)),
    ("conv-stride2-pad1", lambda: Conv2D(2, 4, stride=2, padding=1), (9, 7, 1)),
    ("conv-stride3-k2", lambda: Conv2D(2, 2, stride=3, padding="valid"), (8, 7, 2)),
    ("conv-stride2-5x5", lambda: Conv2D(2, 5, stride=2, padding="same"), (8, 9, 2)),
    ("conv-seed-init", lambda: Conv2D(2, 5, init="he_normal_input"), (6, 6, 1)),
    ("maxpool-2", lambda: MaxPool2D(2), (6, 4, 3)),
    ("maxpool-2-odd", lambda: MaxPool2D(2), (7, 5, 2)),
    ("maxpool-3", lambda: MaxPool2D(3), (6, 9, 2)),
    ("flatten", lambda: Flatten(), (3, 4, 2)),
    ("dropout", lambda: Dropout(0.3), (4, 5)),
    ("tanh", lambda: Activation("tanh"), (6,)),
    ("relu", lambda: Activation("relu"), (3, 3, 2)),
    ("sigmoid", lambda: Activation("sigmoid"), (6,)),
    ("softmax", lambda: Activation("softmax"), (5,)),
    ("batchnorm-dense", lambda: BatchNorm(), (4,)),
    ("batchnorm-conv", lambda: BatchNorm(), (3, 3, 2)),
]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "portable"])
@pytest.mark.parametrize("name,make,shape", CASES, ids=[c[0] for c in CASES])
def test_layer_gradients(name, make, shape, fast):
    batch = 6 if name.startswith("batchnorm") else 3
    for what, err in numeric_vs_analytic(make(), shape, batch=batch, fast=fast):
        assert err < TOL, f"{name}: gradient of {what} off by {err:.2e}"


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
