"""2-D convolution (cross-correlation) on NHWC inputs: the kernel contract's
`conv2d_forward`/`conv2d_backward` (portable: one GEMM over the patch matrix)."""

from __future__ import annotations

from arraynet.initializers import bias_init, check_name, initialize
from arraynet.layers.base import MAX_SIZE, MAX_UNITS, Array, BuildContext, Layer, Shape, whole


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
        self.filters = whole("Conv2D", "filters", filters, 1, MAX_UNITS)
        self.k = whole("Conv2D", "kernel_size", kernel_size, 1, MAX_SIZE)
        self.stride = whole("Conv2D", "stride", stride, 1, MAX_SIZE)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be 'same', 'valid' or an int, got {padding!r}")
        else:
            padding = whole("Conv2D", "padding", padding, 0, MAX_SIZE)
        self.padding = padding
        self.init = check_name(init)

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

    def forward(self, x: Array, training: bool = False) -> Array:
        kernels = self.backend.kernels
        y, saved = kernels.conv2d_forward(
            x, self.params["kernel"], self.params["bias"], self.pad, self.stride, training
        )
        if training:
            self._saved = saved
        return y

    def backward(self, dy: Array) -> Array | None:
        saved, self._saved = self._saved, None
        dw, db, dx = self.backend.kernels.conv2d_backward(
            saved, dy, self.params["kernel"], self.pad, self.stride, self.need_input_grad
        )
        self.grads["kernel"], self.grads["bias"] = dw, db
        return dx

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
