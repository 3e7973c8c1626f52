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
    "softmax",
]
