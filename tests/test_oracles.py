"""Conv and pooling against independent oracles; fast kernels against portable code."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate

from arraynet.backends import get_backend
from arraynet.backends import numpy_kernels as nk
from arraynet.backends import portable as ops
from arraynet.layers import BatchNorm, BuildContext, Conv2D, MaxPool2D
from arraynet.optimizers import adam_update, make_optimizer
from tests.conftest import CPU_BACKENDS


def _build(layer, shape, backend, dtype="float64"):
    ctx = BuildContext(backend=backend, rng=backend.rng(0), dtype=backend.dtype(dtype))
    layer.build(shape, ctx)
    return layer


def conv_loops(x, w, bias, stride, pad):
    """Plain-loop convolution (NHWC input, kernel (kh, kw, c, f))."""
    pt, pb, pl, pr = pad
    xp_ = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    n, hp, wp, _ = xp_.shape
    k = w.shape[0]
    ho, wo = (hp - k) // stride + 1, (wp - k) // stride + 1
    out = np.zeros((n, ho, wo, w.shape[3]))
    for i in range(ho):
        for j in range(wo):
            patch = xp_[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out + bias


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_conv_same_matches_scipy_correlate(backend):
    b = get_backend(backend)
    g = np.random.default_rng(0)
    x = g.standard_normal((2, 9, 8, 3))
    layer = _build(Conv2D(4, 5, padding="same"), (9, 8, 3), b)
    y = b.to_host(layer.forward(b.from_host(x, dtype=b.dtype("float64"))))
    w, bias = b.to_host(layer.params["kernel"]), b.to_host(layer.params["bias"])
    for n in range(2):
        for f in range(4):
            ref = correlate(x[n], w[:, :, :, f], mode="same")[:, :, 1] + bias[f]
            np.testing.assert_allclose(y[n, :, :, f], ref, atol=1e-10)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(
    "k,stride,padding,shape",
    [
        (3, 1, "valid", (7, 6, 2)),
        (3, 2, "same", (7, 8, 2)),
        (4, 2, 1, (9, 7, 3)),
        (5, 1, "same", (6, 6, 1)),
    ],
)
def test_conv_matches_loops(k, stride, padding, shape, fast):
    b = get_backend("numpy", fast=fast)
    g = np.random.default_rng(1)
    x = g.standard_normal((2, *shape))
    layer = _build(Conv2D(3, k, stride=stride, padding=padding), shape, b)
    y = layer.forward(x)
    ref = conv_loops(x, layer.params["kernel"], layer.params["bias"], stride, layer.pad)
    np.testing.assert_allclose(y, ref, atol=1e-10)


def pool_loops(x, p):
    n, h, w, c = x.shape
    out = np.zeros((n, h // p, w // p, c))
    for i in range(h // p):
        for j in range(w // p):
            out[:, i, j, :] = x[:, i * p : i * p + p, j * p : j * p + p, :].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("p,shape", [(2, (6, 4, 3)), (2, (7, 5, 2)), (3, (9, 6, 1))])
def test_maxpool_matches_loops(backend, p, shape):
    b = get_backend(backend)
    x = np.random.default_rng(2).standard_normal((3, *shape))
    layer = _build(MaxPool2D(p), shape, b)
    y = b.to_host(layer.forward(b.from_host(x, dtype=b.dtype("float64")), training=True))
    np.testing.assert_array_equal(y, pool_loops(x, p))
    dy = np.random.default_rng(3).standard_normal(y.shape)
    dx = b.to_host(layer.backward(b.from_host(dy, dtype=b.dtype("float64"))))
    # every window's gradient goes to its maximum, once
    for n, i, j, c in np.ndindex(y.shape):
        win = x[n, i * p : i * p + p, j * p : j * p + p, c]
        gwin = dx[n, i * p : i * p + p, j * p : j * p + p, c]
        assert gwin[np.unravel_index(win.argmax(), win.shape)] == dy[n, i, j, c]
        assert np.count_nonzero(gwin) <= 1
    assert dx.shape == x.shape


def test_maxpool_ties_go_to_first_maximum():
    x = np.zeros((1, 2, 2, 1))
    for fast in (True, False):
        b = get_backend("numpy", fast=fast)
        layer = _build(MaxPool2D(2), (2, 2, 1), b)
        layer.forward(x, training=True)
        dx = layer.backward(np.ones((1, 1, 1, 1)))
        assert dx[0, :, :, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


# -- fast kernels against the portable functions --------------------------------------


@pytest.mark.parametrize("shape,pads", [((2, 5, 6, 3), (2, 2, 2, 2)), ((1, 4, 4, 2), (0, 1, 3, 0))])
def test_pad_kernel(shape, pads):
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(nk.pad_hw(x, *pads), ops.pad_hw(x, *pads))


@pytest.mark.parametrize("chunk_bytes", [1, 5000, 1 << 30])
@pytest.mark.parametrize(
    "k,stride,padding,shape",
    [
        (5, 1, "same", (9, 8, 3)),
        (3, 2, "same", (7, 8, 2)),
        (4, 2, 1, (9, 7, 3)),
        (3, 1, "valid", (6, 6, 2)),
        (5, 2, "same", (8, 8, 3)),
        (3, 1, "valid", (12, 11, 2)),
        (2, 3, "valid", (8, 9, 2)),  # kernel narrower than the stride: rows no tap reaches
        (1, 2, 0, (7, 6, 3)),
    ],
)
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("phase_ratio", [0.0, 1e9])  # dL/dx by col2im_add, by phases
def test_chunked_conv_kernels_match_portable(
    k, stride, padding, shape, chunk_bytes, threads, phase_ratio, monkeypatch
):
    monkeypatch.setattr(nk, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(nk, "PHASE_MAC_RATIO", phase_ratio)
    g = np.random.default_rng(8)
    x = g.standard_normal((5, *shape))
    fast, slow = (
        _build(
            Conv2D(4, k, stride=stride, padding=padding),
            shape,
            get_backend("numpy", fast=f, threads=threads),
        )
        for f in (True, False)
    )
    slow.params = {k_: v.copy() for k_, v in fast.params.items()}
    y1, y2 = fast.forward(x, training=True), slow.forward(x, training=True)
    np.testing.assert_allclose(y1, y2, atol=1e-12)
    dy = g.standard_normal(y1.shape)
    dx1, dx2 = fast.backward(dy), slow.backward(dy)
    np.testing.assert_allclose(dx1, dx2, atol=1e-12)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(fast.grads[name], slow.grads[name], atol=1e-12)


@pytest.mark.parametrize("k,s", [(5, 2), (3, 2), (4, 3), (3, 1)])
def test_col2im_is_the_adjoint_of_im2col(k, s):
    """<im2col(x), d> == <x, col2im(d)> for every x and d: col2im_add is im2col's adjoint."""
    g = np.random.default_rng(9)
    x = g.standard_normal((2, 11, 9, 3))
    cols = nk.im2col(x, k, k, s)
    d = g.standard_normal(cols.shape)
    back = np.zeros_like(x)
    nk.col2im_add(back, d, k, k, s)
    np.testing.assert_allclose(np.sum(cols * d), np.sum(x * back), rtol=1e-12)


