"""arraynet's own CUDA kernels behind the kernel contract (opt-in, not yet run on a GPU).

`CudaKernels` replaces the hot operations with the kernels of `cuda_kernels.cu`:

- convolution: im2col and col2im as one gather kernel each, the zero padding folded in
  (no padded copy, no stack of k*k shifted windows), around cuBLAS products;
- column sums and batch norm's statistics: two-stage per-channel reductions, accumulated
  in double and deterministic (no atomics), instead of products with a ones vector;
- batch norm: statistics, running statistics and normalisation in four launches, the
  backward in three;
- max pooling forward and backward, one launch each;
- softmax with cross-entropy, two launches;
- Adam over every parameter in one launch (tables of device addresses, cached).

The same class runs on two runtimes: `CupyRuntime` (NVRTC through `cupy.RawModule`, on
a GPU) and `arraynet.backends.cuda_on_cpu.CpuRuntime` (the source built by a host C++
compiler, run on NumPy arrays), which is how the parity tests run every kernel without a
GPU. No GPU has run these kernels yet, so the CuPy backend takes them only when asked:
`ARRAYNET_CUDA_KERNELS=1` (see docs/backends.md). The defaults stay as measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from array_api_compat import array_namespace

from arraynet.backends.kernels import Kernels, Saved

Array = Any
SOURCE = (Path(__file__).with_name("cuda_kernels.cu")).read_text()
BLOCK = 256  # threads per block
MAX_BLOCKS = 65535  # grid-stride loops cover the rest
REDUCE_THREADS = 1 << 16  # stage-1 threads a per-channel reduction aims for
TABLE_CACHE = 16  # Adam's address tables kept (steady-state steps reuse one)

_REAL = {"float32": "float", "float64": "double"}
# NVRTC's options besides the element type: generic lambdas, and unannotated functions
# (the lambdas' call operators) compiled for the device
NVRTC_OPTIONS = ("--std=c++14", "-default-device")


def real_name(dtype: Any) -> str:
    """The C type of a float32 or float64 dtype ('float' or 'double')."""
    try:
        return _REAL[str(dtype)]
    except KeyError:
        raise TypeError(f"the CUDA kernels take float32 or float64, not {dtype}") from None


def _dtype_key(x: Array) -> str:
    return str(x.dtype)


class CupyRuntime:
    """`CudaKernels`' runtime on CuPy arrays: the source compiled by NVRTC, one module
    per element type, launched on the current stream."""

    name = "cupy"

    def __init__(self, cupy: Any, source: str = SOURCE) -> None:
        self.cupy = cupy
        self.source = source
        self._modules: dict[str, Any] = {}

    def _module(self, dtype: str) -> Any:
        mod = self._modules.get(dtype)
        if mod is None:
            opts = (f"-DAN_REAL={real_name(dtype)}", *NVRTC_OPTIONS)
            mod = self._modules[dtype] = self.cupy.RawModule(code=self.source, options=opts)
        return mod

    def contiguous(self, x: Array) -> Array:
        return self.cupy.ascontiguousarray(x)

    def address(self, x: Array) -> int:
        return int(x.data.ptr)

    def launch(self, name: str, dtype: str, grid: int, block: int, args: tuple) -> None:
        self._module(dtype).get_function(name)((grid,), (block,), args)


@dataclass(frozen=True, slots=True)
class CudaConvSaved(Saved):
    """The patch matrix and the input's (height, width)."""

    cols: Array
    in_hw: tuple[int, int]


@dataclass(frozen=True, slots=True)
class CudaPoolSaved(Saved):
    """The slot (row * p + col) of each window's first maximum, as int32."""

    slot: Array
    p: int
    in_shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CudaNormSaved(Saved):
    """The normalised input and 1/std per channel."""

    xhat: Array
    inv: Array


def _i(v: int) -> np.int64:
    return np.int64(v)


def _ints(*values: int) -> tuple[np.int64, ...]:
    """Python integers as the kernels' 64-bit `i64` arguments."""
    return tuple(np.int64(v) for v in values)


