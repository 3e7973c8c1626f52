"""Learning-rate schedules, indexed by epoch e = 0, 1, 2, ...

const, tunable (the seed's warm-up then halving), tunable5 (warm-up, then halve every 5
epochs with no late change), keras (the seed's notebook) and cosine.
"""

from __future__ import annotations

import math

NAMES = ("const", "tunable", "tunable5", "keras", "cosine")


def tunable(
    lr0: float, epoch: int, halve_after: int = 5, late_start: int | None = 20, late_every: int = 3
) -> float:
    """The seed's tunable schedule.

    e = 0 gives lr0; for 0 < e < halve_after, lr_e = lr_(e-1) * (1 + 1/e) (a linear warm-up
    to halve_after x lr0); afterwards halve when e % halve_after == 0 (e != halve_after,
    e <= late_start) and, past late_start, when e % late_every == 0.
    """
    lr = lr0
    for e in range(1, epoch + 1):
        if e < halve_after:
            lr *= 1.0 + 1.0 / e
        elif late_start is not None and e > late_start:
            if e % late_every == 0:
                lr *= 0.5
        elif e % halve_after == 0 and e != halve_after:
            lr *= 0.5
    return lr


def keras(lr0: float, epoch: int) -> float:
    """The seed's notebook: lr0*(e+1)/5 for e < 5, then lr0 * 0.5 ** ((e-5)//5)."""
    if epoch < 5:
        return lr0 * (epoch + 1) / 5
    return lr0 * 0.5 ** ((epoch - 5) // 5)


def cosine(lr0: float, epoch: int, epochs: int, warmup: int = 0, floor: float = 0.0) -> float:
    """Warm-up: epoch e < `warmup` runs at lr0*(e+1)/warmup; then cosine decay from lr0 to
    lr0*floor at `epochs`. The rate is set per epoch, so warmup=1 is one epoch at the peak
    rate before the decay starts (no ramp); warmup=k ramps over k epochs."""
    if epoch < warmup:
        return lr0 * (epoch + 1) / warmup
    span = max(epochs - warmup, 1)
    t = min(max(epoch - warmup, 0) / span, 1.0)
    return lr0 * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))


def learning_rate(name: str, lr0: float, epoch: int, epochs: int = 1, warmup: int = 0) -> float:
    """The rate of schedule `name` at `epoch`."""
    if name == "const":
        return lr0
    if name == "tunable":
        return tunable(lr0, epoch)
    if name == "tunable5":
        return tunable(lr0, epoch, late_start=None)
    if name == "keras":
        return keras(lr0, epoch)
    if name == "cosine":
        return cosine(lr0, epoch, epochs, warmup)
    raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(NAMES)}")
