"""2-D convolution (cross-correlation) on NHWC inputs: the kernel contract's
`conv2d_forward`/`conv2d_backward` (portable: one GEMM over the patch matrix)."""

from __future__ import annotations

from array_api_compat import array_namespace

from arraynet.initializers import bias_init, check_name, initialize
from arraynet.layers.activations import activation_or_none
from arraynet.layers.base import (
    MAX_SIZE,
    MAX_UNITS,
    Array,
    BuildContext,
    GradCase,
    Layer,
    OnnxGraph,
    Shape,
    whole,
)


def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow-style 'same' padding (before, after) for one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


class Conv2D(Layer):
    """2-D convolution (cross-correlation) of NHWC images, then an optional activation.

    Args:
        filters: number of output channels.
        kernel_size: side k of the square k x k kernel.
        stride: step between windows, the same along height and width.
        padding: "same" (TensorFlow's: output side ceil(side / stride)), "valid" (none) or
            an int p of zeros on every side.
        init: weight initializer name (`arraynet.initializers`); "he_normal_input" is the
            seed's He init with the whole input size as fan-in.
        activation: applied after the convolution: "relu", "tanh", "sigmoid", "softmax"
            (over the channels; see `Activation`), or None / "linear" for none.

    Shapes: (batch, height, width, channels) -> (batch, out_height, out_width, filters).
    Parameters: kernel (k, k, channels, filters), bias (filters,).

    Example::

        Sequential([Conv2D(32, 3, activation="relu"), MaxPool2D(2), Flatten(), Dense(10)],
                   (28, 28, 1))
    """

    kind = "conv2d"

    def __init__(
        self,
        filters: int,
        kernel_size: int = 5,
        stride: int = 1,
        padding: str | int = "same",
        init: str = "he_normal",
        activation: str | None = None,
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
        self.act = activation_or_none(activation)

    @property
    def activation(self) -> str | None:
        """The activation's name, or None."""
        return None if self.act is None else self.act.fn

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
        if self.act is not None:
            self.act.build((ho, wo, self.filters), ctx)
        return (ho, wo, self.filters)

    def forward(self, x: Array, training: bool = False) -> Array:
        y = self.forward_linear(x, training)
        return y if self.act is None else self.act.forward(y, training)

    def forward_linear(self, x: Array, training: bool = False) -> Array:
        """The convolution plus bias, before the activation (a final softmax's logits)."""
        kernels = self.backend.kernels
        y, saved = kernels.conv2d_forward(
            x, self.params["kernel"], self.params["bias"], self.pad, self.stride, training
        )
        if training:
            self._saved = saved
        return y

    def backward(self, dy: Array) -> Array | None:
        if self.act is not None:
            dy = self.act.backward(dy)
        return self.backward_linear(dy)

    def backward_linear(self, dy: Array) -> Array | None:
        """`backward` from dL/d(convolution output), past the activation (for a fused
        softmax)."""
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
        cfg = {
            "type": self.kind,
            "filters": self.filters,
            "kernel_size": self.k,
            "stride": self.stride,
            "padding": self.padding,
            "init": self.init,
        }
        if self.act is not None:
            cfg["activation"] = self.act.fn
        return cfg

    def onnx_nodes(self, g: OnnxGraph, x: str) -> str:
        x = g.channels_first(x)
        i, kernel = g.index, self.params["kernel"]
        w = array_namespace(kernel).permute_dims(kernel, (3, 2, 0, 1))  # (out, in, kh, kw)
        pt, pb, pl, pr = (int(p) for p in self.pad)
        y = g.node(
            "Conv",
            [x, g.initializer(f"conv{i}_w", w), g.initializer(f"conv{i}_b", self.params["bias"])],
            f"conv{i}",
            kernel_shape=[self.k, self.k],
            strides=[self.stride, self.stride],
            pads=[pt, pl, pb, pr],
        )
        return y if self.act is None else self.act.onnx_nodes(g, y)

    @classmethod
    def gradcheck_cases(cls) -> list[GradCase]:
        return [
            GradCase("conv-same-5x5", lambda: Conv2D(3, 5, padding="same"), (7, 6, 2)),
            GradCase("conv-valid-3x3", lambda: Conv2D(4, 3, padding="valid"), (6, 5, 3)),
            GradCase(
                "conv-stride2-same", lambda: Conv2D(2, 3, stride=2, padding="same"), (7, 8, 2)
            ),
            GradCase("conv-stride2-pad1", lambda: Conv2D(2, 4, stride=2, padding=1), (9, 7, 1)),
            GradCase("conv-stride3-k2", lambda: Conv2D(2, 2, stride=3, padding="valid"), (8, 7, 2)),
            GradCase("conv-stride2-5x5", lambda: Conv2D(2, 5, stride=2, padding="same"), (8, 9, 2)),
            GradCase("conv-seed-init", lambda: Conv2D(2, 5, init="he_normal_input"), (6, 6, 1)),
            GradCase("conv-relu", lambda: Conv2D(3, 3, activation="relu"), (5, 6, 2)),
            GradCase("conv-tanh", lambda: Conv2D(2, 3, stride=2, activation="tanh"), (6, 5, 2)),
            GradCase("conv-sigmoid", lambda: Conv2D(2, 3, activation="sigmoid"), (4, 5, 1)),
            GradCase("conv-softmax", lambda: Conv2D(4, 3, activation="softmax"), (5, 4, 2)),
        ]
