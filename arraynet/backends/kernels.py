"""The fast-kernel contract: every operation a backend may replace, and its one portable
definition.

`Kernels` is the contract. Each public method is one replaceable operation, and its body
is the portable definition, written against the Array API only (the namespace comes from
the inputs). A backend replaces operations by subclassing it (`NumpyKernels`,
`TorchKernels`, `CupyKernels`) and overriding methods; the layers, the loss and the
optimizer reach every operation through `backend.kernels`, the one dispatch route.

What the contract enforces, when a subclass is defined (a TypeError at import):

- an override keeps the portable method's signature (names, kinds and defaults);
- a subclass adds no other public method (helpers start with `_`);
- a forward and its backward are replaced together, with the subclass's own saved type.

What a forward saves for its backward is a typed value (`ConvSaved`, `PoolSaved`,
`NormSaved`), each Kernels class with its own types: a backward handed another class's
value (a forward of another backend) raises TypeError instead of misreading it.

Every override has a parity test against the portable definition (tests/test_kernels.py),
in float32 and float64. Reductions over every axis but the last (bias gradients, batch
norm's statistics) are products with a ones vector (`portable.column_sum`): memory speed
on every library.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from array_api_compat import array_namespace

from arraynet.backends import portable

Array = Any
Pad = tuple[int, int, int, int]  # (top, bottom, left, right)

# forward -> (backward, the class attribute naming the saved type they share)
PAIRS = {
    "conv2d_forward": ("conv2d_backward", "ConvSaved"),
    "maxpool_forward": ("maxpool_backward", "PoolSaved"),
    "batchnorm_forward": ("batchnorm_backward", "NormSaved"),
}


class Saved:
    """Base of what a forward kernel keeps for its backward."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class PortableConvSaved(Saved):
    """Portable convolution: the patch matrix and the input's (height, width)."""

    cols: Array
    in_hw: tuple[int, int]


@dataclass(frozen=True, slots=True)
class PortablePoolSaved(Saved):
    """Portable max pooling: each window's argmax and the input shape."""

    index: Array
    p: int
    in_shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PortableNormSaved(Saved):
    """Portable batch norm: the normalised input and 1/std per channel."""

    xhat: Array
    inv: Array


