"""Fast NumPy kernels (strided views, in-place updates) and `NumpyKernels`, which puts them
behind the kernel contract (`arraynet.backends.kernels.Kernels`); tests check every
override against the portable definition.

Convolutions work a chunk of images at a time; `Workers` runs the chunks on several
threads (NumPy copies and OpenBLAS calls release the GIL), one BLAS thread each. The
functions below keep their own signatures (`KERNELS`, `make_kernels`): the class adapts
them to the contract, and `scripts/bench_kernels_ab.py` puts an earlier revision's table
behind the same class.
"""

from __future__ import annotations

import functools
import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import as_strided
from threadpoolctl import ThreadpoolController

from arraynet.backends.kernels import Kernels, Saved
from arraynet.backends.portable import running_stats

CHUNK_BYTES = 4 << 20  # patch matrices are built this many bytes at a time (about L2)


@functools.cache
def _blas_libraries() -> ThreadpoolController:
    """The BLAS libraries loaded with NumPy (found once: the search walks every loaded
    shared library)."""
    return ThreadpoolController()


def set_blas_threads(n: int) -> None:
    """Let every BLAS call of the process use n threads."""
    _blas_libraries().limit(limits=n, user_api="blas")


def blas_threads() -> int:
    """The threads BLAS calls use now (the most of any loaded BLAS library)."""
    info = _blas_libraries().info()
    return max([d["num_threads"] for d in info if d["user_api"] == "blas"] or [1])


