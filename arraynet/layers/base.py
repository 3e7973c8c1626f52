"""The Layer protocol: build from an input shape, explicit forward and backward."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, NamedTuple, Protocol

from arraynet.backends.base import Backend, HostRNG

Array = Any
Shape = tuple[int, ...]

# Bounds on a layout's sizes: generous for any real model, small enough that a layout read
# from a file cannot ask for absurd allocations before its tensors are checked.
MAX_SIZE = 1 << 16  # an input side, a kernel, a stride, a pool window, padding
MAX_UNITS = 1 << 24  # dense units, conv filters
MAX_INPUT = 1 << 28  # values of one input sample


def whole(layer: str, name: str, value: Any, low: int, high: int) -> int:
    """`value` as an int in [low, high], else ValueError naming the layer and argument (a
    bool, a fraction, NaN, an infinity or another type is refused, not truncated)."""
    ok = isinstance(value, Integral) or (
        isinstance(value, Real) and math.isfinite(value) and float(value).is_integer()
    )
    if isinstance(value, bool) or not ok:
        raise ValueError(f"{layer} {name} must be a whole number, not {value!r}")
    v = int(value)
    if not low <= v <= high:
        raise ValueError(f"{layer} {name} must be {low}..{high}, not {v}")
    return v


def real(layer: str, name: str, value: Any, low: float, high: float) -> float:
    """`value` as a finite float in [low, high], else ValueError naming the layer."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{layer} {name} must be a finite number, not {value!r}")
    if not low <= float(value) <= high:
        raise ValueError(f"{layer} {name} must lie in [{low:g}, {high:g}], not {value!r}")
    return float(value)


def input_shape_of(shape: Any) -> Shape:
    """A model's input shape (without the batch axis) as a tuple of sizes, checked."""
    if not isinstance(shape, list | tuple) or not shape or len(shape) > 8:
        raise ValueError(f"input_shape wants 1 to 8 positive sizes, not {shape!r}")
    dims = tuple(whole("input_shape", "size", d, 1, MAX_SIZE) for d in shape)
    if math.prod(dims) > MAX_INPUT:
        raise ValueError(f"input_shape {dims} holds over {MAX_INPUT:,} values per sample")
    return dims


class OnnxGraph(Protocol):
    """What a layer's ONNX rule (`Layer.onnx_nodes`) gets: the graph being built.

    Implemented in `arraynet.io.onnx_export`, which does every `onnx` call, so layer files
    never import onnx. Tensor names are strings; each call hands out a fresh unique name.
    The running tensor has rank `rank` (batch axis included); while `nchw` is True an image
    tensor is laid out (N, C, H, W), ONNX's order, instead of arraynet's NHWC.
    """

    index: int  # the layer's position in the model (for readable names)
    rank: int
    nchw: bool

    def initializer(self, stem: str, value: Array) -> str:
        """Add a constant (a backend or host array, stored as float32); return its name."""
        ...

    def node(self, op: str, inputs: list[str], stem: str | None = None, **attrs: Any) -> str:
        """Add one `op` node (ONNX attributes as keywords); return its output's name."""
        ...

    def channels_first(self, x: str) -> str:
        """`x` as NCHW (a Transpose unless it already is); an image tensor is required."""
        ...

    def channels_last(self, x: str) -> str:
        """`x` as NHWC again (a Transpose when it is NCHW)."""
        ...

    def error(self, why: str) -> Exception:
        """The export error to raise, naming this layer: `raise g.error("...")`."""
        ...


class GradCase(NamedTuple):
    """One float64 finite-difference check of a layer kind (`Layer.gradcheck_cases`):
    `make()` gives a fresh unbuilt layer, checked on inputs of `input_shape` x `batch`."""

    id: str
    make: Callable[[], Layer]
    input_shape: Shape
    batch: int = 3


@dataclass
class BuildContext:
    """What a layer needs to create its parameters."""

    backend: Backend
    rng: HostRNG
    dtype: Any


class Layer:
    """Base class of every layer. Shapes exclude the batch axis; images are NHWC.

    After `build`, `params` holds trainable arrays, `buffers` non-trainable state, and
    `backward` fills `grads` with one array per parameter.

    A layer kind is one class: `kind` (its name in layouts), `_build`, `forward`,
    `backward`, `config`, its ONNX rule `onnx_nodes` and its gradient checks
    `gradcheck_cases`; `arraynet.layers.register` makes a kind of your own loadable.

    Example::

        @register
        class Scale(Layer):
            kind = "scale"

            def forward(self, x, training=False):
                return 2.0 * x

            def backward(self, dy):
                return 2.0 * dy

            def onnx_nodes(self, g, x):
                return g.node("Mul", [x, g.initializer("two", self.backend.xp.asarray(2.0))])

            @classmethod
            def gradcheck_cases(cls):
                return [GradCase("scale", lambda: Scale(), (3, 4))]
    """

    kind: str = "layer"

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        self.input_shape: Shape = ()
        self.output_shape: Shape = ()
        self.need_input_grad = True
        self.backend: Backend | None = None

    def build(self, input_shape: Shape, ctx: BuildContext) -> Shape:
        """Create parameters for inputs of `input_shape`; return the output shape."""
        self.input_shape = tuple(input_shape)
        self.backend = ctx.backend
        self.output_shape = self._build(self.input_shape, ctx)
        return self.output_shape

    def _build(self, input_shape: Shape, ctx: BuildContext) -> Shape:
        return input_shape

    def forward(self, x: Array, training: bool = False) -> Array:
        """Output for a batch `x`; in training mode, keep what backward needs."""
        raise NotImplementedError

    def backward(self, dy: Array) -> Array | None:
        """Given dL/dy, set `grads` and return dL/dx (None when not needed)."""
        raise NotImplementedError

    def config(self) -> dict:
        """JSON-able constructor arguments (with 'type')."""
        return {"type": self.kind}

    def rng_uses(self) -> bool:
        """True when forward in training mode draws random numbers."""
        return False

    def onnx_nodes(self, g: OnnxGraph, x: str) -> str:
        """This layer's ONNX rule: add its inference-time nodes to `g`, reading tensor `x`,
        and return the name of the output. A kind that does not override it cannot be
        exported ("layer kind 'k' has no ONNX rule")."""
        raise NotImplementedError(f"layer kind {self.kind!r} has no ONNX rule")

    @classmethod
    def gradcheck_cases(cls) -> list[GradCase]:
        """The float64 gradient checks of this kind (`tests/test_gradients.py` runs them
        and fails for a registered kind with none)."""
        return []

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"
