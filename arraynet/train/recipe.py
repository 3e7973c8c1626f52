"""Training recipes: each zoo entry's seed recipe as defaults (spec: seed-models.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from arraynet.augment_settings import DEFAULT_AUGMENT

MONITORS = ("train_loss", "val_loss")
FLAGS = (
    "epochs", "batch_size", "lr", "schedule", "optimizer", "aug_p", "monitor", "label_smoothing",
    "ema", "warmup", "swa_from", "distill", "min_delta", "patience", "elastic",
)  # fmt: skip

# How `Recipe.validate` words its messages: "cli" for `arraynet train`'s flags, "api" for
# `Sequential.fit`'s keywords; in "api" a setting fit has no keyword for is named as the
# recipe's field (API_NAMES), the others as `name=`.
API_NAMES = {
    "aug_p": "augment=", "elastic": "augment['elastic']", "augment": "augment=",
    "monitor": "recipe.monitor", "swa_from": "recipe.swa_from", "distill": "recipe.distill",
    "early_stopping": "recipe.early_stopping", "min_delta": "recipe.early_stopping[0]",
    "patience": "recipe.early_stopping[1]", "zoom": "augment['zoom']",
    "rotation": "augment['rotation']", "shift": "augment['shift']",
}  # fmt: skip
WORDS = {
    "cli": {
        "epochs": "--epochs",
        "swa": "--swa-from averages the weights itself: turn off --ema and early stopping "
        "(--patience 0)",
        "monitor": "--monitor val_loss needs a validation split (--val-split N)",
    },
    "api": {
        "epochs": "epochs=",
        "swa": "recipe.swa_from averages the weights itself: turn off ema= and "
        "recipe.early_stopping",
        "monitor": "recipe.monitor 'val_loss' needs validation data (validation_data= or "
        "validation_split=)",
    },
}


@dataclass(frozen=True)
class Recipe:
    """Everything that defines a training run besides the layout and the seed."""

    loss: str = "cross_entropy"
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "const"
    batch_size: int = 16
    aug_p: float = 0.0
    augment: dict = field(default_factory=DEFAULT_AUGMENT.to_dict)
    early_stopping: list | None = None  # [min_delta_rel, patience]
    monitor: str = "train_loss"  # or "val_loss"
    epochs: int = 10
    warmup: int = 0
    label_smoothing: float = 0.0
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off)
    swa_from: int = 0  # average the weights of every epoch's end from this epoch on (0: off)
    distill: float = 0.0  # weight of the teachers' probabilities in the targets (0: off)

    def with_overrides(self, **kw: Any) -> Recipe:
        """A copy with the non-None keyword values replaced."""
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, validation: bool | None = None, words: str = "cli") -> Recipe:
        """The recipe itself, or a ValueError naming the first setting out of range.
        `validation` tells whether the run has validation data (None: not known yet).
        `words`: "cli" names settings by their command-line flags (`--lr`), "api" by
        `Sequential.fit`'s keywords (`lr=`) or the recipe's fields (`recipe.swa_from`)."""
        from arraynet.losses import LOSSES
        from arraynet.optimizers import OPTIMIZERS
        from arraynet.schedules import NAMES

        if words not in WORDS:
            raise ValueError(f"words wants one of {', '.join(WORDS)}, not {words!r}")
        say = WORDS[words]

        def bad(name: str, want: str, value: Any) -> ValueError:
            flag = name.split()[0]
            if words == "api":
                name = API_NAMES.get(flag, f"{flag}=") + name[len(flag) :]
            elif flag in FLAGS:  # settings with a command-line flag are named by it
                name = f"--{flag.replace('_', '-')}" + name[len(flag) :]
            return ValueError(f"{name} wants {want}, not {value!r}")

        def number(name: str, value: Any, lo: float, hi: float, lo_open=False, hi_open=False):
            ok = isinstance(value, int | float) and math.isfinite(value)
            ok = ok and (value > lo if lo_open else value >= lo)
            ok = ok and (value < hi if hi_open else value <= hi)
            if not ok:
                left, right = "(" if lo_open else "[", ")" if hi_open else "]"
                raise bad(name, f"a number in {left}{lo:g}, {hi:g}{right}", value)

        def count(name: str, value: Any, lo: int) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise bad(name, f"a whole number >= {lo}", value)

        for name, value, names in (
            ("loss", self.loss, LOSSES), ("optimizer", self.optimizer, OPTIMIZERS),
            ("schedule", self.schedule, NAMES), ("monitor", self.monitor, MONITORS),
        ):  # fmt: skip
            if value not in names:
                raise bad(name, f"one of {', '.join(names)}", value)
        count("epochs", self.epochs, 1)
        count("batch_size", self.batch_size, 1)
        count("warmup", self.warmup, 0)
        count("swa_from", self.swa_from, 0)
        number("lr", self.lr, 0.0, math.inf, hi_open=True)
        number("aug_p", self.aug_p, 0.0, 1.0)
        number("label_smoothing", self.label_smoothing, 0.0, 1.0, hi_open=True)
        number("ema", self.ema, 0.0, 1.0, hi_open=True)
        number("distill", self.distill, 0.0, 1.0)
        if self.early_stopping is not None:
            if not isinstance(self.early_stopping, list | tuple) or len(self.early_stopping) != 2:
                raise bad("early_stopping", "[min_delta, patience]", self.early_stopping)
            number("min_delta", self.early_stopping[0], 0.0, 1.0)
            count("patience", self.early_stopping[1], 1)
        if self.swa_from > self.epochs:
            raise bad("swa_from", f"an epoch up to {say['epochs']} ({self.epochs})", self.swa_from)
        if self.swa_from and (self.ema or self.early_stopping):
            raise ValueError(say["swa"])
        if self.monitor == "val_loss" and validation is False:
            raise ValueError(say["monitor"])
        aug = self.augment
        missing = [k for k in ("zoom", "rotation", "shift") if k not in aug]
        if missing:
            raise bad("augment", "zoom, rotation and shift", aug)
        zoom = aug["zoom"]
        if not isinstance(zoom, list | tuple) or len(zoom) != 2:
            raise bad("zoom", "[low, high]", zoom)
        number("zoom low", zoom[0], 0.0, math.inf, lo_open=True, hi_open=True)
        number("zoom high", zoom[1], zoom[0], math.inf, hi_open=True)
        number("rotation", aug["rotation"], 0.0, 180.0)
        number("shift", aug["shift"], 0.0, 1.0)
        elastic = aug.get("elastic")
        if elastic is not None:
            if not isinstance(elastic, list | tuple) or len(elastic) != 2:
                raise bad("elastic", "[alpha, sigma]", elastic)
            number("elastic alpha", elastic[0], 0.0, 1e6)
            number("elastic sigma", elastic[1], 0.0, 1e3, lo_open=True)
        return self

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
