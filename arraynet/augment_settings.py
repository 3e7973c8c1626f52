"""The augmentation settings, defined once: the ranges of the random zoom, rotation, shift
and elastic distortion, and the probability a batch is augmented when augmentation is asked
for without one.

`DEFAULT_AUGMENT` is where every default comes from: the recipe's `augment` dict
(`Recipe.augment`, `DEFAULT_AUGMENT.to_dict()`), the keyword defaults of
`arraynet.augment` and of `arraynet.data.affine`. This module imports nothing of arraynet,
so that any of them may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["AUGMENT_P", "DEFAULT_AUGMENT", "AugmentSettings"]

#: The probability a batch is augmented when augmentation is asked for by its ranges alone
#: (`fit(augment={...})` without "p").
AUGMENT_P = 1.0


@dataclass(frozen=True)
class AugmentSettings:
    """Augmentation ranges: zoom factor interval, max |angle| in degrees, max shift as a
    fraction of the side, and the elastic distortion's (alpha, sigma) in pixels (None: off).
    Checked and made floats on construction (ValueError)."""

    zoom: tuple[float, float] = (0.8, 1.2)
    rotation: float = 25.0
    shift: float = 0.2
    elastic: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.zoom)
        if not 0 < lo <= hi:
            raise ValueError(f"zoom must satisfy 0 < low <= high, got {self.zoom}")
        if self.rotation < 0 or self.shift < 0:
            raise ValueError("rotation and shift must be non-negative")
        object.__setattr__(self, "zoom", (lo, hi))
        object.__setattr__(self, "rotation", float(self.rotation))
        object.__setattr__(self, "shift", float(self.shift))
        if self.elastic is not None:
            alpha, sigma = (float(v) for v in self.elastic)
            if alpha < 0 or sigma <= 0:
                raise ValueError(f"elastic must be (alpha >= 0, sigma > 0), got {self.elastic}")
            object.__setattr__(self, "elastic", (alpha, sigma))

    def to_dict(self) -> dict[str, Any]:
        """The recipe's JSON form: zoom as a list, then rotation and shift; elastic (a list)
        only when set."""
        d: dict[str, Any] = {
            "zoom": list(self.zoom),
            "rotation": self.rotation,
            "shift": self.shift,
        }
        if self.elastic is not None:
            d["elastic"] = list(self.elastic)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AugmentSettings:
        """Inverse of to_dict; missing keys take the defaults."""
        kw = {k: d[k] for k in ("zoom", "rotation", "shift", "elastic") if k in d}
        for k in ("zoom", "elastic"):
            if kw.get(k) is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `augment_batch` / `maybe_augment`."""
        return {
            "zoom": self.zoom,
            "rotation": self.rotation,
            "shift": self.shift,
            "elastic": self.elastic,
        }


#: The default settings.
DEFAULT_AUGMENT = AugmentSettings()