class Kernels:
    """The contract and its portable definitions (Array API only)."""

    name: ClassVar[str] = "portable"
    ConvSaved: ClassVar[type[Saved]] = PortableConvSaved
    PoolSaved: ClassVar[type[Saved]] = PortablePoolSaved
    NormSaved: ClassVar[type[Saved]] = PortableNormSaved

    def __init__(self) -> None:
        self._ones: dict[tuple, Array] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        check_overrides(cls)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- helpers (not part of the contract) ---------------------------------------------
    def _ones_row(self, xp: Any, n: int, dtype: Any, device: Any) -> Array:
        """A cached (1, n) row of ones (the same array every step: graph-capture safe)."""
        key = (n, str(dtype), str(device), id(xp))
        row = self._ones.get(key)
        if row is None:
            row = self._ones[key] = portable.ones_row(xp, n, dtype, device)
        return row

    def _own(self, saved: Any, kind: type[Saved], op: str) -> Any:
        """`saved` if it is this class's `kind`, else a TypeError naming both sides."""
        if type(saved) is not kind:
            raise TypeError(
                f"{type(self).__name__}.{op} needs the {kind.__name__} of its own forward, "
                f"got {type(saved).__name__} (made by another backend's kernels?)"
            )
        return saved

    # -- reductions ---------------------------------------------------------------------
    def column_sum(self, x: Array) -> Array:
        """Sum over every axis but the last, in x's dtype (bias gradients)."""
        xp = array_namespace(x)
        rows = math.prod(x.shape[:-1])
        return portable.column_sum(x, self._ones_row(xp, rows, x.dtype, x.device))

    # -- dense --------------------------------------------------------------------------
    def dense_forward(self, x: Array, kernel: Array, bias: Array) -> Array:
        """A dense layer's output: x (N, D) @ kernel (D, U) + bias (U,)."""
        return x @ kernel + bias

    def dense_backward(
        self, x: Array, dy: Array, kernel: Array, need_dx: bool
    ) -> tuple[Array, Array, Array | None]:
        """(dL/dkernel, dL/dbias, dL/dx or None) of dense_forward."""
        xp = array_namespace(dy)
        dkernel = xp.matrix_transpose(x) @ dy
        dx = dy @ xp.matrix_transpose(kernel) if need_dx else None
        return dkernel, self.column_sum(dy), dx

    # -- convolution --------------------------------------------------------------------
    def conv2d_forward(
        self, x: Array, kernel: Array, bias: Array, pad: Pad, stride: int, training: bool
    ) -> tuple[Array, Saved | None]:
        """Cross-correlation of NHWC `x` with a (kh, kw, c, f) kernel, plus bias: one GEMM
        over the patch matrix. Returns y and, when training, what backward needs."""
        xp = array_namespace(x)
        n, h, w, _ = x.shape
        kh, kw, _, f = kernel.shape
        cols = portable.im2col(portable.pad_hw(x, *pad), kh, kw, stride)
        y = cols @ xp.reshape(kernel, (-1, f)) + bias
        ho = (h + pad[0] + pad[1] - kh) // stride + 1
        wo = (w + pad[2] + pad[3] - kw) // stride + 1
        saved = self.ConvSaved(cols, (h, w)) if training else None
        return xp.reshape(y, (n, ho, wo, f)), saved

    def conv2d_backward(
        self, saved: Saved, dy: Array, kernel: Array, pad: Pad, stride: int, need_dx: bool
    ) -> tuple[Array, Array, Array | None]:
        """(dL/dkernel, dL/dbias, dL/dx or None) of conv2d_forward."""
        s = self._own(saved, self.ConvSaved, "conv2d_backward")
        xp = array_namespace(dy)
        n = dy.shape[0]
        kh, kw, c, f = kernel.shape
        h, w = s.in_hw
        dy2 = xp.reshape(dy, (-1, f))
        dkernel = xp.reshape(xp.matrix_transpose(s.cols) @ dy2, (kh, kw, c, f))
        dbias = self.column_sum(dy2)
        if not need_dx:
            return dkernel, dbias, None
        if stride > 1:
            return dkernel, dbias, portable.strided_input_grad(dy, kernel, stride, pad, (h, w))
        # dL/dx is a correlation of the output gradient with the kernel turned 180 degrees
        # and its in/out axes swapped.
        dyd, pads = portable.input_grad_operand(dy, kh, pad, (h, w))
        dcols = portable.im2col(portable.pad_hw(dyd, *pads), kh, kw, 1)
        dx = xp.reshape(dcols @ portable.flipped_kernel(kernel), (n, h, w, c))
        return dkernel, dbias, dx

    # -- pooling ------------------------------------------------------------------------
    def maxpool_forward(self, x: Array, p: int, training: bool) -> tuple[Array, Saved | None]:
        """Non-overlapping p x p max pooling of NHWC (a ragged edge is dropped); when
        training, the saved value routes each window's gradient to its first maximum."""
        y, index = portable.maxpool_forward(x, p, training)
        return y, (self.PoolSaved(index, p, tuple(x.shape)) if training else None)

    def maxpool_backward(self, saved: Saved, dy: Array) -> Array:
        """dL/dx of maxpool_forward."""
        s = self._own(saved, self.PoolSaved, "maxpool_backward")
        return portable.maxpool_backward(dy, s.index, s.p, s.in_shape)

    # -- batch normalisation (over every axis but the last) -----------------------------
    def batchnorm_forward(
        self,
        x: Array,
        gamma: Array,
        beta: Array,
        running_mean: Array,
        running_var: Array,
        momentum: float,
        eps: float,
    ) -> tuple[Array, Saved, Array, Array]:
        """Training-mode batch norm with the batch's statistics (sums in float64). Returns
        y, what backward needs, and the new running mean and variance:
        running = momentum * running + (1 - momentum) * batch, with the unbiased batch
        variance."""
        xp = array_namespace(x)
        count = math.prod(x.shape[:-1])
        mean = xp.astype(portable.channel_sum64(x) / count, x.dtype)
        xc = x - mean
        var = xp.astype(portable.channel_sum64(xc * xc) / count, x.dtype)
        inv = 1.0 / xp.sqrt(var + eps)
        xhat = xc * inv
        new_mean, new_var = portable.running_stats(
            running_mean, running_var, mean, var, count, momentum
        )
        return xhat * gamma + beta, self.NormSaved(xhat, inv), new_mean, new_var

    def batchnorm_backward(
        self, saved: Saved, dy: Array, gamma: Array
    ) -> tuple[Array, Array, Array]:
        """(dL/dx, dL/dgamma, dL/dbeta) of batchnorm_forward."""
        s = self._own(saved, self.NormSaved, "batchnorm_backward")
        xp = array_namespace(dy)
        dgamma = xp.astype(portable.channel_sum64(dy * s.xhat), dy.dtype)
        dbeta = xp.astype(portable.channel_sum64(dy), dy.dtype)
        count = math.prod(dy.shape[:-1])
        scale = gamma * s.inv / count
        return scale * (count * dy - dbeta - s.xhat * dgamma), dgamma, dbeta

    def batchnorm_inference(
        self,
        x: Array,
        running_mean: Array,
        running_var: Array,
        gamma: Array,
        beta: Array,
        eps: float,
    ) -> Array:
        """Evaluation-mode batch norm with the running statistics:
        (x - mean) * (1 / sqrt(var + eps)) * gamma + beta."""
        xp = array_namespace(x)
        inv = 1.0 / xp.sqrt(running_var + eps)
        return (x - running_mean) * inv * gamma + beta

    # -- loss ---------------------------------------------------------------------------
    def softmax_cross_entropy(
        self, logits: Array, target: Array, smoothing: float
    ) -> tuple[Array, Array]:
        """Softmax and categorical cross-entropy fused (mean over the batch): the loss as
        a 0-d array and its gradient (softmax - target) / batch. `smoothing` > 0 mixes the
        targets with the uniform distribution."""
        xp = array_namespace(logits)
        n, k = logits.shape
        if smoothing:
            target = target * (1.0 - smoothing) + smoothing / k
        loss = -xp.sum(target * portable.log_softmax(logits)) / n
        return loss, (portable.softmax(logits) - target) / n

    # -- optimizer ----------------------------------------------------------------------
    def adam_update(
        self,
        params: list[Array],
        grads: list[Array],
        m: list[Array],
        v: list[Array],
        scalars: Array,
        b1: float,
        b2: float,
        eps: float,
    ) -> tuple[list[Array], list[Array], list[Array]]:
        """One Adam step over every parameter; returns the new (params, m, v) lists (a
        backend may update the arrays in place and return them). `scalars` is a (2,)
        array on the parameters' device holding the step's numbers,
        [lr / (1 - b1^t), 1 / sqrt(1 - b2^t)]:
        m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
        p <- p - scalars[0] * m / (sqrt(v) * scalars[1] + eps)."""
        step, v_scale = scalars[0], scalars[1]
        out: tuple[list[Array], list[Array], list[Array]] = ([], [], [])
        for p, g, m1, v1 in zip(params, grads, m, v, strict=True):
            new = adam_one(p, g, m1, v1, step, v_scale, b1, b2, eps)
            for dst, a in zip(out, new, strict=True):
                dst.append(a)
        return out


