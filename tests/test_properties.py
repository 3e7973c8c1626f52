"""Property-based checks (hypothesis): conv and pooling against plain loops on random shapes,
and the fast NumPy kernels against the portable code."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from arraynet.backends import get_backend
from arraynet.layers import BuildContext, Conv2D, MaxPool2D
from tests.test_oracles import conv_loops, pool_loops


@st.composite
def conv_case(draw):
    k = draw(st.integers(1, 5))
    stride = draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["same", "valid", 0, 1, 2]))
    h = draw(st.integers(k, 9))
    w = draw(st.integers(k, 9))
    c = draw(st.integers(1, 3))
    f = draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    return k, stride, padding, (h, w, c), f, n, seed


@settings(max_examples=60, deadline=None)
@given(conv_case(), st.booleans())
def test_conv_forward_backward_against_loops(case, fast):
    k, stride, padding, shape, f, n, seed = case
    b = get_backend("numpy", fast=fast)
    layer = Conv2D(f, k, stride=stride, padding=padding)
    layer.build(shape, BuildContext(b, b.rng(seed), b.dtype("float64")))
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, *shape))
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(
        y,
        conv_loops(x, layer.params["kernel"], layer.params["bias"], stride, layer.pad),
        atol=1e-10,
    )
    # backward: dL/dx and dL/dW of L = sum(y * r) computed by loops over output positions
    r = g.standard_normal(y.shape)
    dx = layer.backward(r)
    pt, pb, pl, pr = layer.pad
    xpad = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(layer.params["kernel"])
    for i in range(y.shape[1]):
        for j in range(y.shape[2]):
            hs, ws = i * stride, j * stride
            patch = xpad[:, hs : hs + k, ws : ws + k, :]
            dw += np.einsum("nhwc,nf->hwcf", patch, r[:, i, j, :])
            dxpad[:, hs : hs + k, ws : ws + k, :] += np.einsum(
                "hwcf,nf->nhwc", layer.params["kernel"], r[:, i, j, :]
            )
    np.testing.assert_allclose(layer.grads["kernel"], dw, atol=1e-9)
    np.testing.assert_allclose(layer.grads["bias"], r.sum(axis=(0, 1, 2)), atol=1e-9)
    np.testing.assert_allclose(dx, dxpad[:, pt : pt + shape[0], pl : pl + shape[1], :], atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4), st.integers(2, 11), st.integers(2, 11), st.integers(1, 3),
    st.integers(0, 2**16), st.booleans(),
)  # fmt: skip
def test_maxpool_against_loops(p, h, w, c, seed, fast):
    if h < p or w < p:
        return
    b = get_backend("numpy", fast=fast)
    layer = MaxPool2D(p)
    layer.build((h, w, c), BuildContext(b, b.rng(0), b.dtype("float64")))
    x = np.random.default_rng(seed).standard_normal((2, h, w, c))
    np.testing.assert_array_equal(layer.forward(x, training=True), pool_loops(x, p))
    dx = layer.backward(np.ones((2, h // p, w // p, c)))
    assert dx.shape == x.shape and dx.sum() == 2 * (h // p) * (w // p) * c