@pytest.mark.parametrize("k,s", [(5, 1), (3, 2), (2, 2)])
def test_im2col_kernel(k, s):
    x = np.random.default_rng(5).standard_normal((2, 9, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(nk.im2col(x, k, k, s), ops.im2col(x, k, k, s))


@pytest.mark.parametrize("p", [2, 3])
def test_maxpool_kernels(p):
    g = np.random.default_rng(6)
    x = g.standard_normal((3, 7, 8, 4)).astype(np.float32)
    x[0, :2, :2, 0] = 1.5  # a tie: the first maximum wins in both
    y1, i1 = nk.maxpool_forward(x, p)
    y2, i2 = ops.maxpool_forward(x, p)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(nk.maxpool_forward(x, p, False)[0], y2)
    np.testing.assert_array_equal(ops.maxpool_forward(x, p, False)[0], y2)
    dy = g.standard_normal(y1.shape).astype(np.float32)
    np.testing.assert_array_equal(
        nk.maxpool_backward(dy, i1, p, x.shape), ops.maxpool_backward(dy, i2, p, x.shape)
    )


def test_adam_kernel_matches_portable():
    g = np.random.default_rng(7)
    p = g.standard_normal((30, 20)).astype(np.float32)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    for t in range(1, 6):
        grad = g.standard_normal(p.shape).astype(np.float32)
        step, v_scale = np.float32(1e-3 / (1 - 0.9**t)), np.float32(1 / np.sqrt(1 - 0.999**t))
        p, m, v = nk.adam_step(p, grad, m, v, step, v_scale, 0.9, 0.999, 1e-8)
        p2, m2, v2 = adam_update(p2, grad, m2, v2, 1e-3, 0.9, 0.999, 1e-8, t)
    assert p.dtype == np.float32 and p2.dtype == np.float32
    np.testing.assert_allclose(p, p2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(v, v2, rtol=1e-6, atol=1e-12)


def test_adam_first_step_is_lr_times_sign():
    """Bias correction: the first step moves each weight by about lr * sign(g)."""
    p = np.zeros((4,), np.float32)
    g = np.array([1.0, -2.0, 0.5, -0.1], np.float32)
    p1, _, _ = adam_update(p, g, np.zeros_like(p), np.zeros_like(p), 0.01, 0.9, 0.999, 1e-8, 1)
    np.testing.assert_allclose(p1, -0.01 * np.sign(g), rtol=1e-4)


@pytest.mark.parametrize("shape", [(8, 5), (4, 6, 5, 3), (5, 28, 28, 16)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 2])
def test_batchnorm_kernels_match_portable(shape, dtype, threads, monkeypatch):
    """The fused NumPy batch norm (forward, backward, running stats) against the layer's
    portable code; in evaluation mode, bitwise."""
    monkeypatch.setattr(nk, "CHUNK_BYTES", 1 << 14)  # several chunks, also for threads
    g = np.random.default_rng(8)
    x = (3.0 + 2.0 * g.standard_normal(shape)).astype(dtype)
    dy = g.standard_normal(shape).astype(dtype)
    gamma = (1.0 + 0.1 * g.standard_normal(shape[-1])).astype(dtype)
    beta = g.standard_normal(shape[-1]).astype(dtype)
    outs = {}
    evals = {}
    for fast in (True, False):
        b = get_backend("numpy", fast=fast, threads=threads)
        layer = _build(BatchNorm(), shape[1:], b, dtype)
        layer.params["gamma"], layer.params["beta"] = gamma, beta
        y = layer.forward(x, training=True)
        dx = layer.backward(dy)
        outs[fast] = (y, dx, layer.grads["gamma"], layer.grads["beta"],
                      layer.buffers["running_mean"], layer.buffers["running_var"])  # fmt: skip
        layer.buffers["running_mean"], layer.buffers["running_var"] = outs[True][4:6]
        evals[fast] = layer.forward(x, training=False)
    tol = {"float32": 2e-5, "float64": 1e-12}[dtype]
    for a, r in zip(outs[True], outs[False], strict=True):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * max(1.0, float(np.abs(r).max())))
    assert evals[True].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(evals[True], evals[False])


def test_adam_seed_const_keeps_step_one_correction():
    """'adam-seed-const' equals textbook Adam's formula with t = 1 at every step (fast and
    portable), i.e. uncorrected Adam at about 0.316 * lr."""
    g = np.random.default_rng(9)
    grads = [{"w": g.standard_normal((6, 4)).astype(np.float32)} for _ in range(5)]
    p0 = {"w": g.standard_normal((6, 4)).astype(np.float32)}
    for fast in (True, False):
        b = get_backend("numpy", fast=fast)
        opt = make_optimizer("adam-seed-const")
        p = {"w": p0["w"].copy()}
        m = v = np.zeros((6, 4), np.float32)
        ref = p0["w"].copy()
        for gr in grads:
            p = opt.step(p, gr, 1e-2, b)
            ref, m, v = adam_update(ref, gr["w"], m, v, 1e-2, 0.9, 0.999, 1e-8, 1)
            np.testing.assert_allclose(p["w"], ref, rtol=1e-6, atol=1e-7)
        assert opt.t == len(grads) and opt.config()["type"] == "adam-seed-const"
    # after many steps textbook Adam's correction vanishes and the ratio is sqrt(1-b2)/(1-b1)
    lr_eff = np.sqrt(1 - 0.999) / (1 - 0.9)
    assert abs(lr_eff - 0.316) < 1e-3


@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_kernels_are_deterministic(threads, monkeypatch):
    """Chunks computed on threads and combined in order: the same inputs give bitwise the
    same outputs every time, and the serial kernels' up to rounding."""
    monkeypatch.setattr(nk, "CHUNK_BYTES", 1 << 15)
    g = np.random.default_rng(3)
    x = g.standard_normal((7, 12, 12, 6)).astype(np.float32)
    kernel = g.standard_normal((5, 5, 6, 8)).astype(np.float32)
    bias = g.standard_normal(8).astype(np.float32)
    runs = []
    for workers in (nk.Workers(threads), nk.Workers(threads), nk.SERIAL):
        y, xpad = nk.conv2d_forward(x, kernel, bias, (1, 2, 1, 2), 2, workers)
        dy = np.cos(y)
        grads = nk.conv2d_backward(xpad, dy, kernel, (1, 2, 1, 2), 2, True, workers)
        bn = nk.batchnorm_forward(y, bias, bias, 1e-5, workers)
        bn_grads = nk.batchnorm_backward(dy, bn[1], bias, workers)
        runs.append((y, *grads, bn[0], *bn_grads))
    for a, b, s in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, s, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 5, 16, 64])
