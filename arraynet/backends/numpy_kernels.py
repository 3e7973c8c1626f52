"""Fast NumPy kernels (strided views, in-place updates). Each mirrors a portable function
in `arraynet.ops` or `arraynet.optimizers`, and tests check they agree."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from arraynet import ops

CHUNK_BYTES = 4 << 20  # patch matrices are built this many bytes at a time (about L2)


def pad_hw(x: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Zero-pad the spatial axes of NHWC into one new buffer."""
    if not (top or bottom or left or right):
        return x
    n, h, w, c = x.shape
    out = np.zeros((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
    out[:, top : top + h, left : left + w, :] = x
    return out


def im2col(xpad: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """One strided view and one copy: (N*Ho*Wo, kh*kw*C)."""
    xpad = np.ascontiguousarray(xpad)
    n, hp, wp, c = xpad.shape
    ho = (hp - kh) // stride + 1
    wo = (wp - kw) // stride + 1
    sn, sh, sw, sc = xpad.strides
    view = as_strided(
        xpad,
        shape=(n, ho, wo, kh, kw, c),
        strides=(sn, sh * stride, sw * stride, sh, sw, sc),
        writeable=False,
    )
    return view.reshape(n * ho * wo, kh * kw * c)


def _chunk(n: int, row_bytes: int) -> int:
    """Images per chunk so that one chunk's patch matrix stays near CHUNK_BYTES."""
    return max(1, min(n, CHUNK_BYTES // max(row_bytes, 1)))


def conv2d_forward(x, kernel, bias, pad, stride):
    """Convolution as patches x kernel, a few images at a time (the patch matrix of a
    chunk stays in cache). Returns y and what backward needs (the padded input)."""
    kh, kw, c, f = kernel.shape
    xpad = pad_hw(x, *pad)
    n, hp, wp, _ = xpad.shape
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    wmat = kernel.reshape(-1, f)
    y = np.empty((n, ho, wo, f), dtype=x.dtype)
    y2 = y.reshape(n * ho * wo, f)
    step = _chunk(n, ho * wo * kh * kw * c * x.itemsize)
    for i in range(0, n, step):
        cols = im2col(xpad[i : i + step], kh, kw, stride)
        out = y2[i * ho * wo : i * ho * wo + cols.shape[0]]
        np.matmul(cols, wmat, out=out)
        out += bias  # while the chunk is in cache
    return y, xpad


def col2im_add(dxpad: np.ndarray, dcols: np.ndarray, kh: int, kw: int, stride: int) -> None:
    """Add the rows of a patch matrix back onto the padded images they were taken from
    (the adjoint of `im2col`), in place: kh * kw strided additions."""
    n, hp, wp, c = dxpad.shape
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    d6 = dcols.reshape(n, ho, wo, kh, kw, c)
    hi, wi = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    for i in range(kh):
        for j in range(kw):
            dxpad[:, i : i + hi : stride, j : j + wi : stride, :] += d6[:, :, :, i, j, :]


def conv2d_backward(xpad, dy, kernel, pad, stride, need_dx: bool):
    """Gradients of conv2d_forward, chunked like it: (dL/dkernel, dL/dbias, dL/dx or None).

    Stride 1 with an output as large as the input: dL/dx is a correlation of the padded
    output gradient with the flipped kernel. Otherwise (strides, 'valid' borders) the
    patch-matrix gradient dy @ kernel^T is added back onto the input (`col2im_add`), which
    skips the zeros that a dilated or widely padded output gradient would multiply.
    """
    kh, kw, c, f = kernel.shape
    n, ho, wo, _ = dy.shape
    hp, wp = xpad.shape[1], xpad.shape[2]
    h, w = hp - pad[0] - pad[1], wp - pad[2] - pad[3]
    dy2 = dy.reshape(n, ho * wo, f)
    dw = np.zeros((kh * kw * c, f), dtype=dy.dtype)
    db = np.zeros(f, dtype=dy.dtype)
    dx = dydpad = wflip = wmat_t = None
    correlate = stride == 1 and (ho, wo) == (h, w)
    if need_dx:
        dx = np.empty((n, h, w, c), dtype=dy.dtype)
        if correlate:
            dyd, pads = ops.input_grad_operand(dy, kh, 1, pad, (h, w))
            dydpad = pad_hw(dyd, *pads)
            wflip = ops.flipped_kernel(kernel)
        else:
            wmat_t = kernel.reshape(-1, f).T
    dx_bytes = h * w * kh * kw * f if correlate else hp * wp * c
    step = _chunk(n, max(ho * wo * kh * kw * c, dx_bytes) * dy.itemsize)
    for i in range(0, n, step):
        cols = im2col(xpad[i : i + step], kh, kw, stride)
        m = cols.shape[0] // (ho * wo)
        dyc = dy2[i : i + m].reshape(-1, f)
        dw += cols.T @ dyc
        db += dyc.sum(axis=0)
        if not need_dx:
            continue
        if correlate:
            dcols = im2col(dydpad[i : i + m], kh, kw, 1)
            np.matmul(dcols, wflip, out=dx.reshape(-1, c)[i * h * w : (i + m) * h * w])
        else:
            dxpad = np.zeros((m, hp, wp, c), dtype=dy.dtype)
            col2im_add(dxpad, dyc @ wmat_t, kh, kw, stride)
            dx[i : i + m] = dxpad[:, pad[0] : pad[0] + h, pad[2] : pad[2] + w, :]
    return dw.reshape(kh, kw, c, f), db, dx


def maxpool_forward(
    x: np.ndarray, p: int, with_index: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Max over p x p windows; the index (row * p + col) is that of the first maximum.

    2 x 2 windows use four strided views and element-wise maxima (no copies, no argmax).
    """
    n, h, w, c = x.shape
    ho, wo = h // p, w // p
    if p == 2:
        x = x[:, : 2 * ho, : 2 * wo, :]
        a, b, cc, d = x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]
        mab, mcd = np.maximum(a, b), np.maximum(cc, d)
        y = np.maximum(mab, mcd)
        if not with_index:
            return y, None
        # idx = top ? 2 + (d > c) : (b > a), in uint8 arithmetic (np.where is slow here)
        iab = (b > a).view(np.uint8)
        top = (mcd > mab).view(np.uint8)
        idx = (d > cc).view(np.uint8)
        idx += np.uint8(2)
        idx -= iab
        idx *= top
        idx += iab
        return y, idx
    xw = x[:, : ho * p, : wo * p, :].reshape(n, ho, p, wo, p, c)
    xw = xw.transpose(0, 1, 3, 5, 2, 4).reshape(n, ho, wo, c, p * p)
    if not with_index:
        return xw.max(axis=-1), None
    idx = xw.argmax(axis=-1)
    y = np.take_along_axis(xw, idx[..., None], axis=-1)[..., 0]
    return y, idx


def maxpool_backward(dy: np.ndarray, idx: np.ndarray, p: int, in_shape: tuple) -> np.ndarray:
    """Scatter dy to the argmax positions."""
    n, h, w, c = in_shape
    ho, wo = dy.shape[1], dy.shape[2]
    if p == 2:
        dx = np.zeros((n, h, w, c), dtype=dy.dtype)
        for k, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            np.multiply(dy, idx == k, out=dx[:, i : 2 * ho : 2, j : 2 * wo : 2, :])
        return dx
    dxw = np.zeros((n, ho, wo, c, p * p), dtype=dy.dtype)
    np.put_along_axis(dxw, idx[..., None], dy[..., None], axis=-1)
    dx = dxw.reshape(n, ho, wo, c, p, p).transpose(0, 1, 4, 2, 5, 3).reshape(n, ho * p, wo * p, c)
    if ho * p != h or wo * p != w:
        dx = pad_hw(dx, 0, h - ho * p, 0, w - wo * p)
    return dx


def _channel_sum(x3: np.ndarray) -> np.ndarray:
    """Per-channel sum of (N, K, C): float32 within an image (a BLAS gemv), float64 across."""
    ones = np.ones(x3.shape[1], dtype=x3.dtype)
    return np.matmul(ones, x3).sum(axis=0, dtype=np.float64)


def _channel_dot(a3: np.ndarray, b3: np.ndarray) -> np.ndarray:
    """Per-channel sum of a * b over (N, K, C), without the product array."""
    return np.einsum("nkc,nkc->nc", a3, b3).sum(axis=0, dtype=np.float64)


def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float):
    """Training-mode batch norm over all axes but the last, in few passes.

    Returns y, what backward needs (the centred input and 1/std), and the batch mean and
    (biased) variance. Mirrors `BatchNorm.forward` in arraynet.layers.batchnorm.
    """
    n, c = x.shape[0], x.shape[-1]
    x3 = x.reshape(n, -1, c)
    count = x3.shape[0] * x3.shape[1]
    mean = (_channel_sum(x3) / count).astype(x.dtype)
    xc = x - mean
    xc3 = xc.reshape(n, -1, c)
    var = (_channel_dot(xc3, xc3) / count).astype(x.dtype)
    inv = (1.0 / np.sqrt(var.astype(np.float64) + eps)).astype(x.dtype)
    y = xc * (gamma * inv)
    y += beta
    return y, (xc, inv), mean, var


def batchnorm_backward(dy: np.ndarray, saved: tuple, gamma: np.ndarray):
    """Gradients of batchnorm_forward: (dL/dx, dL/dgamma, dL/dbeta)."""
    xc, inv = saved
    n, c = dy.shape[0], dy.shape[-1]
    dy3 = dy.reshape(n, -1, c)
    count = dy3.shape[0] * dy3.shape[1]
    dbeta = _channel_sum(dy3).astype(dy.dtype)
    dgamma = (_channel_dot(dy3, xc.reshape(n, -1, c)) * inv).astype(dy.dtype)
    a = gamma * inv
    # dx = a * (dy - dbeta / count - xhat * dgamma / count), with xhat = xc * inv
    dx = xc * (-a * inv * dgamma / count)
    dx += -a * dbeta / count
    tmp = np.multiply(dy, a)
    dx += tmp
    return dx, dgamma, dbeta


def adam_update(p, g, m, v, lr: float, b1: float, b2: float, eps: float, t: int):
    """In-place Adam step; returns the (same) arrays p, m, v."""
    m *= b1
    m += (1.0 - b1) * g
    v *= b2
    g2 = np.multiply(g, g)
    g2 *= 1.0 - b2
    v += g2
    c1 = 1.0 - b1**t
    c2 = 1.0 - b2**t
    denom = np.sqrt(v, out=g2)
    denom *= 1.0 / np.sqrt(c2)
    denom += eps
    step = np.divide(m, denom)
    step *= lr / c1
    p -= step
    return p, m, v


KERNELS = {
    "pad_hw": pad_hw,
    "im2col": im2col,
    "conv2d_forward": conv2d_forward,
    "conv2d_backward": conv2d_backward,
    "maxpool_forward": maxpool_forward,
    "maxpool_backward": maxpool_backward,
    "adam_update": adam_update,
    "batchnorm_forward": batchnorm_forward,
    "batchnorm_backward": batchnorm_backward,
}
