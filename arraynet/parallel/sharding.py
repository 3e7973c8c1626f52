"""An epoch's mini-batches, whole or as one rank's share of each global batch."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

Array = Any


def epoch_batches(
    order: Array, batch_size: int, rank: int = 0, size: int = 1
) -> tuple[Array, list[tuple[int, int]]]:
    """This rank's indices for the epoch and the (start, stop) of each of its batches in them.

    Global batch i is `order[i * batch_size : (i + 1) * batch_size]`; rank r takes the r-th
    of `size` equal consecutive parts of it, so the ranks' parts laid end to end are the
    one-process batch. A last batch that `size` does not divide loses its final
    (len mod size) images this epoch (every rank keeps an equal share, so the mean of the
    ranks' gradients is the gradient of the global batch). With size 1 nothing changes.
    """
    if batch_size % size:
        raise ValueError(f"--batch-size {batch_size} is not a multiple of the {size} ranks")
    n = int(order.shape[0])
    if size == 1:
        return order, [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    parts, bounds, at = [], [], 0
    for start in range(0, n, batch_size):
        share = (min(batch_size, n - start)) // size
        if share == 0:
            continue
        lo = start + rank * share
        parts.append(order[lo : lo + share])
        bounds.append((at, at + share))
        at += share
    local = array_namespace(order).concat(parts) if parts else order[:0]
    return local, bounds
