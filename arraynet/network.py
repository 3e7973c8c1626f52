"""The network core: a stack of layers built from an input shape, with forward, backward,
prediction and named state. Training and files build on it (`arraynet.train`, `arraynet.io`);
the user-facing `Sequential` (`arraynet.model`) adds fit, evaluate, save and export."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from arraynet.backends import Backend, HostRNG, get_backend
from arraynet.backends.host import host_array
from arraynet.backends.shapes import ShapeRNG, shape_backend
from arraynet.data.arrays import check_inputs_fit, float_inputs
from arraynet.layers import Activation, BuildContext, Layer, layer_from_config
from arraynet.layers.base import input_shape_of
from arraynet.losses import cross_entropy, mse, softmax_cross_entropy

Array = Any
LOSS_NAMES = ("cross_entropy", "mse")
MAX_LAYERS = 10_000  # in a layout read from a file


def state_misfit(
    expected: dict[str, tuple[int, ...]], got: dict[str, tuple[int, ...]]
) -> str | None:
    """Why the named shapes `got` do not fit a layout's `expected` ones (one line: the
    names missing and unexpected, at most 5 of each, or the first shape that differs), or
    None when they fit."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        return f"state does not fit the layout: missing {missing[:5]}, unexpected {extra[:5]}"
    for name, want in expected.items():
        if tuple(got[name]) != tuple(want):
            return f"tensor {name!r} has shape {tuple(got[name])}, layout needs {tuple(want)}"
    return None