def _pointwise(kh: int, kw: int, stride: int, pad: tuple) -> bool:
    """A 1x1, stride-1, unpadded convolution: its patch matrix is the input itself."""
    return kh == kw == stride == 1 and not any(pad)


class CudaKernels(Kernels):
    """The contract's hot operations as arraynet's own CUDA kernels (see the module)."""

    name: ClassVar[str] = "cuda"
    ConvSaved = CudaConvSaved
    PoolSaved = CudaPoolSaved
    NormSaved = CudaNormSaved

    def __init__(self, runtime: Any) -> None:
        super().__init__()
        self.runtime = runtime
        self._tables: dict[tuple, tuple[Array, Array, int]] = {}
        self._dummy: dict[tuple, Array] = {}

    def __repr__(self) -> str:
        return f"CudaKernels({self.runtime.name})"

    # -- helpers ------------------------------------------------------------------------
    def _run(self, name: str, x: Array, total: int, *args: Any) -> None:
        """Launch `name` for `total` work items in x's element type."""
        grid = max(1, min(MAX_BLOCKS, -(-total // BLOCK)))
        self.runtime.launch(name, _dtype_key(x), grid, BLOCK, args)

    def _real(self, x: Array, v: float) -> np.floating:
        return np.dtype(_dtype_key(x)).type(v)

    def _c(self, x: Array) -> Array:
        return self.runtime.contiguous(x)

    def _channel_sums(self, a: Array, mode: int, b: Array = None, shift: Array = None) -> tuple:
        """Stage 1 of a per-channel reduction of a (rows, C) view: the (chunks, C) float64
        partial sums and the chunk count."""
        xp = array_namespace(a)
        c = a.shape[-1]
        rows = math.prod(a.shape[:-1])
        chunks = max(1, min(rows, REDUCE_THREADS // max(c, 1)))
        per = -(-rows // chunks) if rows else 1
        chunks = max(1, -(-rows // per))
        partial = xp.empty((chunks, c), dtype=xp.float64, device=a.device)
        operands = (a, a if b is None else b, a if shift is None else shift, partial)
        sizes = _ints(rows, c, per, chunks)
        self._run("an_channel_partials", a, chunks * c, *operands, np.int32(mode), *sizes)
        return partial, chunks

    def _finish(self, partial: Array, chunks: int, like: Array, scale: float) -> Array:
        xp = array_namespace(like)
        c = like.shape[-1]
        out = xp.empty((c,), dtype=like.dtype, device=like.device)
        self._run("an_channel_finish", like, c, partial, out, _i(chunks), _i(c), np.float64(scale))
        return out

    def _slot_dummy(self, x: Array) -> Array:
        xp = array_namespace(x)
        key = (str(x.device), id(xp))
        if key not in self._dummy:
            self._dummy[key] = xp.zeros((1,), dtype=xp.int32, device=x.device)
        return self._dummy[key]

    # -- reductions ---------------------------------------------------------------------
    def column_sum(self, x):
        x = self._c(x)
        partial, chunks = self._channel_sums(x, 0)
        return self._finish(partial, chunks, x, 1.0)

    # -- convolution --------------------------------------------------------------------
    def conv2d_forward(self, x, kernel, bias, pad, stride, training):
        xp = array_namespace(x)
        x = self._c(x)
        n, h, w, c = x.shape
        kh, kw, _, f = kernel.shape
        pt, pb, pl, pr = pad
        ho = (h + pt + pb - kh) // stride + 1
        wo = (w + pl + pr - kw) // stride + 1
        if _pointwise(kh, kw, stride, pad):
            cols = xp.reshape(x, (n * h * w, c))
        else:
            cols = xp.empty((n * ho * wo, kh * kw * c), dtype=x.dtype, device=x.device)
            geometry = _ints(n, h, w, c, ho, wo, kh, kw, stride, pt, pl)
            self._run("an_im2col", x, n * ho * wo * kh * kw * c, x, cols, *geometry)
        y = self._c(cols @ xp.reshape(kernel, (kh * kw * c, f)))
        self._run("an_add_bias", y, n * ho * wo * f, y, self._c(bias), _i(n * ho * wo), _i(f))
        saved = CudaConvSaved(cols, (h, w)) if training else None
        return xp.reshape(y, (n, ho, wo, f)), saved

    def conv2d_backward(self, saved, dy, kernel, pad, stride, need_dx):
        s = self._own(saved, CudaConvSaved, "conv2d_backward")
        xp = array_namespace(dy)
        kh, kw, c, f = kernel.shape
        n, ho, wo, _ = dy.shape
        h, w = s.in_hw
        dy2 = xp.reshape(self._c(dy), (n * ho * wo, f))
        dkernel = xp.reshape(xp.matrix_transpose(s.cols) @ dy2, (kh, kw, c, f))
        dbias = self.column_sum(dy2)
        if not need_dx:
            return dkernel, dbias, None
        kmat = xp.reshape(kernel, (kh * kw * c, f))
        dcols = self._c(dy2 @ xp.matrix_transpose(kmat))  # (N*Ho*Wo, kh*kw*C)
        if _pointwise(kh, kw, stride, pad):
            return dkernel, dbias, xp.reshape(dcols, (n, h, w, c))
        dx = xp.empty((n, h, w, c), dtype=dy.dtype, device=dy.device)
        geometry = _ints(n, h, w, c, ho, wo, kh, kw, stride, pad[0], pad[2])
        self._run("an_col2im", dy, n * h * w * c, dcols, dx, *geometry)
        return dkernel, dbias, dx

    # -- pooling ------------------------------------------------------------------------
    def maxpool_forward(self, x, p, training):
        xp = array_namespace(x)
        x = self._c(x)
        n, h, w, c = x.shape
        shape = (n, h // p, w // p, c)
        y = xp.empty(shape, dtype=x.dtype, device=x.device)
        slot = xp.empty(shape, dtype=xp.int32, device=x.device) if training else None
        slots = self._slot_dummy(x) if slot is None else slot
        self._run("an_maxpool_forward", x, math.prod(shape), x, y, slots,
                  np.int32(bool(training)), *_ints(n, h, w, c, p))  # fmt: skip
        return y, (CudaPoolSaved(slot, p, (n, h, w, c)) if training else None)

    def maxpool_backward(self, saved, dy):
        s = self._own(saved, CudaPoolSaved, "maxpool_backward")
        xp = array_namespace(dy)
        n, h, w, c = s.in_shape
        dx = xp.empty(s.in_shape, dtype=dy.dtype, device=dy.device)
        self._run("an_maxpool_backward", dy, n * h * w * c, self._c(dy), s.slot, dx,
                  *_ints(n, h, w, c, s.p))  # fmt: skip
        return dx

    # -- batch normalisation ------------------------------------------------------------
    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, momentum, eps):
        xp = array_namespace(x)
        x = self._c(x)
        c = x.shape[-1]
        count = math.prod(x.shape[:-1])
        partial, chunks = self._channel_sums(x, 0)
        mean = self._finish(partial, chunks, x, 1.0 / count)
        partial, chunks = self._channel_sums(x, 1, shift=mean)
        new = [xp.empty((c,), dtype=x.dtype, device=x.device) for _ in range(3)]
        inv, new_mean, new_var = new
        running = (self._c(running_mean), self._c(running_var))
        numbers = [self._real(x, v) for v in (count / max(count - 1, 1), momentum, eps)]
        self._run("an_bn_stats", x, c, partial, mean, *running, inv, new_mean, new_var,
                  *_ints(chunks, c), np.float64(count), *numbers)  # fmt: skip
        xhat = xp.empty(x.shape, dtype=x.dtype, device=x.device)
        y = xp.empty(x.shape, dtype=x.dtype, device=x.device)
        affine = (self._c(gamma), self._c(beta))
        self._run("an_bn_normalize", x, count * c, x, mean, inv, *affine, xhat, y,
                  *_ints(count * c, c))  # fmt: skip
        return y, CudaNormSaved(xhat, inv), new_mean, new_var

    def batchnorm_backward(self, saved, dy, gamma):
        s = self._own(saved, CudaNormSaved, "batchnorm_backward")
        xp = array_namespace(dy)
        dy = self._c(dy)
        c = dy.shape[-1]
        count = math.prod(dy.shape[:-1])
        partial, chunks = self._channel_sums(dy, 2, b=s.xhat)
        dgamma = self._finish(partial, chunks, dy, 1.0)
        partial, chunks = self._channel_sums(dy, 0)
        dbeta = self._finish(partial, chunks, dy, 1.0)
        dx = xp.empty(dy.shape, dtype=dy.dtype, device=dy.device)
        self._run("an_bn_backward", dy, count * c, dy, s.xhat, self._c(gamma), s.inv, dgamma,
                  dbeta, dx, *_ints(count * c, c), self._real(dy, count))  # fmt: skip
        return dx, dgamma, dbeta

    def batchnorm_inference(self, x, running_mean, running_var, gamma, beta, eps):
        xp = array_namespace(x)
        x = self._c(x)
        total, c = math.prod(x.shape), x.shape[-1]
        y = xp.empty(x.shape, dtype=x.dtype, device=x.device)
        stats = [self._c(a) for a in (running_mean, running_var, gamma, beta)]
        self._run("an_bn_inference", x, total, x, *stats, y, *_ints(total, c), self._real(x, eps))
        return y

    # -- loss ---------------------------------------------------------------------------
    def softmax_cross_entropy(self, logits, target, smoothing):
        xp = array_namespace(logits)
        z = self._c(logits)
        t = self._c(target if target.dtype == z.dtype else xp.astype(target, z.dtype))
        n, k = z.shape
        grad = xp.empty((n, k), dtype=z.dtype, device=z.device)
        rows = xp.empty((n,), dtype=xp.float64, device=z.device)
        loss = xp.empty((), dtype=z.dtype, device=z.device)
        self._run("an_softmax_xent", z, n, z, t, grad, rows, _i(n), _i(k), self._real(z, smoothing))
        self._run("an_mean_loss", z, 1, rows, loss, _i(n))
        return loss, grad

    # -- optimizer ----------------------------------------------------------------------
    def _table(self, xp: Any, like: Array, groups: list[list[Array]]) -> tuple[Array, Array, int]:
        """The device tables of Adam's launch: every tensor's address, (params, grads, m,
        v) in turn, and the cumulative sizes; cached by addresses and sizes."""
        rt = self.runtime
        sizes = [math.prod(a.shape) for a in groups[0]]
        addresses = [rt.address(a) for g in groups for a in g]
        key = (*addresses, *sizes)
        hit = self._tables.get(key)
        if hit is None:
            if len(self._tables) >= TABLE_CACHE:
                self._tables.pop(next(iter(self._tables)))
            starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            dev = like.device
            hit = (
                xp.asarray(np.asarray(addresses, dtype=np.int64), device=dev),
                xp.asarray(starts, device=dev),
                int(starts[-1]),
            )
            self._tables[key] = hit
        return hit

    def adam_update(self, params, grads, m, v, scalars, b1, b2, eps):
        if not params:
            return params, m, v
        xp = array_namespace(params[0])
        dtype = params[0].dtype
        groups = [[self._c(a) for a in group] for group in (params, grads, m, v)]
        if any(a.dtype != dtype for g in groups for a in g) or scalars.dtype != dtype:
            raise TypeError(f"adam_update wants every array in {dtype}")
        tables, starts, total = self._table(xp, params[0], groups)
        self._run(
            "an_adam",
            params[0],
            total,
            tables,
            starts,
            _i(len(params)),
            self._c(scalars),
            self._real(params[0], b1),
            self._real(params[0], b2),
            self._real(params[0], eps),
        )
        return groups[0], groups[2], groups[3]