class Workers:
    """Threads that share a kernel's chunks; `Workers(1)` runs them in the caller.

    The caller works too, with n - 1 helper threads that wait on queues between kernels.
    The first time chunks run in parallel, BLAS is set to one thread for the process
    (`parallel` turns True): BLAS's own threads would compete with these for the cores,
    and they spin while they wait. Until then (a model without convolutions), BLAS keeps
    its own threads, which suit the small products of a dense network better.
    """

    def __init__(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError(f"worker threads must be at least 1, not {n}")
        self.n = n
        self.parallel = False
        self._todo: list[queue.SimpleQueue] = []
        self._lock = threading.Lock()  # one map at a time (the helpers are shared)

    @property
    def blas_threads(self) -> int:
        """The BLAS threads to run beside these: n until chunks have run in parallel,
        then 1."""
        return 1 if self.parallel else self.n

    def chunk(self, n_images: int, image_bytes: int) -> int:
        """Images per chunk: a chunk's largest matrix stays near CHUNK_BYTES, and the
        number of chunks is a multiple of the thread count (no thread idles at the end)."""
        step = max(1, min(n_images, CHUNK_BYTES // max(image_bytes, 1)))
        if self.n > 1:
            k = -(-n_images // step)
            k = -(-k // self.n) * self.n
            step = max(1, -(-n_images // k))
        return step

    def map(self, fn: Callable[[int], Any], n_images: int, step: int) -> list:
        """[fn(start) for each chunk start], in chunk order. Threads take the next chunk
        as they finish one; each chunk is computed the same way whichever thread runs it,
        and the caller combines the results in order, so the outcome does not depend on
        timing."""
        starts = range(0, n_images, step)
        if self.n == 1 or len(starts) == 1:
            return [fn(i) for i in starts]
        results: list[Any] = [None] * len(starts)
        errors: list[BaseException] = []
        next_chunk = itertools.count()  # next() is atomic under the GIL

        def drain() -> None:
            try:
                while (j := next(next_chunk)) < len(starts) and not errors:
                    results[j] = fn(starts[j])
            except BaseException as e:  # re-raised in the caller
                errors.append(e)

        done: queue.SimpleQueue = queue.SimpleQueue()  # this call's own (stale-proof)
        with self._lock:
            if not self.parallel:
                self.parallel = True
                set_blas_threads(self.blas_threads)
            helpers = self._helpers(min(self.n, len(starts)) - 1)
            for q in helpers:
                q.put((drain, done))
            drain()
            for _ in helpers:
                done.get()
        if errors:
            raise errors[0]
        return results

    def _helpers(self, k: int) -> list[queue.SimpleQueue]:
        """The first k helper threads' task queues, starting threads as needed."""
        while len(self._todo) < k:
            q: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=Workers._serve, args=(q,), daemon=True,
                             name=f"arraynet-{len(self._todo) + 1}").start()  # fmt: skip
            self._todo.append(q)
        return self._todo[:k]

    @staticmethod
    def _serve(todo: queue.SimpleQueue) -> None:
        while True:
            task, done = todo.get()
            task()
            done.put(None)


SERIAL = Workers(1)


@functools.cache
def shared_workers(n: int) -> Workers:
    """One `Workers(n)` for the whole process, shared by every NumPy backend with n
    threads (so making many backends does not start many idle threads)."""
    return Workers(n)


def _sum_parts(parts: list[tuple]) -> tuple:
    """Element-wise sum of the chunks' tuples of partial sums (fresh arrays, summed in
    place), in chunk order."""
    total = list(parts[0])
    for part in parts[1:]:
        for t, p in zip(total, part, strict=True):
            t += p
    return tuple(total)


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


def conv2d_forward(x, kernel, bias, pad, stride, workers: Workers = SERIAL):
    """Convolution as patches x kernel, a few images at a time (the patch matrix of a
    chunk stays in cache). Returns y and what backward needs (the padded input)."""
    kh, kw, c, f = kernel.shape
    xpad = pad_hw(x, *pad)
    n, hp, wp, _ = xpad.shape
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    wmat = kernel.reshape(-1, f)
    y = np.empty((n, ho, wo, f), dtype=x.dtype)
    y2 = y.reshape(n * ho * wo, f)
    step = workers.chunk(n, ho * wo * kh * kw * c * x.itemsize)

    def run(i: int) -> None:
        cols = im2col(xpad[i : i + step], kh, kw, stride)
        out = y2[i * ho * wo : i * ho * wo + cols.shape[0]]
        np.matmul(cols, wmat, out=out)
        out += bias  # while the chunk is in cache

    workers.map(run, n, step)
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


class _Phase:
    """One axis of one stride phase of a convolution's input gradient: the input rows
    r = first + stride * a (a < count) all see the kernel taps `taps` (reversed, so the
    phase is a stride-1 correlation), over the output-gradient rows lo .. lo + count +
    len(taps) - 2 (those outside the output are zeros)."""

    def __init__(self, p: int, k: int, stride: int, pad: int, n_in: int) -> None:
        self.taps = list(range(p, k, stride))[::-1]
        a_lo = max(0, -(-(pad - p) // stride))  # first a with stride * a + p >= pad
        a_hi = -(-(pad + n_in - p) // stride)  # a with stride * a + p < pad + n_in
        self.count = max(0, a_hi - a_lo)
        self.first = stride * a_lo + p - pad
        self.lo = a_lo - len(self.taps) + 1

    def window(self, n_out: int) -> tuple[slice, int, int]:
        """Rows of the output gradient to take, and the zeros to add before and after."""
        hi = self.lo + self.count + len(self.taps) - 1
        return slice(max(self.lo, 0), min(hi, n_out)), max(-self.lo, 0), max(hi - n_out, 0)


def _input_grad_plan(kernel: np.ndarray, pad, stride: int, in_hw) -> list:
    """(row phase, column phase, kernel matrix) for each stride phase with taps and
    rows: the input gradient of a stride-s convolution is s * s stride-1 correlations of
    the output gradient, each with the sub-kernel of the taps that reach that phase (so
    no zeros are multiplied, unlike correlating a dilated output gradient)."""
    kh, kw, c, _ = kernel.shape
    plan = []
    for p in range(stride):
        rows = _Phase(p, kh, stride, pad[0], in_hw[0])
        for q in range(stride):
            cols = _Phase(q, kw, stride, pad[2], in_hw[1])
            if rows.taps and cols.taps and rows.count and cols.count:
                sub = kernel[rows.taps][:, cols.taps].transpose(0, 1, 3, 2)
                plan.append((rows, cols, np.ascontiguousarray(sub).reshape(-1, c)))
    return plan


def _input_grad_chunk(dy: np.ndarray, dx: np.ndarray, plan: list, stride: int) -> None:
    """Write the input gradient of a chunk of images (dx, zeroed first if some phase
    gets no taps) phase by phase."""
    ho, wo = dy.shape[1], dy.shape[2]
    for rows, cols, kmat in plan:
        (r, top, bottom), (s, left, right) = rows.window(ho), cols.window(wo)
        patches = im2col(pad_hw(dy[:, r, s], top, bottom, left, right),
                         len(rows.taps), len(cols.taps), 1)  # fmt: skip
        r_end = rows.first + stride * (rows.count - 1) + 1
        c_end = cols.first + stride * (cols.count - 1) + 1
        target = dx[:, rows.first : r_end : stride, cols.first : c_end : stride]
        if target.flags.c_contiguous:  # stride 1: the product lands in dx itself
            np.matmul(patches, kmat, out=target.reshape(patches.shape[0], -1))
        else:
            target[...] = (patches @ kmat).reshape(target.shape)


def conv2d_backward(xpad, dy, kernel, pad, stride, need_dx: bool, workers: Workers = SERIAL):
    """Gradients of conv2d_forward, chunked like it: (dL/dkernel, dL/dbias, dL/dx or None).

    dL/dx comes phase by phase (`_input_grad_plan`), one stride-1 correlation of the
    output gradient per stride phase of the input, written straight into dx. Where those
    correlations would mostly multiply the zeros around a small output gradient (a 'valid'
    convolution of a small image), the patch-matrix gradient dy @ kernel^T is added back
    onto the input instead (`col2im_add`).
    """
    kh, kw, c, f = kernel.shape
    n, ho, wo, _ = dy.shape
    hp, wp = xpad.shape[1], xpad.shape[2]
    h, w = hp - pad[0] - pad[1], wp - pad[2] - pad[3]
    dy2 = dy.reshape(n, ho * wo, f)
    dx = plan = wmat_t = None
    dx_bytes = 0
    if need_dx:
        plan = _input_grad_plan(kernel, pad, stride, (h, w))
        sizes = [r.count * q.count * k.shape[0] for r, q, k in plan]  # patch matrices / c
        if sum(sizes) <= PHASE_MAC_RATIO * ho * wo * kh * kw * f:
            covered = sum(r.count * q.count for r, q, _ in plan) == h * w
            dx = (np.empty if covered else np.zeros)((n, h, w, c), dtype=dy.dtype)
            dx_bytes = max(sizes or [0])
        else:
            plan, wmat_t = None, kernel.reshape(-1, f).T
            dx = np.empty((n, h, w, c), dtype=dy.dtype)
            dx_bytes = hp * wp * c + ho * wo * kh * kw * c
    step = workers.chunk(n, max(ho * wo * kh * kw * c, dx_bytes) * dy.itemsize)

    def run(i: int) -> tuple[np.ndarray, np.ndarray]:
        cols = im2col(xpad[i : i + step], kh, kw, stride)
        m = cols.shape[0] // (ho * wo)
        dyc = dy2[i : i + m].reshape(-1, f)
        if plan is not None:
            _input_grad_chunk(dy[i : i + m], dx[i : i + m], plan, stride)
        elif need_dx:
            dxpad = np.zeros((m, hp, wp, c), dtype=dy.dtype)
            col2im_add(dxpad, dyc @ wmat_t, kh, kw, stride)
            dx[i : i + m] = dxpad[:, pad[0] : pad[0] + h, pad[2] : pad[2] + w, :]
        return cols.T @ dyc, _column_sum(dyc)

    dw, db = _sum_parts(workers.map(run, n, step))
    return dw.reshape(kh, kw, c, f), db, dx


# The phase correlations are used unless they multiply this many times the
# multiply-adds of dy @ kernel^T (the zeros around a small output gradient).
PHASE_MAC_RATIO = 1.5

DENSE_SPLIT_MACS = 8 << 20  # a dense product is shared out only if each thread gets this


def dense_forward(x: np.ndarray, kernel, bias, workers: Workers = SERIAL) -> np.ndarray:
    """x @ kernel + bias. Once BLAS runs on one thread (`Workers.parallel`), a large
    product (a big evaluation batch) is split by rows among the threads. Mirrors
    `Dense.forward`."""
    n = x.shape[0]
    small = n * x.shape[1] * kernel.shape[1] < DENSE_SPLIT_MACS * workers.n
    if not workers.parallel or small:  # (one thread is never parallel)
        return x @ kernel + bias
    y = np.empty((n, kernel.shape[1]), dtype=np.result_type(x, kernel, bias))
    step = workers.chunk(n, (x.shape[1] + kernel.shape[1]) * x.itemsize)

    def run(i: int) -> None:
        out = np.matmul(x[i : i + step], kernel, out=y[i : i + step])
        out += bias

    workers.map(run, n, step)
    return y


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


def _column_sum(x2: np.ndarray) -> np.ndarray:
    """Sum over the rows of (N, C), as a GEMV with a ones vector: NumPy's `sum(axis=0)`
    walks a tall array row by row, 2.5-16x slower here (scripts/bench_reductions.py)."""
    return np.ones(x2.shape[0], dtype=x2.dtype) @ x2


def _channel_sum(x3: np.ndarray) -> np.ndarray:
    """Per-channel sum of (N, K, C): float32 within an image (a BLAS gemv), float64 across."""
    ones = np.ones(x3.shape[1], dtype=x3.dtype)
    return np.matmul(ones, x3).sum(axis=0, dtype=np.float64)


def _channel_dot(a3: np.ndarray, b3: np.ndarray) -> np.ndarray:
    """Per-channel sum of a * b over (N, K, C), without the product array."""
    return np.einsum("nkc,nkc->nc", a3, b3).sum(axis=0, dtype=np.float64)


def batchnorm_forward(x: np.ndarray, gamma, beta, eps: float, workers: Workers = SERIAL):
    """Training-mode batch norm over all axes but the last, in few passes over chunks of
    images (per-channel sums in float64, combined in order).

    Returns y, what backward needs (the centred input and 1/std), and the batch mean and
    (biased) variance. Mirrors `BatchNorm.forward` in arraynet.layers.batchnorm.
    """
    n, c = x.shape[0], x.shape[-1]
    x3 = x.reshape(n, -1, c)
    count = x3.shape[0] * x3.shape[1]
    step = workers.chunk(n, x3[0].nbytes)
    (total,) = _sum_parts(workers.map(lambda i: (_channel_sum(x3[i : i + step]),), n, step))
    mean = (total / count).astype(x.dtype)
    xc = np.empty_like(x)
    xc3 = xc.reshape(n, -1, c)

    def centre(i: int) -> tuple[np.ndarray]:
        np.subtract(x3[i : i + step], mean, out=xc3[i : i + step])
        return (_channel_dot(xc3[i : i + step], xc3[i : i + step]),)

    (sq,) = _sum_parts(workers.map(centre, n, step))
    var = (sq / count).astype(x.dtype)
    inv = (1.0 / np.sqrt(var.astype(np.float64) + eps)).astype(x.dtype)
    scale = gamma * inv
    y = np.empty_like(x)
    y3 = y.reshape(n, -1, c)

    def affine(i: int) -> None:
        out = np.multiply(xc3[i : i + step], scale, out=y3[i : i + step])
        out += beta

    workers.map(affine, n, step)
    return y, (xc, inv), mean, var


def batchnorm_inference(x: np.ndarray, mean, inv, gamma, beta, workers: Workers = SERIAL):
    """(x - mean) * inv * gamma + beta, chunk by chunk in place of one output array: the
    portable evaluation-mode formula, operation for operation (so bitwise the same)."""
    y = np.empty_like(x)
    n = x.shape[0]
    step = workers.chunk(n, x[0].nbytes)

    def run(i: int) -> None:
        out = np.subtract(x[i : i + step], mean, out=y[i : i + step])
        out *= inv
        out *= gamma
        out += beta

    workers.map(run, n, step)
    return y


def batchnorm_backward(dy: np.ndarray, saved: tuple, gamma, workers: Workers = SERIAL):
    """Gradients of batchnorm_forward: (dL/dx, dL/dgamma, dL/dbeta)."""
    xc, inv = saved
    n, c = dy.shape[0], dy.shape[-1]
    dy3, xc3 = dy.reshape(n, -1, c), xc.reshape(n, -1, c)
    count = dy3.shape[0] * dy3.shape[1]
    step = workers.chunk(n, dy3[0].nbytes)

    def sums(i: int) -> tuple[np.ndarray, np.ndarray]:
        d, xcc = dy3[i : i + step], xc3[i : i + step]
        return _channel_sum(d), _channel_dot(d, xcc)

    sum_dy, dot = _sum_parts(workers.map(sums, n, step))
    dbeta = sum_dy.astype(dy.dtype)
    dgamma = (dot * inv).astype(dy.dtype)
    a = gamma * inv
    # dx = a * (dy - dbeta / count - xhat * dgamma / count), with xhat = xc * inv
    k_xc = -a * inv * dgamma / count
    k_0 = -a * dbeta / count
    dx = np.empty_like(dy)
    dx3 = dx.reshape(n, -1, c)

    def grad(i: int) -> None:
        out = np.multiply(xc3[i : i + step], k_xc, out=dx3[i : i + step])
        out += k_0
        out += np.multiply(dy3[i : i + step], a)

    workers.map(grad, n, step)
    return dx, dgamma, dbeta


def adam_step(p, g, m, v, step, v_scale, b1: float, b2: float, eps: float):
    """In-place Adam step with step = lr / (1 - b1^t) and v_scale = 1 / sqrt(1 - b2^t);
    returns the (same) arrays p, m, v."""
    m *= b1
    m += (1.0 - b1) * g
    v *= b2
    g2 = np.multiply(g, g)
    g2 *= 1.0 - b2
    v += g2
    denom = np.sqrt(v, out=g2)
    denom *= v_scale
    denom += eps
    update = np.divide(m, denom)
    update *= step
    p -= update
    return p, m, v


def make_kernels(workers: Workers = SERIAL) -> dict[str, Callable]:
    """The kernels by name, the chunked ones bound to `workers`."""
    return {
        **KERNELS,
        "conv2d_forward": functools.partial(conv2d_forward, workers=workers),
        "conv2d_backward": functools.partial(conv2d_backward, workers=workers),
        "batchnorm_forward": functools.partial(batchnorm_forward, workers=workers),
        "batchnorm_backward": functools.partial(batchnorm_backward, workers=workers),
        "batchnorm_inference": functools.partial(batchnorm_inference, workers=workers),
        "dense_forward": functools.partial(dense_forward, workers=workers),
    }


KERNELS = {
    "pad_hw": pad_hw,
    "im2col": im2col,
    "conv2d_forward": conv2d_forward,
    "conv2d_backward": conv2d_backward,
    "maxpool_forward": maxpool_forward,
    "maxpool_backward": maxpool_backward,
    "adam_step": adam_step,
    "batchnorm_forward": batchnorm_forward,
    "batchnorm_backward": batchnorm_backward,
    "batchnorm_inference": batchnorm_inference,
    "dense_forward": dense_forward,
}


# -- the contract ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NumpyConvSaved(Saved):
    """The padded input (the patch matrix is rebuilt chunk by chunk in backward)."""

    xpad: np.ndarray


@dataclass(frozen=True, slots=True)
class NumpyPoolSaved(Saved):
    """Each window's argmax (uint8 for 2 x 2 windows) and the input shape."""

    index: np.ndarray
    p: int
    in_shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NumpyNormSaved(Saved):
    """The centred input and 1/std per channel."""

    xc: np.ndarray
    inv: np.ndarray


class NumpyKernels(Kernels):
    """The NumPy backend's kernels: the functions of `functions` (default: this module's,
    bound to `workers`) behind the contract."""

    name: ClassVar[str] = "numpy"
    ConvSaved = NumpyConvSaved
    PoolSaved = NumpyPoolSaved
    NormSaved = NumpyNormSaved

    def __init__(self, workers: Workers = SERIAL, functions: dict | None = None) -> None:
        super().__init__()
        self.workers = workers
        self._fn = make_kernels(workers) if functions is None else dict(functions)

    def __repr__(self) -> str:
        return f"NumpyKernels(threads={self.workers.n})"

    def column_sum(self, x):
        return _column_sum(x.reshape(-1, x.shape[-1]))

    def dense_forward(self, x, kernel, bias):
        return self._fn["dense_forward"](x, kernel, bias)

    def conv2d_forward(self, x, kernel, bias, pad, stride, training):
        y, xpad = self._fn["conv2d_forward"](x, kernel, bias, pad, stride)
        return y, (NumpyConvSaved(xpad) if training else None)

    def conv2d_backward(self, saved, dy, kernel, pad, stride, need_dx):
        s = self._own(saved, NumpyConvSaved, "conv2d_backward")
        return self._fn["conv2d_backward"](s.xpad, dy, kernel, pad, stride, need_dx)

    def maxpool_forward(self, x, p, training):
        y, index = self._fn["maxpool_forward"](x, p, training)
        return y, (NumpyPoolSaved(index, p, tuple(x.shape)) if training else None)

    def maxpool_backward(self, saved, dy):
        s = self._own(saved, NumpyPoolSaved, "maxpool_backward")
        return self._fn["maxpool_backward"](dy, s.index, s.p, s.in_shape)

    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, momentum, eps):
        y, (xc, inv), mean, var = self._fn["batchnorm_forward"](x, gamma, beta, eps)
        count = x.size // x.shape[-1]
        new_mean, new_var = running_stats(running_mean, running_var, mean, var, count, momentum)
        return y, NumpyNormSaved(xc, inv), new_mean, new_var

    def batchnorm_backward(self, saved, dy, gamma):
        s = self._own(saved, NumpyNormSaved, "batchnorm_backward")
        return self._fn["batchnorm_backward"](dy, (s.xc, s.inv), gamma)

    def batchnorm_inference(self, x, running_mean, running_var, gamma, beta, eps):
        inv = 1.0 / np.sqrt(running_var + eps)
        return self._fn["batchnorm_inference"](x, running_mean, inv, gamma, beta)

    def adam_update(self, params, grads, m, v, scalars, b1, b2, eps):
        update, step, v_scale = self._fn["adam_step"], scalars[0], scalars[1]
        for p, g, m1, v1 in zip(params, grads, m, v, strict=True):
            update(p, g, m1, v1, step, v_scale, b1, b2, eps)
        return params, m, v