class Network:
    """Layers applied in order. Images are NHWC; `input_shape` excludes the batch axis:
    (H, W, C) for images, (D,) for vectors, or None to take it from the data at `fit`."""

    def __init__(self, layers: list[Layer], input_shape: tuple[int, ...] | None = None) -> None:
        self.layers = list(layers)
        self.input_shape = input_shape_of(input_shape) if input_shape is not None else None
        self.backend: Backend | None = None
        self.dtype: Any = None
        self.training = False
        self.metadata: dict = {}  # what a loaded weights file carried besides the arrays
        # Correct training predictions so far (a 0-d device array), counted by
        # `loss_and_grads` while a caller sets it (fit's accuracy metric); None: off.
        self.train_hits: Array | None = None

    # -- building ----------------------------------------------------------------------
    def build(
        self, backend: Backend | str = "numpy", seed: int = 0, dtype: str = "float32"
    ) -> Network:
        """Create every parameter on `backend` (a Backend or a name), drawn from a host
        generator seeded `seed`."""
        if isinstance(backend, str):
            backend = get_backend(backend)
        if self.input_shape is None:
            raise ValueError("the model has no input_shape: give Sequential(..., input_shape=...)"
                             " or let fit() take it from the data")  # fmt: skip
        self.backend = backend
        self.dtype = backend.dtype(dtype)
        rng = HostRNG(backend, seed)
        ctx = BuildContext(backend=backend, rng=rng, dtype=self.dtype)
        shape = self.input_shape
        for layer in self.layers:
            shape = layer.build(shape, ctx)
        self.output_shape = shape
        if self.layers:
            self.layers[0].need_input_grad = False
        # Dropout masks come from a host generator on every backend, so a seed gives the
        # same masks on NumPy, CuPy and torch (what the parity tests compare); training
        # switches to the backend's default generator or --rng (Training.use_rng).
        self.set_rng(backend.rng(seed + 1, host=True))
        return self

    def set_rng(self, rng: HostRNG) -> None:
        """The generator dropout layers draw their masks from."""
        self.rng = rng
        for layer in self.layers:
            if layer.rng_uses() or hasattr(layer, "rng"):
                layer.rng = rng

    # -- running -----------------------------------------------------------------------
    def train(self, mode: bool = True) -> Network:
        self.training = mode
        return self

    def eval(self) -> Network:
        return self.train(False)

    @property
    def fused_softmax(self) -> bool:
        """True when the model ends in a softmax, so logits are its input: a final
        `Activation("softmax")`, or a final `Dense`/`Conv2D` with `activation="softmax"`
        (training then fuses softmax and cross-entropy for both alike)."""
        return self._softmax_head() is not None

    def _softmax_head(self) -> Activation | None:
        """The final softmax (a layer, or the last layer's activation), or None."""
        last = self.layers[-1] if self.layers else None
        if isinstance(last, Activation):
            return last if last.fn == "softmax" else None
        act = getattr(last, "act", None)
        if isinstance(act, Activation) and act.fn == "softmax" and _splits_activation(last):
            return act
        return None

    def logits(self, x: Array, training: bool | None = None) -> Array:
        """Output before a final softmax (the whole output when there is none)."""
        training = self.training if training is None else training
        if self.dtype is not None and x.dtype != self.dtype:  # e.g. float32 images, float64 model
            x = array_namespace(x).astype(x, self.dtype)
        head = self._softmax_head()
        layers = self.layers[:-1] if head is not None else self.layers
        for layer in layers:
            x = layer.forward(x, training)
        if head is not None and head is not self.layers[-1]:  # the last layer's activation
            x = self.layers[-1].forward_linear(x, training)
        return x

    def forward(self, x: Array, training: bool | None = None) -> Array:
        """The model's output (probabilities when it ends in softmax)."""
        training = self.training if training is None else training
        z = self.logits(x, training)
        head = self._softmax_head()
        return head.forward(z, training) if head is not None else z

    __call__ = forward

    def backward(self, dy: Array, through_softmax: bool = False) -> None:
        """Propagate dL/d(output) back, filling every layer's grads.

        With a final softmax, `dy` is dL/dlogits unless `through_softmax` is True.
        """
        head = None if through_softmax else self._softmax_head()
        layers = self.layers if head is None else self.layers[:-1]
        if head is not None and head is not self.layers[-1]:
            dy = self.layers[-1].backward_linear(dy)
        for layer in reversed(layers):
            if dy is None:
                break
            dy = layer.backward(dy)

    def loss_and_grads(
        self, x: Array, y: Array, loss: str = "cross_entropy", smoothing: float = 0.0
    ) -> tuple[Array, Array]:
        """Forward in training mode, the loss, and backward. Returns (loss, logits)."""
        if loss == "cross_entropy" and self.fused_softmax:
            z = self.logits(x, True)
            value, dz = softmax_cross_entropy(z, y, smoothing, self.backend.kernels)
            self.backward(dz)
            self._count_hits(z, y)
            return value, z
        if loss not in LOSS_NAMES:
            raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSS_NAMES)}")
        out = self.forward(x, True)
        value, dout = (cross_entropy if loss == "cross_entropy" else mse)(out, y)
        self.backward(dout, through_softmax=True)
        self._count_hits(out, y)
        return value, out

    def _count_hits(self, out: Array, y: Array) -> None:
        """Add the batch's correct predictions to `train_hits` (a device 0-d array) when a
        caller keeps it (fit's `metrics=["accuracy"]`); no host read."""
        if self.train_hits is None:
            return
        xp = array_namespace(out)
        hit = xp.argmax(out, axis=-1) == xp.argmax(y, axis=-1)
        self.train_hits = self.train_hits + xp.sum(xp.astype(hit, out.dtype))

    def predict(self, x: Array, batch_size: int = 1000) -> Array:
        """Outputs in eval mode (probabilities when the model ends in softmax), computed in
        batches, as arrays of the model's backend. `x` may be a NumPy array or any other
        backend's (uint8 images are scaled to [0, 1])."""
        check_built(self)
        x = device_inputs(self, x)
        xp = array_namespace(x)
        parts = [
            self.forward(x[i : min(i + batch_size, x.shape[0]), ...], False)
            for i in range(0, x.shape[0], batch_size)
        ]
        return xp.concat(parts, axis=0)

    # -- parameters and state ----------------------------------------------------------
    def parameters(self) -> dict[str, Array]:
        """Trainable arrays named 'index.name' (e.g. '0.kernel')."""
        return {
            f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()
        }

    def gradients(self) -> dict[str, Array]:
        """Gradients from the last backward, named like parameters()."""
        return {
            f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()
        }

    def set_parameters(self, params: dict[str, Array]) -> None:
        """Replace parameters by name (the arrays themselves, no copy)."""
        for name, value in params.items():
            i, k = name.split(".", 1)
            self.layers[int(i)].params[k] = value

    def state_dict(self) -> dict[str, Array]:
        """Parameters and buffers (e.g. batch-norm running statistics), flat."""
        state = self.parameters()
        for i, layer in enumerate(self.layers):
            for k, v in layer.buffers.items():
                state[f"{i}.{k}"] = v
        return state

    def load_state_dict(self, state: dict[str, Array]) -> None:
        """Load named arrays; missing, unexpected or mis-shaped entries raise ValueError."""
        expected = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        misfit = state_misfit(expected, {k: tuple(v.shape) for k, v in state.items()})
        if misfit:
            raise ValueError(misfit)
        for name, value in state.items():
            i, k = name.split(".", 1)
            layer = self.layers[int(i)]
            (layer.params if k in layer.params else layer.buffers)[k] = value

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter and buffer `build` would create (named as in
        `state_dict`), found without allocating any: the layout is built afresh on a
        backend whose arrays are only shapes (`arraynet.backends.shapes`)."""
        out: dict[str, tuple[int, ...]] = {}
        for i, layer in enumerate(self._shape_layers()):
            for kind in (layer.params, layer.buffers):
                out.update({f"{i}.{k}": tuple(v.shape) for k, v in kind.items()})
        return out

    def _shape_layers(self) -> list[Layer]:
        """The layout's layers built afresh on the shape-only backend (nothing allocated):
        their output shapes, parameters and buffers are those `build` would give."""
        if self.input_shape is None:
            raise ValueError("the model has no input_shape")
        b = shape_backend()
        ctx = BuildContext(backend=b, rng=ShapeRNG(b), dtype="float32")
        shape: tuple[int, ...] = self.input_shape
        layers = [layer_from_config(cfg) for cfg in self.config()["layers"]]
        for layer in layers:
            shape = layer.build(shape, ctx)
        return layers

    def num_parameters(self) -> int:
        return sum(math.prod(v.shape) for v in self.parameters().values())

    def config(self) -> dict:
        """The layout as JSON-able data."""
        shape = list(self.input_shape) if self.input_shape is not None else None
        return {"input_shape": shape, "layers": [l.config() for l in self.layers]}

    @classmethod
    def from_config(cls, cfg: dict) -> Network:
        """Rebuild an (unbuilt) model from `config()`."""
        if not isinstance(cfg, dict) or "layers" not in cfg:
            raise ValueError("layout must be a mapping with 'layers'")
        if not isinstance(cfg["layers"], list):
            raise ValueError("layout 'layers' must be a list of layer configs")
        if len(cfg["layers"]) > MAX_LAYERS:
            raise ValueError(f"layout has {len(cfg['layers']):,} layers, over {MAX_LAYERS:,}")
        shape = cfg.get("input_shape", (28, 28, 1))  # (files from before shapes were saved)
        return cls([layer_from_config(c) for c in cfg["layers"]], shape)

    def count_params(self) -> int:
        """Every number the model holds, parameters and buffers (batch-norm running
        statistics) alike, as Keras counts; known once the input shape is (before build).
        `num_parameters()` counts the trainable ones alone."""
        if self.backend is None and self.input_shape is None:
            raise ValueError("the model has no input_shape yet: give Sequential(..., "
                             "input_shape=...) or fit it first")  # fmt: skip
        layers = self.layers if self.backend is not None else self._shape_layers()
        return sum(_size(layer.params) + _size(layer.buffers) for layer in layers)

    def summary(self, print_fn: Callable[[str], Any] | None = None) -> None:
        """Print the layers with their output shapes and numbers of parameters, one line
        at a time through `print_fn` (default `print`), as Keras's `summary` does. Shapes
        and counts are known once the input shape is: before `build`, from a build that
        allocates nothing. `summary_text()` returns the same text."""
        for line in self.summary_text().splitlines():
            (print_fn or print)(line)

    def summary_text(self) -> str:
        """The table `summary` prints, as one string."""
        known = self.backend is not None or self.input_shape is not None
        try:
            layers = self.layers if self.backend is not None or not known else self._shape_layers()
        except (TypeError, ValueError):  # a layer that cannot build on the shape backend
            layers, known = self.layers, False
        rows = [("Layer", "Output shape", "Param #")]
        for i, layer in enumerate(layers):
            n = _size(layer.params) + _size(layer.buffers)
            shape = f"(None, {', '.join(map(str, layer.output_shape))})" if known else "?"
            rows.append((f"{i} {_short_repr(layer)}", shape, f"{n:,}" if known else "?"))
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        lines = [f"{type(self).__name__}, input shape {self.input_shape or '? (from the data)'}"]
        for j, (name, shape, n) in enumerate(rows):
            lines.append(f"{name:<{widths[0]}}   {shape:<{widths[1]}}   {n:>{widths[2]}}")
            if j == 0:
                lines.append("=" * len(lines[-1]))
        lines.append("=" * len(lines[2]))
        if known:
            trainable = sum(_size(layer.params) for layer in layers)
            other = sum(_size(layer.buffers) for layer in layers)
            lines += [f"Total params: {trainable + other:,}", f"Trainable params: {trainable:,}",
                      f"Non-trainable params: {other:,}"]  # fmt: skip
        else:
            lines.append("Total params: unknown until the input shape is (input_shape= or fit)")
        return "\n".join(lines)


def _size(arrays: dict[str, Array]) -> int:
    return sum(math.prod(v.shape) for v in arrays.values())


def _short_repr(layer: Layer) -> str:
    """`Kind(arg=value, ...)` with the arguments that differ from the constructor's
    defaults (e.g. Conv2D(filters=8, kernel_size=3, activation='relu'))."""
    try:
        params = inspect.signature(type(layer)).parameters
    except (TypeError, ValueError):
        params = {}
    args = [
        f"{k}={v!r}"
        for k, v in layer.config().items()
        if k != "type" and not (k in params and params[k].default == v)
    ]
    return f"{type(layer).__name__}({', '.join(args)})"


def _splits_activation(layer: Layer) -> bool:
    """True when `layer` runs its linear part alone (`forward_linear`/`backward_linear`)
    and its `forward`/`backward` are those of the same class (a subclass that overrides
    them keeps its own, unfused)."""
    cls = type(layer)
    owner = next((c for c in cls.__mro__ if "forward_linear" in vars(c)), None)
    return owner is not None and all(
        getattr(cls, name) is vars(owner).get(name)
        for name in ("forward", "backward", "backward_linear")
    )


def check_built(model: Network) -> None:
    """A ValueError (one line) when `model` has not been built on a backend yet."""
    if model.backend is None:
        raise ValueError("the model is not built yet: fit it, or call model.build(backend)")


def device_inputs(model: Network, x: Array) -> Array:
    """`x` as floating inputs on the model's backend (arrays already there pass through)."""
    b = model.backend
    try:
        same = array_namespace(x) is b.xp
    except TypeError:
        same = False
    if same and b.xp.isdtype(x.dtype, "real floating"):
        return x
    xh = float_inputs(host_array(x), model.input_shape)
    check_inputs_fit(xh.shape[1:], model.input_shape)
    return b.from_host(xh, b.dtype("float32"))
