"""Layers: explicit forward/backward, shapes inferred at build time (NHWC images)."""

from arraynet.layers.activations import Activation, log_softmax, softmax
from arraynet.layers.base import BuildContext, Layer
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
    (usable as a class decorator). The built-in kinds cannot be replaced."""
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
    "Layer",
    "MaxPool2D",
    "layer_from_config",
    "log_softmax",
    "register",
    "softmax",
]
