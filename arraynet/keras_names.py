"""Keras's names for losses, optimizers and metrics, mapped to arraynet's in one place.

`Sequential.fit` takes either: `loss="sparse_categorical_crossentropy"` trains with
arraynet's "cross_entropy", `optimizer="Adam"` with "adam". Recipes, run folders and
weights files record arraynet's own (canonical) names only, so a run started with Keras's
names resumes, and its files compare, like any other. Imports nothing of arraynet.
"""

from __future__ import annotations

from typing import Any

# Keras's loss name -> (arraynet's loss, the labels it takes: "integer", "one-hot" or None
# for either). arraynet's cross-entropy takes both; Keras's two names each take one.
LOSSES: dict[str, tuple[str, str | None]] = {
    "categorical_crossentropy": ("cross_entropy", "one-hot"),
    "sparse_categorical_crossentropy": ("cross_entropy", "integer"),
    "mse": ("mse", None),
    "mean_squared_error": ("mse", None),
}

# Keras's optimizer names (matched without regard to case) -> arraynet's.
OPTIMIZERS: dict[str, str] = {"adam": "adam", "sgd": "sgd"}

# Keras's metric names -> arraynet's one metric, the share of correct predictions.
METRICS: dict[str, str] = {
    "accuracy": "accuracy",
    "acc": "accuracy",
    "categorical_accuracy": "accuracy",
    "sparse_categorical_accuracy": "accuracy",
}


def loss_name(name: Any) -> tuple[Any, str | None]:
    """(arraynet's loss name, the labels Keras's name takes or None) for a loss name of
    either library; any other value passes unchanged (the recipe's check refuses it)."""
    if isinstance(name, str) and name.lower() in LOSSES:
        return LOSSES[name.lower()]
    return name, None


def optimizer_name(name: Any) -> Any:
    """arraynet's optimizer name for one of Keras's ('Adam', 'SGD', any case) or
    arraynet's own; any other value passes unchanged (the recipe's check refuses it)."""
    if isinstance(name, str):
        return OPTIMIZERS.get(name.lower(), name)
    return name


def metric_names(metrics: Any) -> list[str]:
    """The metric names asked for (None: none), each one Keras's accuracy names; an
    unknown name is a ValueError that lists the known ones."""
    if metrics is None:
        return []
    if isinstance(metrics, str) or not isinstance(metrics, list | tuple):
        raise ValueError(f"metrics= wants a list of names, e.g. ['accuracy'], not {metrics!r}")
    for m in metrics:
        if not isinstance(m, str) or m not in METRICS:
            raise ValueError(f"metrics= knows {', '.join(METRICS)} (the share of correct "
                             f"predictions), not {m!r}")  # fmt: skip
    return list(dict.fromkeys(metrics))
