"""A layer kind is one file plus its registration: layout name (`kind`), ONNX rule
(`onnx_nodes`) and gradient checks (`gradcheck_cases`). Here a user's own layers, and the
Keras-style `activation=` of Dense and Conv2D."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from array_api_compat import array_namespace

from arraynet.backends import get_backend
from arraynet.layers import (
    LAYER_TYPES,
    Activation,
    Conv2D,
    Dense,
    GradCase,
    Layer,
    layer_from_config,
    register,
)
from arraynet.model import Sequential
from arraynet.testing import check_gradients
from arraynet.zoo import LAYOUTS
from tests.test_gradients import kinds_without_cases

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="needs the `onnx` extra and onnxruntime")


@pytest.fixture(autouse=True)
def restore_registry():
    """Registrations made by a test end with it."""
    saved = dict(LAYER_TYPES)
    yield
    LAYER_TYPES.clear()
    LAYER_TYPES.update(saved)


class ChannelScale(Layer):
    """y = x * scale, one trainable scale per channel (the last axis)."""

    kind = "channel_scale"

    def _build(self, input_shape, ctx):
        self.params["scale"] = ctx.rng.uniform((input_shape[-1],), 0.5, 1.5, ctx.dtype)
        return input_shape

    def forward(self, x, training=False):
        if training:
            self._x = x
        return x * self.params["scale"]

    def backward(self, dy):
        xp = array_namespace(dy)
        x, self._x = self._x, None
        self.grads["scale"] = xp.sum(dy * x, axis=tuple(range(dy.ndim - 1)))
        return dy * self.params["scale"]

    def onnx_nodes(self, g, x):
        x = g.channels_last(x)  # the scale is per channel, the last axis of NHWC
        return g.node("Mul", [x, g.initializer(f"scale{g.index}", self.params["scale"])])

    @classmethod
    def gradcheck_cases(cls):
        return [GradCase("channel-scale", lambda: ChannelScale(), (3, 4, 2))]


class Nameless(Layer):
    """A registered kind without an ONNX rule (nor gradient checks)."""

    kind = "nameless"

    def forward(self, x, training=False):
        return x


def _host_outputs(model: Sequential, x: np.ndarray) -> np.ndarray:
    b = model.backend
    return b.to_host(model.predict(b.from_host(x, b.dtype("float32"))))


def _onnx_outputs(model: Sequential, x: np.ndarray) -> np.ndarray:
    from arraynet.io.onnx_export import export_bytes, onnx_outputs, onnx_session

    return onnx_outputs(onnx_session(export_bytes(model)), x)


def test_a_registered_layer_loads_by_kind_and_passes_its_gradient_check():
    register(ChannelScale)
    assert isinstance(layer_from_config({"type": "channel_scale"}), ChannelScale)
    (case,) = ChannelScale.gradcheck_cases()
    check_gradients(case.make(), case.input_shape)
    assert "channel_scale" not in kinds_without_cases()


def test_a_registered_kind_without_gradient_checks_is_caught():
    register(Nameless)
    assert "nameless" in kinds_without_cases()

    @register
    class DenseCopy(Dense):  # inherits Dense's cases, which build a Dense, not a DenseCopy
        kind = "dense_copy"

    assert "dense_copy" in kinds_without_cases()


@needs_onnx
def test_a_registered_layer_with_its_rule_exports_and_runs_in_onnxruntime():
    register(ChannelScale)
    layout = {
        "input_shape": [6, 5, 2],
        "layers": [
            {"type": "conv2d", "filters": 3, "kernel_size": 3},  # NCHW from here on in ONNX
            {"type": "channel_scale"},
            {"type": "activation", "fn": "softmax"},
            {"type": "flatten"},
            {"type": "dense", "units": 4},
        ],
    }
    model = Sequential.from_config(layout).build(get_backend("numpy"), seed=1)
    x = np.random.default_rng(0).random((3, 6, 5, 2), dtype=np.float32)
    np.testing.assert_allclose(_onnx_outputs(model, x), _host_outputs(model, x), atol=1e-5)


@needs_onnx
def test_a_kind_without_an_onnx_rule_is_a_one_line_error():
    from arraynet.io.onnx_export import ExportError, to_onnx

    register(Nameless)
    model = Sequential([Dense(3), Nameless()], (4,)).build(get_backend("numpy"))
    with pytest.raises(ExportError) as info:
        to_onnx(model)
    msg = str(info.value)
    assert msg.startswith("layer 1 (nameless): no ONNX export rule")
    assert "layer kind 'nameless' has no ONNX rule" in msg and "\n" not in msg


def _imports(path: Path) -> list[str]:
    """The top-level packages a file imports (lazy imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module.split(".")[0])
    return found


