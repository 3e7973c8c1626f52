"""Losses, batch norm and the optimizers against their formulas written out here (and
against torch.nn / torch.optim when torch imports), not against arraynet's own code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.layers import BatchNorm, BuildContext
from arraynet.losses import cross_entropy, mse, softmax_cross_entropy
from arraynet.optimizers import make_optimizer
from tests.conftest import CPU_BACKENDS, HAVE_TORCH

# the NumPy backend with its fast kernels, without them, and the other CPU backends
VARIANTS = [("numpy", True), ("numpy", False)] + [(n, None) for n in CPU_BACKENDS[1:]]
IDS = [f"{n}{'' if f is None else ('-fast' if f else '-portable')}" for n, f in VARIANTS]


def _backend(name: str, fast: bool | None):
    return get_backend(name) if fast is None else get_backend(name, fast=fast)


def _dev(b, a) -> object:
    return b.from_host(np.asarray(a, dtype=np.float64), dtype=b.dtype("float64"))


def _host(b, a) -> np.ndarray:
    return np.asarray(b.to_host(a), dtype=np.float64)


# -- losses ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_mse_by_hand(backend):
    b = get_backend(backend)
    pred = [[1.0, 2.0], [3.0, 4.0]]
    target = [[0.0, 2.0], [5.0, 1.0]]
    loss, grad = mse(_dev(b, pred), _dev(b, target))
    # differences 1, 0, -2, 3: squares 1 + 0 + 4 + 9 = 14 over 4 elements
    assert float(_host(b, loss)) == pytest.approx(3.5, abs=1e-15)
    # d/dp of mean (p - y)^2 = 2 (p - y) / 4
    np.testing.assert_allclose(_host(b, grad), [[0.5, 0.0], [-1.0, 1.5]], atol=1e-15)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_cross_entropy_by_hand(backend):
    b = get_backend(backend)
    prob = [[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.0, 1.0, 0.0]]
    target = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    loss, grad = cross_entropy(_dev(b, prob), _dev(b, target))
    # -(ln 0.7 + ln 0.5 + ln 1e-7) / 3: a probability of 0 is clipped to 1e-7
    expected = (0.35667494393873245 + 0.6931471805599453 + 16.11809565095832) / 3
    assert float(_host(b, loss)) == pytest.approx(expected, rel=1e-12)
    # d/dp of -sum(y ln p) / n = -y / (p n), nonzero only where y is
    ref = np.zeros((3, 3))
    ref[0, 0], ref[1, 2], ref[2, 0] = -1 / (0.7 * 3), -1 / (0.5 * 3), -1 / (1e-7 * 3)
    np.testing.assert_allclose(_host(b, grad), ref, rtol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_softmax_cross_entropy_by_hand(backend):
    b = get_backend(backend)
    logits = [[0.0, math.log(2.0), math.log(5.0)], [1.0, 1.0, 1.0]]  # softmax 1/8, 2/8, 5/8
    target = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]  # and 1/3 each
    loss, grad = softmax_cross_entropy(_dev(b, logits), _dev(b, target))
    assert float(_host(b, loss)) == pytest.approx((math.log(8 / 5) + math.log(3)) / 2, rel=1e-12)
    ref = np.array([[1 / 8, 2 / 8, 5 / 8 - 1], [1 / 3, 1 / 3 - 1, 1 / 3]]) / 2
    np.testing.assert_allclose(_host(b, grad), ref, atol=1e-15)
    # label smoothing 0.3 over 3 classes: targets 0.1, 0.1, 0.8
    loss, grad = softmax_cross_entropy(_dev(b, logits[:1]), _dev(b, target[:1]), smoothing=0.3)
    smooth = np.array([0.1, 0.1, 0.8])
    p = np.array([1 / 8, 2 / 8, 5 / 8])
    assert float(_host(b, loss)) == pytest.approx(-(smooth * np.log(p)).sum(), rel=1e-12)
    np.testing.assert_allclose(_host(b, grad)[0], p - smooth, atol=1e-15)


# -- batch norm ------------------------------------------------------------------------
def _bn_reference(x, gamma, beta, eps):
    """Per channel, by loops: y = gamma (x - mean) / sqrt(var + eps) + beta with the batch's
    biased variance; also the mean and the unbiased variance (for the running stats)."""
    c = x.shape[-1]
    flat = x.reshape(-1, c)
    y = np.empty_like(flat)
    means, unbiased = np.empty(c), np.empty(c)
    for k in range(c):
        col = flat[:, k]
        mu = sum(col) / len(col)
        var = sum((v - mu) ** 2 for v in col) / len(col)
        y[:, k] = gamma[k] * (col - mu) / math.sqrt(var + eps) + beta[k]
        means[k], unbiased[k] = mu, var * len(col) / (len(col) - 1)
    return y.reshape(x.shape), means, unbiased


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 2)])  # dense and NHWC inputs
def test_batchnorm_training_running_stats_and_eval(variant, shape):
    b = _backend(*variant)
    g = np.random.default_rng(11)
    c = shape[-1]
    layer = BatchNorm(momentum=0.9, eps=1e-3)
    ctx = BuildContext(backend=b, rng=b.rng(0), dtype=b.dtype("float64"))
    layer.build(shape[1:], ctx)
    gamma, beta = 1.0 + 0.5 * g.standard_normal(c), g.standard_normal(c)
    layer.params["gamma"], layer.params["beta"] = _dev(b, gamma), _dev(b, beta)
    run_mean, run_var = np.zeros(c), np.ones(c)  # the initial running statistics
    for _ in range(3):  # three training batches: the running stats follow each
        x = 2.0 + 3.0 * g.standard_normal(shape)
        y = _host(b, layer.forward(_dev(b, x), training=True))
        ref, mu, unbiased = _bn_reference(x, gamma, beta, 1e-3)
        np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
        run_mean = 0.9 * run_mean + 0.1 * mu
        run_var = 0.9 * run_var + 0.1 * unbiased
        np.testing.assert_allclose(_host(b, layer.buffers["running_mean"]), run_mean, rtol=1e-12)
        np.testing.assert_allclose(_host(b, layer.buffers["running_var"]), run_var, rtol=1e-12)
    x = g.standard_normal(shape)
    y = _host(b, layer.forward(_dev(b, x), training=False))  # eval: the running statistics
    ref = gamma * (x - run_mean) / np.sqrt(run_var + 1e-3) + beta
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is an optional extra")
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_batchnorm_matches_torch(variant):
    import torch

    b = _backend(*variant)
    g = np.random.default_rng(12)
    layer = BatchNorm()  # momentum 0.9 here is torch's momentum 0.1
    ctx = BuildContext(backend=b, rng=b.rng(0), dtype=b.dtype("float64"))
    layer.build((5, 4, 3), ctx)
    ref = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=0.1, dtype=torch.float64)
    gamma, beta = 1.0 + 0.5 * g.standard_normal(3), g.standard_normal(3)
    layer.params["gamma"], layer.params["beta"] = _dev(b, gamma), _dev(b, beta)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(gamma))
        ref.bias.copy_(torch.from_numpy(beta))
    nchw = (0, 3, 1, 2)
    for training in (True, True, False):
        x = 1.0 + 2.0 * g.standard_normal((6, 5, 4, 3))
        ref.train(training)
        with torch.no_grad():
            want = ref(torch.from_numpy(x.transpose(nchw))).numpy().transpose(0, 2, 3, 1)
        got = _host(b, layer.forward(_dev(b, x), training=training))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        rm, rv = ref.running_mean.numpy(), ref.running_var.numpy()
        np.testing.assert_allclose(_host(b, layer.buffers["running_mean"]), rm, rtol=1e-12)
        np.testing.assert_allclose(_host(b, layer.buffers["running_var"]), rv, rtol=1e-12)


# -- optimizers ------------------------------------------------------------------------
SHAPES = {"0.kernel": (3, 4), "0.bias": (4,)}
RATES = [1e-2, 1e-2, 5e-3, 2e-3, 2e-3, 1e-3]  # a schedule changes the rate between steps


def _problem(seed: int):
    g = np.random.default_rng(seed)
    p0 = {k: g.standard_normal(s) for k, s in SHAPES.items()}
    grads = [{k: g.standard_normal(s) for k, s in SHAPES.items()} for _ in RATES]
    return p0, grads


def _run(name: str, variant, p0, grads) -> list[dict[str, np.ndarray]]:
    """The parameters after each step of arraynet's optimizer `name`."""
    b = _backend(*variant)
    opt = make_optimizer(name)
    params = {k: _dev(b, v.copy()) for k, v in p0.items()}  # a fast kernel updates in place
    out = []
    for lr, gr in zip(RATES, grads, strict=True):
        params = opt.step(params, {k: _dev(b, v) for k, v in gr.items()}, lr, b)
        out.append({k: _host(b, v).copy() for k, v in params.items()})  # (updated in place)
    assert opt.t == len(RATES)
    return out


