"""Portable array helpers (Array API only): the building blocks of the kernel contract's
portable definitions (`arraynet.backends.kernels.Kernels`) and of the layers.

Nothing here is dispatched: a backend replaces whole contract operations (a convolution's
forward, say), never these helpers.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

Array = Any


def clip(x: Array, low: float, high: float) -> Array:
    """min(max(x, low), high), element-wise. (array-api-compat's CuPy clip goes through
    boolean masks, each of which makes the host wait for the GPU. The bounds are filled on
    the device: `asarray` of a Python number would be a host-to-device copy.)"""
    xp = array_namespace(x)
    lo = xp.full((), low, dtype=x.dtype, device=x.device)
    hi = xp.full((), high, dtype=x.dtype, device=x.device)
    return xp.minimum(xp.maximum(x, lo), hi)


def pad_hw(x: Array, top: int, bottom: int, left: int, right: int) -> Array:
    """Zero-pad the two spatial axes of an NHWC array."""
    if not (top or bottom or left or right):
        return x
    xp = array_namespace(x)
    n, h, w, c = x.shape
    dev = x.device
    if top or bottom:
        parts = [xp.zeros((n, top, w, c), dtype=x.dtype, device=dev)] if top else []
        parts.append(x)
        if bottom:
            parts.append(xp.zeros((n, bottom, w, c), dtype=x.dtype, device=dev))
        x = xp.concat(parts, axis=1)
        h = h + top + bottom
    if left or right:
        parts = [xp.zeros((n, h, left, c), dtype=x.dtype, device=dev)] if left else []
        parts.append(x)
        if right:
            parts.append(xp.zeros((n, h, right, c), dtype=x.dtype, device=dev))
        x = xp.concat(parts, axis=2)
    return x


def im2col(xpad: Array, kh: int, kw: int, stride: int) -> Array:
    """Patches of a padded NHWC array as a matrix (N*Ho*Wo, kh*kw*C), columns (kh, kw, c)."""
    xp = array_namespace(xpad)
    n, hp, wp, c = xpad.shape
    ho = (hp - kh) // stride + 1
    wo = (wp - kw) // stride + 1
    hi, wi = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    windows = [
        xpad[:, i : i + hi : stride, j : j + wi : stride, :] for i in range(kh) for j in range(kw)
    ]
    cols = xp.stack(windows, axis=3)
    return xp.reshape(cols, (n * ho * wo, kh * kw * c))


def input_grad_operand(
    dy: Array, k: int, pad: tuple[int, int, int, int], in_hw: tuple[int, int]
) -> tuple[Array, tuple[int, int, int, int]]:
    """The (cropped) output gradient of a stride-1 convolution and the padding that make
    dL/dx a stride-1 correlation with `flipped_kernel`, yielding exactly in_hw."""
    h, w = in_hw
    pt, _, pl, _ = pad
    top, left = k - 1 - pt, k - 1 - pl
    if top < 0 or left < 0:
        dy = dy[:, max(-top, 0) :, max(-left, 0) :, :]
        top, left = max(top, 0), max(left, 0)
    bottom = h + k - 1 - top - dy.shape[1]
    right = w + k - 1 - left - dy.shape[2]
    if bottom < 0 or right < 0:
        dy = dy[:, : dy.shape[1] + min(bottom, 0), : dy.shape[2] + min(right, 0), :]
        bottom, right = max(bottom, 0), max(right, 0)
    return dy, (top, bottom, left, right)


def flipped_kernel(kernel: Array) -> Array:
    """(kh, kw, c, f) kernel turned 180 degrees with in/out swapped, as (kh*kw*f, c)."""
    xp = array_namespace(kernel)
    kh, kw, c, f = kernel.shape
    wflip = xp.flip(kernel, axis=(0, 1))
    return xp.reshape(xp.permute_dims(wflip, (0, 1, 3, 2)), (kh * kw * f, c))


def strided_input_grad(
    dy: Array, kernel: Array, stride: int, pad: tuple[int, int, int, int], in_hw: tuple[int, int]
) -> Array:
    """dL/dx of a strided convolution without the zeros of a dilated output gradient.

    Input position r = stride * a + p (padded coordinates) is reached only by the kernel
    rows p, p + stride, ...: each of the stride * stride phases (p, q) is a stride-1
    correlation of dy with that sub-kernel. The phases are computed over the padded
    grid, interleaved by stacking, and cropped to the input.
    """
    xp = array_namespace(dy)
    kh, kw, c, f = kernel.shape
    n, ho, wo, _ = dy.shape
    h, w = in_hw
    rows_a = -(-(h + pad[0] + pad[1]) // stride)  # phase rows covering the padded grid
    cols_a = -(-(w + pad[2] + pad[3]) // stride)
    phase_rows = []
    for p in range(stride):
        taps_i = list(range(p, kh, stride))[::-1]
        phases = []
        for q in range(stride):
            taps_j = list(range(q, kw, stride))[::-1]
            if not taps_i or not taps_j:
                phases.append(xp.zeros((n, rows_a, cols_a, c), dtype=dy.dtype, device=dy.device))
                continue
            ti, tj = len(taps_i), len(taps_j)
            sub = xp.stack([xp.stack([kernel[i, j, ...] for j in taps_j]) for i in taps_i])
            kmat = xp.reshape(xp.permute_dims(sub, (0, 1, 3, 2)), (ti * tj * f, c))
            slab = pad_hw(dy, ti - 1, rows_a - ho, tj - 1, cols_a - wo)
            phases.append(xp.reshape(im2col(slab, ti, tj, 1) @ kmat, (n, rows_a, cols_a, c)))
        phase_rows.append(xp.stack(phases, axis=3))  # (n, rows_a, cols_a, stride, c)
    grid = xp.stack(phase_rows, axis=2)  # (n, rows_a, stride, cols_a, stride, c)
    grid = xp.reshape(grid, (n, rows_a * stride, cols_a * stride, c))
    return grid[:, pad[0] : pad[0] + h, pad[2] : pad[2] + w, :]


def maxpool_forward(x: Array, p: int, with_index: bool = True) -> tuple[Array, Array | None]:
    """Non-overlapping p x p max pooling of NHWC (floor); returns output and the index
    (row * p + col) of each window's first maximum (None unless `with_index`)."""
    xp = array_namespace(x)
    n, h, w, c = x.shape
    ho, wo = h // p, w // p
    x = x[:, : ho * p, : wo * p, :]
    xw = xp.reshape(x, (n, ho, p, wo, p, c))
    xw = xp.permute_dims(xw, (0, 1, 3, 5, 2, 4))
    xw = xp.reshape(xw, (n, ho, wo, c, p * p))
    if not with_index:
        return xp.max(xw, axis=-1), None
    return xp.max(xw, axis=-1), xp.argmax(xw, axis=-1)


