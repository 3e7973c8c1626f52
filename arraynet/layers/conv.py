"""2-D convolution (cross-correlation) on NHWC inputs as one GEMM over patches."""

from __future__ import annotations

from array_api_compat import array_namespace

from arraynet import ops
from arraynet.initializers import bias_init, initialize
from arraynet.layers.base import Array, BuildContext, Layer, Shape


def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow-style 'same' padding (before, after) for one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


class Conv2D(Layer):
    """Conv2D with `filters` outputs, square `kernel_size`, `stride` and `padding`.

    padding: 'same', 'valid' or an int. Kernel layout (kh, kw, in, out).
    """

    kind = "conv2d"

    def __init__(
        self,
        filters: int,
        kernel_size: int = 5,
        stride: int = 1,
        padding: str | int = "same",
        init: str = "he_normal",
    ) -> None:
        super().__init__()
        self.filters = int(filters)
        self.k = int(kernel_size)
        self.stride = int(stride)
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same', 'valid' or an int, got {padding!r}")
        self.padding = padding
        self.init = init

    def _build(self, input_shape: Shape, ctx: BuildContext) -> Shape:
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D expects (height, width, channels) inputs, got {input_shape}")
        h, w, c = input_shape
        k, s = self.k, self.stride
        if self.padding == "same":
            self.pad = (*same_padding(h, k, s), *same_padding(w, k, s))
        elif self.padding == "valid":
            self.pad = (0, 0, 0, 0)
        else:
            p = int(self.padding)
            self.pad = (p, p, p, p)
        pt, pb, pl, pr = self.pad
        ho = (h + pt + pb - k) // s + 1
        wo = (w + pl + pr - k) // s + 1
        if ho <= 0 or wo <= 0:
            raise ValueError(f"Conv2D kernel {k} does not fit input {input_shape}")
        # The seed's He init uses the whole input size as fan_in; the usual one uses c*k*k.
        fan_in = h * w * c if self.init == "he_normal_input" else c * k * k
        fan_out = self.filters * k * k
        self.params["kernel"] = initialize(
            self.init, ctx.rng, (k, k, c, self.filters), fan_in, fan_out, ctx.dtype
        )
        self.params["bias"] = initialize(
            bias_init(self.init), ctx.rng, (self.filters,), fan_in, fan_out, ctx.dtype
        )
        return (ho, wo, self.filters)

    def _patches(self, x: Array, pad: tuple[int, int, int, int], stride: int) -> Array:
        pad_hw = ops.dispatch(self.backend, "pad_hw", ops.pad_hw)
        im2col = ops.dispatch(self.backend, "im2col", ops.im2col)
        return im2col(pad_hw(x, *pad), self.k, self.k, stride)

    def forward(self, x: Array, training: bool = False) -> Array:
        xp = array_namespace(x)
        n = x.shape[0]
        ho, wo, f = self.output_shape
        fast = self.backend.kernel("conv2d_forward") if self.backend is not None else None
        if fast is not None:
            y, saved = fast(x, self.params["kernel"], self.params["bias"], self.pad, self.stride)
            if training:
                self._saved = saved
            return y
        cols = self._patches(x, self.pad, self.stride)
        w = xp.reshape(self.params["kernel"], (-1, f))
        y = cols @ w + self.params["bias"]
        if training:
            self._saved = cols
        return xp.reshape(y, (n, ho, wo, f))

    def backward(self, dy: Array) -> Array | None:
        xp = array_namespace(dy)
        n = dy.shape[0]
        h, w, c = self.input_shape
        k, s, f = self.k, self.stride, self.filters
        saved, self._saved = self._saved, None
        fast = self.backend.kernel("conv2d_backward") if self.backend is not None else None
        if fast is not None:
            dw, db, dx = fast(saved, dy, self.params["kernel"], self.pad, s, self.need_input_grad)
            self.grads["kernel"], self.grads["bias"] = dw, db
            return dx
        dy2 = xp.reshape(dy, (-1, f))
        self.grads["kernel"] = xp.reshape(xp.matrix_transpose(saved) @ dy2, (k, k, c, f))
        self.grads["bias"] = xp.sum(dy2, axis=0)
        if not self.need_input_grad:
            return None
        if s > 1:
            return ops.strided_input_grad(dy, self.params["kernel"], s, self.pad, (h, w))
        # dL/dx is a correlation of the output gradient with the kernel turned 180 degrees
        # and its in/out axes swapped.
        dyd, pads = ops.input_grad_operand(dy, k, self.pad, (h, w))
        dcols = self._patches(dyd, pads, 1)
        return xp.reshape(dcols @ ops.flipped_kernel(self.params["kernel"]), (n, h, w, c))

    def flops_per_image(self) -> int:
        """Multiply-adds x 2 of the forward pass, for one image."""
        ho, wo, f = self.output_shape
        return 2 * ho * wo * f * self.k * self.k * self.input_shape[2]

    def config(self) -> dict:
        return {
            "type": self.kind,
            "filters": self.filters,
            "kernel_size": self.k,
            "stride": self.stride,
            "padding": self.padding,
            "init": self.init,
        }