def test_chunks_cover_the_batch_evenly(threads, n):
    """Chunks stay within CHUNK_BYTES, cover every image, and share them out evenly: the
    busiest thread gets less than one chunk more than its fair share."""
    image_bytes = 300 << 10  # 13 images to a 4 MB chunk
    step = nk.Workers(threads).chunk(n, image_bytes)
    chunks = -(-n // step)
    assert 1 <= step <= max(1, nk.CHUNK_BYTES // image_bytes) and chunks * step >= n
    busiest = -(-chunks // threads) * step
    assert busiest < -(-n // threads) + step


def test_thread_count_comes_from_the_environment(monkeypatch):
    from arraynet.backends.numpy_backend import THREAD_VARS, default_threads

    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert default_threads() == 5
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert default_threads() == 1
    monkeypatch.setenv("ARRAYNET_THREADS", "3")
    assert default_threads() == 3 and get_backend("numpy").threads == 3
    assert get_backend("numpy", threads=2).threads == 2
    monkeypatch.setenv("ARRAYNET_THREADS", "0")
    with pytest.raises(ValueError, match="ARRAYNET_THREADS must be a whole number"):
        get_backend("numpy")
    with pytest.raises(ValueError, match="at least 1"):
        nk.Workers(0)


def _blas_threads() -> set[int]:
    from threadpoolctl import ThreadpoolController

    return {d["num_threads"] for d in ThreadpoolController().info() if d["user_api"] == "blas"}


def test_blas_keeps_its_threads_until_the_kernels_share_chunks():
    """A dense network's products run on BLAS's threads; once a kernel shares chunks
    among its own threads, BLAS runs on one (its threads would oversubscribe the cores),
    and large dense products are split among the kernel threads instead."""
    g = np.random.default_rng(2)
    x, w, b = g.random((600, 300)), g.random((300, 200)), g.random(200)
    nk.set_blas_threads(2)
    workers = nk.Workers(2)
    y = nk.dense_forward(x, w, b, workers)
    assert not workers.parallel and _blas_threads() == {2}
    workers.map(lambda i: i, 4, 1)
    assert workers.parallel and _blas_threads() == {1}
    np.testing.assert_allclose(nk.dense_forward(x, w, b, workers), y, rtol=1e-12)
    get_backend("numpy", threads=1)
    assert _blas_threads() == {1}


def test_a_backend_made_after_the_threads_took_the_cores_keeps_blas_at_one():
    b = get_backend("numpy", threads=3)
    x = np.ones((40, 8, 8, 2), np.float32)
    b.kernels.conv2d_forward(
        x, np.ones((3, 3, 2, 4), np.float32), np.zeros(4, np.float32), (1, 1, 1, 1), 1, False
    )
    get_backend("numpy", threads=3)
    assert _blas_threads() == {1}


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_dense_kernel_matches_portable(threads, monkeypatch):
    """A large product split by rows among the threads: float64, against x @ W + b."""
    monkeypatch.setattr(nk, "DENSE_SPLIT_MACS", 1 << 10)
    monkeypatch.setattr(nk, "CHUNK_BYTES", 1 << 12)
    g = np.random.default_rng(5)
    x, w, b = g.standard_normal((37, 20)), g.standard_normal((20, 7)), g.standard_normal(7)
    workers = nk.Workers(threads)
    workers.map(lambda i: i, 2, 1)  # the threads have taken the cores: products are split
    y = nk.dense_forward(x, w, b, workers)
    assert y.shape == (37, 7) and y.dtype == np.float64
    np.testing.assert_allclose(y, x @ w + b, atol=1e-12)


def test_a_failing_chunk_raises_in_the_caller_and_workers_go_on():
    w = nk.Workers(2)

    def chunk(i: int) -> int:
        if i == 3:
            raise ZeroDivisionError("chunk 3")
        return i

    with pytest.raises(ZeroDivisionError, match="chunk 3"):
        w.map(chunk, 8, 1)
    assert w.map(lambda i: i * i, 8, 1) == [i * i for i in range(8)]


def test_backends_with_the_same_thread_count_share_their_threads():
    import threading

    a, b = (get_backend("numpy", threads=3) for _ in range(2))
    assert a.kernels.workers is b.kernels.workers
    before = threading.active_count()
    x = np.ones((40, 8, 8, 2), np.float32)
    for backend in (a, b, get_backend("numpy", threads=3)):
        backend.kernels.conv2d_forward(
            x, np.ones((3, 3, 2, 4), np.float32), np.zeros(4, np.float32), (1, 1, 1, 1), 1, False
        )
    assert threading.active_count() <= before + 2


@pytest.mark.parametrize(
    "v2,v1,quota",
    [
        ("max 100000\n", None, None),
        ("150000 100000\n", None, 2),
        ("50000 100000\n", None, 1),
        (None, ("-1", "100000"), None),
        (None, ("300000", "100000"), 3),
        (None, None, None),
    ],
)
def test_container_cpu_quota_caps_the_default(tmp_path, monkeypatch, v2, v1, quota):
    from arraynet.backends import numpy_backend as nb

    v2_file, v1_dir = tmp_path / "cpu.max", tmp_path / "cpu"
    if v2 is not None:
        v2_file.write_text(v2)
    if v1 is not None:
        v1_dir.mkdir()
        (v1_dir / "cpu.cfs_quota_us").write_text(v1[0])
        (v1_dir / "cpu.cfs_period_us").write_text(v1[1])
    monkeypatch.setattr(nb, "CGROUP_V2_CPU_MAX", str(v2_file))
    monkeypatch.setattr(nb, "CGROUP_V1_CPU", str(v1_dir))
    monkeypatch.setattr(nb.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    for var in nb.THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    assert nb.cpu_quota() == quota
    assert nb.default_threads() == (quota or 64)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_clip_matches_numpy(backend):
    """ops.clip (max then min, no boolean masks) equals np.clip, NaN included."""
    b = get_backend(backend)
    x = np.array([-3.0, -2.0, 0.5, 5.0, 7.0, np.nan], dtype=np.float32)
    got = b.to_host(ops.clip(b.from_host(x), -2, 5))
    np.testing.assert_array_equal(got, np.clip(x, -2, 5))
    assert got.dtype == np.float32