def maxpool_backward(dy: Array, idx: Array, p: int, in_shape: tuple[int, ...]) -> Array:
    """Gradient of maxpool_forward: dy goes to the (first) maximum of each window."""
    xp = array_namespace(dy)
    n, h, w, c = in_shape
    ho, wo = dy.shape[1], dy.shape[2]
    slots = xp.arange(p * p, dtype=idx.dtype, device=dy.device)
    hit = idx[..., None] == slots
    dxw = dy[..., None] * xp.astype(hit, dy.dtype)
    dxw = xp.reshape(dxw, (n, ho, wo, c, p, p))
    dxw = xp.permute_dims(dxw, (0, 1, 4, 2, 5, 3))
    dx = xp.reshape(dxw, (n, ho * p, wo * p, c))
    if ho * p != h or wo * p != w:
        dx = pad_hw(dx, 0, h - ho * p, 0, w - wo * p)
    return dx


# -- batch norm's running statistics ------------------------------------------------------
def running_stats(
    running_mean: Array, running_var: Array, mean: Array, var: Array, count: int, momentum: float
) -> tuple[Array, Array]:
    """The running mean and variance after a batch of `count` values per channel with
    (biased) variance `var`: running = momentum * running + (1 - momentum) * batch, with
    the unbiased batch variance."""
    unbiased = var * (count / max(count - 1, 1))
    new_mean = momentum * running_mean + (1 - momentum) * mean
    return new_mean, momentum * running_var + (1 - momentum) * unbiased


# -- softmax ----------------------------------------------------------------------------
def softmax(z: Array, axis: int = -1) -> Array:
    """Numerically stable softmax."""
    xp = array_namespace(z)
    e = xp.exp(z - xp.max(z, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def log_softmax(z: Array, axis: int = -1) -> Array:
    """Numerically stable log-softmax."""
    xp = array_namespace(z)
    s = z - xp.max(z, axis=axis, keepdims=True)
    return s - xp.log(xp.sum(xp.exp(s), axis=axis, keepdims=True))


# -- reductions over every axis but the last, as products with a ones vector -------------
def ones_row(xp: Any, n: int, dtype: Any, device: Any) -> Array:
    """A (1, n) row of ones: the left operand of a column sum."""
    return xp.ones((1, n), dtype=dtype, device=device)


def column_sum(x: Array, ones: Array | None = None) -> Array:
    """Sum over every axis but the last, in x's dtype, as one product (1, N) @ (N, C).

    A GEMV reads x once at memory speed on every library; CuPy runs `sum(axis=0)` of a
    tall array on a handful of threads (225x slower for a (401408, 32) float32 array on
    an H200). `ones` is a cached `ones_row` of length N, if the caller keeps one."""
    xp = array_namespace(x)
    c = x.shape[-1]
    x2 = xp.reshape(x, (-1, c))
    if ones is None:
        ones = ones_row(xp, x2.shape[0], x.dtype, x.device)
    return xp.reshape(ones @ x2, (c,))


def channel_sum64(x: Array) -> Array:
    """Per-channel (last-axis) sums of x in float64, for batch-norm statistics.

    Two products with ones vectors: within each image in x's dtype (K = H * W terms),
    then across the N images in float64. A float32 sum over all N * K values would lose
    about log10(N * K) digits, which the normalisation then amplifies; this one loses
    about log10(K), as the NumPy kernel does (BLAS within an image, float64 across)."""
    xp = array_namespace(x)
    acc = xp.float64 if x.dtype == xp.float32 else x.dtype
    n, c = x.shape[0], x.shape[-1]
    if x.ndim > 2:
        x3 = xp.reshape(x, (n, -1, c))
        x = xp.reshape(ones_row(xp, x3.shape[1], x.dtype, x.device) @ x3, (n, c))
    return column_sum(xp.astype(x, acc))