def _adam_by_formula(p0, grads, b1=0.9, b2=0.999, eps=1e-8):
    """Kingma & Ba, Algorithm 1: m, v moving averages; m / (1 - b1^t), v / (1 - b2^t)."""
    p = {k: v.copy() for k, v in p0.items()}
    m = {k: np.zeros_like(v) for k, v in p0.items()}
    v = {k: np.zeros_like(x) for k, x in p0.items()}
    out = []
    for t, (lr, gr) in enumerate(zip(RATES, grads, strict=True), start=1):
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * gr[k]
            v[k] = b2 * v[k] + (1 - b2) * gr[k] ** 2
            m_hat = m[k] / (1 - b1**t)
            v_hat = v[k] / (1 - b2**t)
            p[k] = p[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append({k: x.copy() for k, x in p.items()})
    return out


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_adam_steps_follow_the_formula(variant):
    p0, grads = _problem(13)
    got, want = _run("adam", variant, p0, grads), _adam_by_formula(p0, grads)
    for step_got, step_want in zip(got, want, strict=True):
        for k in SHAPES:
            np.testing.assert_allclose(step_got[k], step_want[k], rtol=1e-12, atol=1e-14)
    # the first step moves every weight by about lr (bias correction); later ones differ
    np.testing.assert_allclose(np.abs(got[0]["0.kernel"] - p0["0.kernel"]), RATES[0], rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_sgd_steps_follow_the_formula(variant):
    p0, grads = _problem(14)
    got = _run("sgd", variant, p0, grads)
    p = {k: v.copy() for k, v in p0.items()}
    for step_got, lr, gr in zip(got, RATES, grads, strict=True):
        p = {k: p[k] - lr * gr[k] for k in p}  # p <- p - lr g
        for k in SHAPES:
            np.testing.assert_allclose(step_got[k], p[k], rtol=1e-14, atol=1e-15)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_TORCH, reason="torch is an optional extra")
@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_optimizers_match_torch(name):
    import torch

    p0, grads = _problem(15)
    got = _run(name, ("numpy", True), p0, grads)
    tp = [torch.tensor(p0[k], dtype=torch.float64, requires_grad=True) for k in SHAPES]
    cls = torch.optim.Adam if name == "adam" else torch.optim.SGD
    opt = cls(tp, lr=RATES[0])
    for step_got, lr, gr in zip(got, RATES, grads, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        for t, k in zip(tp, SHAPES, strict=True):
            t.grad = torch.from_numpy(gr[k].copy())
        opt.step()
        for t, k in zip(tp, SHAPES, strict=True):
            np.testing.assert_allclose(step_got[k], t.detach().numpy(), rtol=1e-12, atol=1e-14)
