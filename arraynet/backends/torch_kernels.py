"""torch's own kernels behind the kernel contract (CPU and CUDA alike).

arraynet keeps images NHWC. An NHWC tensor permuted to (N, C, H, W) is a channels-last
NCHW tensor, the layout torch's convolution, pooling and batch-norm kernels take without
a copy (oneDNN on the CPU, cuDNN on CUDA); their results come back channels-last, so
permuting them to NHWC is free as well. The kernels are aten's forward and backward
functions (what autograd itself calls), so no autograd graph is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from arraynet.backends.kernels import Kernels, Saved
from arraynet.backends.portable import running_stats

aten = torch.ops.aten
Tensor = torch.Tensor


def _nchw(x: Tensor) -> Tensor:
    """NHWC (or N..C) as a channels-last NCHW view; 2-D (N, C) stays as it is."""
    return x.permute(0, x.ndim - 1, *range(1, x.ndim - 1)) if x.ndim > 2 else x


def _nhwc(t: Tensor) -> Tensor:
    """The NHWC view of an NCHW tensor, made contiguous if it is not channels-last."""
    if t.ndim <= 2:
        return t
    y = t.permute(0, *range(2, t.ndim), 1)
    return y if y.is_contiguous() else y.contiguous()


def _channel_sum(x: Tensor, dtype: Any = None) -> Tensor:
    """Per-channel sums over every axis but the last: within each image first (in x's
    dtype), then across images (in `dtype`, default x's)."""
    n, c = x.shape[0], x.shape[-1]
    return torch.sum(torch.sum(x.reshape(n, -1, c), dim=1), dim=0, dtype=dtype)


def _weight(kernel: Tensor) -> Tensor:
    """arraynet's (kh, kw, c, f) kernel as torch's (f, c, kh, kw)."""
    return kernel.permute(3, 2, 0, 1)


@dataclass(frozen=True, slots=True)
class TorchConvSaved(Saved):
    """The (padded, if the padding is uneven) NCHW input and the padding torch applied."""

    x: Tensor
    padding: tuple[int, int]
    in_hw: tuple[int, int]


@dataclass(frozen=True, slots=True)
class TorchPoolSaved(Saved):
    """The NCHW input and torch's flat argmax indices."""

    x: Tensor
    index: Tensor
    p: int


@dataclass(frozen=True, slots=True)
class TorchNormSaved(Saved):
    """The centred input x - mean as NCHW (or (N, C)), zeros as its mean (torch's
    backward then sums no large values that cancel), and 1/std."""

    x: Tensor
    mean: Tensor
    invstd: Tensor


class TorchKernels(Kernels):
    """torch.nn.functional and aten kernels: convolution, pooling, batch norm (torch's
    backward; the forward's statistics summed as the portable definition sums them), the
    dense product, the loss and Adam (torch's multi-tensor `_foreach` operations)."""

    name: ClassVar[str] = "torch"
    ConvSaved = TorchConvSaved
    PoolSaved = TorchPoolSaved
    NormSaved = TorchNormSaved

    def column_sum(self, x: Any) -> Any:
        # within each image, then across images: 1.2-2.8x faster than one sum over the
        # (N*H*W, C) view on the CPU (scripts/bench_reductions.py's shapes)
        return _channel_sum(x)

    def dense_forward(self, x, kernel, bias):
        return torch.addmm(bias, x, kernel)

    def dense_backward(self, x, dy, kernel, need_dx):
        dx = torch.mm(dy, kernel.t()) if need_dx else None
        return torch.mm(x.t(), dy), torch.sum(dy, dim=0), dx  # (N, units): a short sum

    def conv2d_forward(self, x, kernel, bias, pad, stride, training):
        t = _nchw(x)
        top, bottom, left, right = pad
        if top == bottom and left == right:
            padding = (top, left)
        else:  # torch pads evenly: pad the input itself (TensorFlow's 'same' with stride 2)
            t = F.pad(t, (left, right, top, bottom))
            padding = (0, 0)
        y = F.conv2d(t, _weight(kernel), bias, stride, padding)
        saved = TorchConvSaved(t, padding, (x.shape[1], x.shape[2])) if training else None
        return _nhwc(y), saved

    def conv2d_backward(self, saved, dy, kernel, pad, stride, need_dx):
        s = self._own(saved, TorchConvSaved, "conv2d_backward")
        f = kernel.shape[3]
        gx, gw, gb = aten.convolution_backward(
            _nchw(dy), s.x, _weight(kernel), [f], [stride, stride], list(s.padding),
            [1, 1], False, [0, 0], 1, [need_dx, True, True],
        )  # fmt: skip
        dkernel = gw.permute(2, 3, 1, 0).contiguous()
        if not need_dx:
            return dkernel, gb, None
        if s.padding == (0, 0) and any(pad):  # the input was padded here: crop its gradient
            (h, w), top, left = s.in_hw, pad[0], pad[2]
            gx = gx[:, :, top : top + h, left : left + w]
        return dkernel, gb, _nhwc(gx)

    def maxpool_forward(self, x, p, training):
        t = _nchw(x)
        if not training:
            return _nhwc(F.max_pool2d(t, p)), None
        y, index = aten.max_pool2d_with_indices(t, [p, p], [p, p])
        return _nhwc(y), TorchPoolSaved(t, index, p)

    def maxpool_backward(self, saved, dy):
        s = self._own(saved, TorchPoolSaved, "maxpool_backward")
        p = s.p
        dx = aten.max_pool2d_with_indices_backward(
            _nchw(dy), s.x, [p, p], [p, p], [0, 0], [1, 1], False, s.index
        )
        return _nhwc(dx)

    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, momentum, eps):
        # The statistics as the portable definition takes them (two passes, float64 across
        # images): torch's own CPU batch norm sums in float32, which broke parity with
        # NumPy for m14 (gradients off by 5e-4 at batch 8); its backward is exact enough.
        count = x.numel() // x.shape[-1]
        mean = (_channel_sum(x, torch.float64) / count).to(x.dtype)
        xc = x - mean
        var = (_channel_sum(xc * xc, torch.float64) / count).to(x.dtype)
        invstd = torch.rsqrt(var + eps)
        y = torch.addcmul(beta, xc, gamma * invstd)
        new_mean, new_var = running_stats(running_mean, running_var, mean, var, count, momentum)
        return y, TorchNormSaved(_nchw(xc), torch.zeros_like(mean), invstd), new_mean, new_var

    def batchnorm_backward(self, saved, dy, gamma):
        s = self._own(saved, TorchNormSaved, "batchnorm_backward")
        dx, dgamma, dbeta = aten.native_batch_norm_backward(
            _nchw(dy), s.x, gamma, None, None, s.mean, s.invstd, True, 0.0, [True, True, True]
        )  # (eps is unused in training mode: invstd carries it)
        return _nhwc(dx), dgamma, dbeta

    def batchnorm_inference(self, x, running_mean, running_var, gamma, beta, eps):
        y, _, _ = aten.native_batch_norm(
            _nchw(x), gamma, beta, running_mean, running_var, False, 0.0, eps
        )
        return _nhwc(y)

    def softmax_cross_entropy(self, logits, target, smoothing):
        n, k = logits.shape
        if smoothing:
            target = target * (1.0 - smoothing) + smoothing / k
        logp = torch.log_softmax(logits, dim=1)
        loss = torch.sum(target * logp).neg_().div_(n)
        return loss, logp.exp_().sub_(target).div_(n)

    def adam_update(self, params, grads, m, v, scalars, b1, b2, eps):
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, grads, alpha=1.0 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - b2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_mul_(denom, scalars[1])  # (0-d tensors: read on the device)
        torch._foreach_add_(denom, eps)
        update = torch._foreach_div(m, denom)
        torch._foreach_mul_(update, scalars[0])
        torch._foreach_sub_(params, update)
        return params, m, v
