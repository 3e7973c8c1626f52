"""The sliding window behind early stopping, with the seed's semantics (the callback that
uses it is `arraynet.train.callbacks.EarlyStopping`).

Keep the last `patience` epochs' monitored values and weights; stop when the oldest kept
value is within a relative `min_delta` of the best kept one (no real progress over the
window); the best kept weights are restored at a stop and at the end of training.
"""

from __future__ import annotations

from typing import Any

#: The seed's window: 15 epochs, 0.5 % relative progress (also the CLI's defaults).
PATIENCE = 15
MIN_DELTA = 0.005


class StoppingWindow:
    """Sliding-window early stopping on a value to minimise."""

    def __init__(self, min_delta: float = MIN_DELTA, patience: int = PATIENCE) -> None:
        if patience < 1:
            raise ValueError("patience must be at least 1")
        self.min_delta = float(min_delta)
        self.patience = int(patience)
        self.values: list[float] = []
        self.epochs: list[int] = []
        self.weights: list[Any] = []

    def update(self, epoch: int, value: float, weights: Any) -> bool:
        """Record an epoch; return True when training should stop."""
        self.values.append(float(value))
        self.epochs.append(int(epoch))
        self.weights.append(weights)
        if len(self.values) > self.patience:
            self.values.pop(0)
            self.epochs.pop(0)
            self.weights.pop(0)
        if len(self.values) < self.patience:
            return False
        best = min(self.values)
        oldest = self.values[0]
        return oldest - best <= self.min_delta * abs(oldest)

    def best(self) -> tuple[int, float, Any]:
        """(epoch, value, weights) of the best kept epoch."""
        i = min(range(len(self.values)), key=self.values.__getitem__)
        return self.epochs[i], self.values[i], self.weights[i]

    def window(self) -> dict:
        """JSON-able window (values and epochs; weights are saved separately)."""
        return {"values": list(self.values), "epochs": list(self.epochs)}


def __getattr__(name: str) -> Any:
    if name == "EarlyStopping":  # this module's class before the callback took the name
        import warnings

        warnings.warn("arraynet.early_stopping.EarlyStopping is now StoppingWindow; the "
                      "callback is arraynet.callbacks.EarlyStopping", DeprecationWarning,
                      stacklevel=2)  # fmt: skip
        return StoppingWindow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
