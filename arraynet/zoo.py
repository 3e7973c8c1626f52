"""The model zoo: the seed's twelve layouts (m1 ... m12) and arraynet's own entries.

Layouts follow ../shared/spec/seed-models.md. Images are NHWC (28, 28, 1); MLPs begin
with Flatten. Every conv is 5x5 'same' with the seed's He initialisation (fan_in = C*H*W
of the input); dense layers use U(-0.5, 0.5) for models 1-7 and He from model 8 on.
"""

from __future__ import annotations

from collections.abc import Callable

from arraynet.layers import Activation, BatchNorm, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D
from arraynet.model import Sequential

CONV_INIT = "he_normal_input"


def _fc(units: int, act: str, init: str) -> list[Layer]:
    return [Dense(units, init=init), Activation(act)]


def _conv(filters: int) -> list[Layer]:
    return [Conv2D(filters, 5, padding="same", init=CONV_INIT), Activation("relu")]


def m1() -> Sequential:
    """FC 784-100 tanh, FC 100-50 tanh, FC 50-10 tanh."""
    u = "uniform"
    return Sequential([Flatten(), *_fc(100, "tanh", u), *_fc(50, "tanh", u), *_fc(10, "tanh", u)])


def m2() -> Sequential:
    """FC 784-128 tanh, FC 128-10 tanh."""
    return Sequential([Flatten(), *_fc(128, "tanh", "uniform"), *_fc(10, "tanh", "uniform")])


def m3() -> Sequential:
    """FC 784-128 tanh, FC 128-10 softmax (models 3 and 4)."""
    return Sequential([Flatten(), *_fc(128, "tanh", "uniform"), *_fc(10, "softmax", "uniform")])


m4 = m3


def m5() -> Sequential:
    """FC 784-128 tanh, dropout, FC 128-10 softmax."""
    u = "uniform"
    return Sequential([Flatten(), *_fc(128, "tanh", u), Dropout(0.2), *_fc(10, "softmax", u)])


def _mlp_relu(init: str) -> Sequential:
    return Sequential(
        [
            Flatten(),
            *_fc(128, "relu", init),
            Dropout(0.2),
            *_fc(50, "relu", init),
            Dropout(0.2),
            *_fc(10, "softmax", init),
        ]
    )


def m6() -> Sequential:
    """FC 784-128 relu, D, FC 128-50 relu, D, FC 50-10 softmax (models 6 and 7)."""
    return _mlp_relu("uniform")


m7 = m6


def m8() -> Sequential:
    """As model 6 with He initialisation."""
    return _mlp_relu("he_normal")


def m9() -> Sequential:
    """C 8, P, D, C 16, P, D, FC 784-10 softmax."""
    return Sequential(
        [
            *_conv(8), MaxPool2D(2), Dropout(0.2),
            *_conv(16), MaxPool2D(2), Dropout(0.2),
            Flatten(), *_fc(10, "softmax", "he_normal"),
        ]
    )  # fmt: skip


def m10() -> Sequential:
    """C 16, P, D, C 32, D, C 48, P, D, FC 2352-10 softmax."""
    return Sequential(
        [
            *_conv(16), MaxPool2D(2), Dropout(0.2),
            *_conv(32), Dropout(0.2),
            *_conv(48), MaxPool2D(2), Dropout(0.2),
            Flatten(), *_fc(10, "softmax", "he_normal"),
        ]
    )  # fmt: skip


def m11() -> Sequential:
    """C 16, D, C 32, P, D, C 48, D, C 64, P, D, FC 3136-10 softmax (models 11 and 12)."""
    return Sequential(
        [
            *_conv(16), Dropout(0.2),
            *_conv(32), MaxPool2D(2), Dropout(0.2),
            *_conv(48), Dropout(0.2),
            *_conv(64), MaxPool2D(2), Dropout(0.2),
            Flatten(), *_fc(10, "softmax", "he_normal"),
        ]
    )  # fmt: skip


m12 = m11


def m13() -> Sequential:
    """The seed's Keras layout: C 32, D, C 64, P, D, C 96, D, C 128, P, D, FC 6272-10, BN,
    FC 10-10 softmax (all convs 5x5 same, ReLU, usual He init)."""

    def c(n: int) -> list[Layer]:
        return [Conv2D(n, 5, padding="same", init="he_normal"), Activation("relu")]

    return Sequential(
        [
            *c(32), Dropout(0.2),
            *c(64), MaxPool2D(2), Dropout(0.2),
            *c(96), Dropout(0.2),
            *c(128), MaxPool2D(2), Dropout(0.2),
            Flatten(), Dense(10, init="he_normal"), BatchNorm(),
            Dense(10, init="he_normal"), Activation("softmax"),
        ]
    )  # fmt: skip


def m14() -> Sequential:
    """arraynet's own: batch-normalised 3x3 blocks with strided 5x5 downsampling.

    (C32 3x3, C32 3x3, C32 5x5/2), D 0.4, (C64 3x3, C64 3x3, C64 5x5/2), D 0.4, C128 4x4
    valid, D 0.4, FC 128-10 softmax; every conv followed by batch norm and ReLU.
    """

    def cb(n: int, k: int = 3, stride: int = 1, padding: str = "same") -> list[Layer]:
        conv = Conv2D(n, k, stride=stride, padding=padding, init="he_normal")
        return [conv, BatchNorm(), Activation("relu")]

    return Sequential(
        [
            *cb(32), *cb(32), *cb(32, 5, 2), Dropout(0.4),
            *cb(64), *cb(64), *cb(64, 5, 2), Dropout(0.4),
            *cb(128, 4, 1, "valid"), Flatten(), Dropout(0.4),
            Dense(10, init="he_normal"), Activation("softmax"),
        ]
    )  # fmt: skip


LAYOUTS: dict[str, Callable[[], Sequential]] = {
    "m1": m1, "m2": m2, "m3": m3, "m4": m4, "m5": m5, "m6": m6, "m7": m7, "m8": m8,
    "m9": m9, "m10": m10, "m11": m11, "m12": m12, "m13": m13, "m14": m14,
    "m12-fast": m12, "m14-fast": m14, "m14-elastic": m14, "m14-swa": m14,
    "m14-distill": m14,
}  # fmt: skip


def build_layout(name: str) -> Sequential:
    """An unbuilt model of the zoo layout `name`; unknown names are a ValueError."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(LAYOUTS)}")
    return LAYOUTS[name]()