PORTABLE = Kernels()  # the portable definitions, for callers without a backend


def adam_one(p, g, m, v, step: Any, v_scale: Any, b1: float, b2: float, eps: float):
    """One portable Adam step for one parameter, with step = lr / (1 - b1^t) and
    v_scale = 1 / sqrt(1 - b2^t) (numbers or 0-d arrays); returns new (p, m, v)."""
    xp = array_namespace(p)
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * (g * g)
    p = p - step * m / (xp.sqrt(v) * v_scale + eps)
    return p, m, v


def _shape(fn: Any) -> list[tuple[str, Any, Any]]:
    """A method's parameters as (name, kind, default): its signature without annotations."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


CONTRACT = tuple(
    name for name, fn in vars(Kernels).items() if inspect.isfunction(fn) and name[0] != "_"
)


def check_overrides(cls: type) -> None:
    """Raise TypeError unless `cls` keeps the contract (see the module docstring)."""
    own = {k: v for k, v in vars(cls).items() if not k.startswith("_")}
    for name, fn in own.items():
        if name in ("name", *(saved for _, saved in PAIRS.values())):
            continue
        if name not in CONTRACT or not callable(fn):
            raise TypeError(
                f"{cls.__name__}.{name} is not an operation of the kernel contract "
                f"({', '.join(CONTRACT)}); name helpers with a leading underscore"
            )
        if _shape(fn) != _shape(getattr(Kernels, name)):
            raise TypeError(
                f"{cls.__name__}.{name}{inspect.signature(fn)} does not keep the contract's "
                f"signature {name}{inspect.signature(getattr(Kernels, name))}"
            )
    for forward, (backward, saved) in PAIRS.items():
        replaced = [n for n in (forward, backward) if n in own]
        if replaced and (len(replaced) == 1 or saved not in own):
            raise TypeError(
                f"{cls.__name__} must replace {forward} and {backward} together, with its own "
                f"{saved} type"
            )
