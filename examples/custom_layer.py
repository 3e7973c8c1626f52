"""A layer of your own: subclass `Layer`, check its gradients with the project's float64
finite-difference check, register it (so saved models load), and train with it.

    uv run python examples/custom_layer.py            # or --small for the test suite
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from array_api_compat import array_namespace

import arraynet as an
from arraynet.layers import Activation, Conv2D, Dense, Flatten, Layer, register
from arraynet.testing import check_gradients


@register  # makes {"type": "channel_affine", ...} loadable from weights and layout files
class ChannelAffine(Layer):
    """y = x * scale + shift, one learnable scale and shift per channel (last axis)."""

    kind = "channel_affine"

    def __init__(self, init_scale: float = 1.0) -> None:
        super().__init__()
        self.init_scale = float(init_scale)

    def _build(self, input_shape, ctx):
        xp, c = ctx.backend.xp, input_shape[-1]
        dev = ctx.backend.device
        self.params = {
            "scale": xp.full((c,), self.init_scale, dtype=ctx.dtype, device=dev),
            "shift": xp.zeros((c,), dtype=ctx.dtype, device=dev),
        }
        return input_shape  # the output shape (without the batch axis)

    def forward(self, x, training=False):
        if training:
            self._x = x  # what backward needs
        return x * self.params["scale"] + self.params["shift"]

    def backward(self, dy):
        xp = array_namespace(dy)
        axes = tuple(range(dy.ndim - 1))  # every axis but the channels
        self.grads = {
            "scale": xp.sum(dy * self._x, axis=axes),
            "shift": xp.sum(dy, axis=axes),
        }
        return dy * self.params["scale"] if self.need_input_grad else None

    def config(self):
        return {"type": self.kind, "init_scale": self.init_scale}


# 1. gradients: analytic backward against central differences, in float64
errors = check_gradients(ChannelAffine(0.5), input_shape=(5, 5, 3), tol=1e-6)
print("gradient check (relative errors):", {k: f"{v:.1e}" for k, v in errors})

# 2. train a model that uses it (8x8 grey images, 4 classes: where the bright square is)
small = "--small" in sys.argv
g = np.random.default_rng(0)
n = 400 if small else 4000
y = g.integers(0, 4, n)
x = (g.random((n, 8, 8, 1)) * 100).astype(np.uint8)
for i, c in enumerate(y):
    r, q = 4 * (c // 2), 4 * (c % 2)
    x[i, r : r + 4, q : q + 4, 0] = 255
model = an.Sequential(
    [Conv2D(8, 3, padding="same"), ChannelAffine(), Activation("relu"), Flatten(),
     Dense(4), Activation("softmax")],
    input_shape=(8, 8, 1),
)  # fmt: skip
cut = n * 3 // 4
model.fit(x[:cut], y[:cut], epochs=3, batch_size=32, lr=3e-3)
res = model.evaluate(x[cut:], y[cut:])
print(f"test error {100 * res['error_rate']:.2f}% ({res['correct']}/{res['total']})")

# 3. saved and loaded like any model
with tempfile.TemporaryDirectory() as tmp:
    model.save(Path(tmp) / "affine.safetensors")
    again = an.load_model(Path(tmp) / "affine.safetensors")
    assert isinstance(again.layers[1], ChannelAffine)
    assert again.evaluate(x[cut:], y[cut:]) == res
print("saved and reloaded: same error")
