"""Layers: explicit forward/backward, shapes inferred at build time (NHWC images).

A layer kind is one file plus its registration: a `Layer` subclass whose `kind` is its
name in layouts and weights files, whose `onnx_nodes(g, x)` is its ONNX rule and whose
`gradcheck_cases()` are its gradient checks, listed in `LAYER_TYPES` (built-in kinds) or
registered with `register` (yours).
"""

from arraynet.layers.activations import Activation, log_softmax, softmax
from arraynet.layers.base import BuildContext, GradCase, Layer, OnnxGraph
from arraynet.layers.batchnorm import BatchNorm
from arraynet.layers.conv import Conv2D
from arraynet.layers.dense import Dense
from arraynet.layers.pool import MaxPool2D
from arraynet.layers.shape import Dropout, Flatten

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.kind: cls for cls in (Dense, Conv2D, MaxPool2D, Flatten, Dropout, Activation, BatchNorm)
}


BUILTIN = frozenset(LAYER_TYPES)


def register(cls: type[Layer]) -> type[Layer]:
    """Make a Layer subclass loadable from layouts and weights files by its `kind`
    (usable as a class decorator). The built-in kinds cannot be replaced.

    Any Layer subclass is accepted. ONNX export needs its `onnx_nodes` rule (a kind
    without one fails to export with "layer kind 'k' has no ONNX rule"), and
    `tests/test_gradients.py` fails for a registered kind without `gradcheck_cases()`."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register wants a Layer subclass, not {cls!r}")
    if cls.kind in BUILTIN and LAYER_TYPES[cls.kind] is not cls:
        raise ValueError(f"layer kind {cls.kind!r} is built in; give your layer another kind")
    LAYER_TYPES[cls.kind] = cls
    return cls


def layer_from_config(cfg: dict) -> Layer:
    """Rebuild a layer from its `config()` dict; unknown types are a ValueError."""
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r}")
    return LAYER_TYPES[kind](**cfg)


__all__ = [
    "LAYER_TYPES",
    "Activation",
    "BatchNorm",
    "BuildContext",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "GradCase",
    "Layer",
    "MaxPool2D",
    "OnnxGraph",
    "layer_from_config",
    "log_softmax",
    "register",
    "softmax",
]