def test_layer_files_import_neither_onnx_nor_numpy():
    """onnx is an optional extra, and layers use only the Array API: their ONNX rules get
    everything through the graph builder."""
    for path in (Path(__file__).parent.parent / "arraynet" / "layers").glob("*.py"):
        assert not {"onnx", "numpy"} & set(_imports(path)), path.name
    code = "import sys, arraynet.layers; print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_built_in_kind_has_an_onnx_rule():
    for kind, cls in LAYER_TYPES.items():
        assert cls.onnx_nodes is not Layer.onnx_nodes, kind


# -- activation= on Dense and Conv2D ----------------------------------------------------------


@pytest.mark.parametrize("fn", ["relu", "tanh", "sigmoid", "softmax"])
def test_activation_argument_is_the_linear_layer_then_activation(fn):
    b = get_backend("numpy")
    x = np.random.default_rng(1).standard_normal((4, 5, 6, 2)).astype(np.float32)
    for fused, plain in [
        (Conv2D(3, 3, activation=fn), [Conv2D(3, 3), Activation(fn)]),
        (Dense(4, activation=fn), [Dense(4), Activation(fn)]),
    ]:
        shape = (5, 6, 2) if isinstance(fused, Conv2D) else (12,)
        xin = x if isinstance(fused, Conv2D) else x.reshape(4, -1)[:, :12]
        one = Sequential([fused], shape).build(b, seed=3)
        two = Sequential(plain, shape).build(b, seed=3)
        np.testing.assert_array_equal(_host_outputs(one, xin), _host_outputs(two, xin))


def test_activation_is_in_the_config_only_when_set():
    assert "activation" not in Dense(3).config()
    assert "activation" not in Dense(3, activation="linear").config()
    assert "activation" not in Conv2D(3, activation=None).config()
    for layer in (Dense(3, activation="tanh"), Conv2D(2, 3, stride=2, activation="relu")):
        cfg = layer.config()
        assert cfg["activation"] == layer.activation
        assert layer_from_config(cfg).config() == cfg
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        Dense(3, activation="gelu")
    with pytest.raises(ValueError, match="activation must be a name"):
        Conv2D(3, activation=1)


def test_zoo_layouts_are_unchanged_by_the_activation_argument():
    """Saved layouts and zoo fingerprints: no layer records an activation it lacks."""
    for name, fn in LAYOUTS.items():
        for cfg in fn().config()["layers"]:
            assert "activation" not in cfg, name


@needs_onnx
def test_activation_argument_exports():
    from arraynet.io.onnx_export import to_onnx

    layout = {
        "input_shape": [7, 6, 2],
        "layers": [
            {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "softmax"},
            {"type": "conv2d", "filters": 3, "kernel_size": 2, "stride": 2, "activation": "tanh"},
            {"type": "flatten"},
            {"type": "dense", "units": 5, "activation": "relu"},
            {"type": "dense", "units": 3, "activation": "sigmoid"},
        ],
    }
    model = Sequential.from_config(layout).build(get_backend("numpy"), seed=2)
    ops = [n.op_type for n in to_onnx(model).graph.node]
    assert ops == ["Transpose", "Conv", "Softmax", "Conv", "Tanh", "Transpose", "Flatten",
                   "Gemm", "Relu", "Gemm", "Sigmoid", "Identity"]  # fmt: skip
    x = np.random.default_rng(2).random((4, 7, 6, 2), dtype=np.float32)
    np.testing.assert_allclose(_onnx_outputs(model, x), _host_outputs(model, x), atol=1e-5)
