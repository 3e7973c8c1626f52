"""Counting host <-> device transfers: how many copies to the device (host-to-device) and
how many reads back (device-to-host, each a synchronisation on a GPU) a piece of code makes.

`count_transfers(backend)` wraps the backend's `from_host` and `to_host`; on torch it also
counts every tensor made from host data (`torch.tensor`, `torch.as_tensor`,
`torch.asarray`, `torch.from_numpy` of a Python number, list or NumPy array) and every
read of a tensor's value on the host (`.item()`, `.tolist()`, `.cpu()`, `.numpy()`,
`float()`, `int()`, `bool()`, `np.asarray(t)`). A CPU torch run thereby counts the copies
and synchronisations the same code would make on CUDA. A call nested inside a counted one
(from_host's own from_numpy) is not counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

H2D_FUNCTIONS = ("tensor", "as_tensor", "asarray", "from_numpy")
D2H_METHODS = (
    "item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__", "__array__",
)  # fmt: skip


@dataclass
class Transfers:
    """Running counts; `log` names each counted call ('h2d torch.asarray', ...)."""

    h2d: int = 0
    d2h: int = 0
    log: list[str] = field(default_factory=list)
    _depth: int = 0

    def snapshot(self) -> tuple[int, int]:
        return self.h2d, self.d2h

    def _counted(self, kind: str, what: str, fn: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._depth == 0 and _is_transfer(what, args):
                setattr(self, kind, getattr(self, kind) + 1)
                self.log.append(f"{kind} {what}")
            self._depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1

        return wrapper


def _is_transfer(what: str, args: tuple) -> bool:
    """torch.asarray/as_tensor/tensor of a tensor copies nothing from the host."""
    if what.split(".")[-1] in ("asarray", "as_tensor", "tensor") and args:
        import torch

        return not isinstance(args[0], torch.Tensor)
    return True


@contextmanager
def count_transfers(backend: Any) -> Iterator[Transfers]:
    """Within the block, count `backend`'s host <-> device transfers (see the module)."""
    counts = Transfers()
    undo: list[tuple[Any, str, Any, bool]] = []

    def patch(owner: Any, name: str, kind: str, label: str) -> None:
        had = name in vars(owner) if isinstance(owner, type) else hasattr(owner, name)
        old = getattr(owner, name)
        undo.append((owner, name, vars(owner).get(name) if isinstance(owner, type) else old, had))
        setattr(owner, name, counts._counted(kind, label, old))

    patch(backend, "from_host", "h2d", "from_host")
    patch(backend, "to_host", "d2h", "to_host")
    if backend.name == "torch":
        import torch

        for fn in H2D_FUNCTIONS:
            patch(torch, fn, "h2d", f"torch.{fn}")
        for m in D2H_METHODS:
            patch(torch.Tensor, m, "d2h", f"Tensor.{m}")
    try:
        yield counts
    finally:
        for owner, name, old, had in reversed(undo):
            if owner is backend:
                delattr(owner, name)  # back to the class's method
            elif had:
                setattr(owner, name, old)
            else:
                delattr(owner, name)
