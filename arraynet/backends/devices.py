"""Where one rank of a data-parallel job runs: its GPU and its share of the CPUs."""

from __future__ import annotations

import os

from arraynet.backends import ALIASES

CUDA_BACKENDS = ("cupy", "torch")  # the libraries that give each local rank a CUDA device


def uses_cuda(name: str) -> bool:
    """Whether backend `name` (or its alias) is one of the CUDA libraries."""
    return ALIASES.get(name, name) in CUDA_BACKENDS


def threads_from_environment() -> bool:
    """Whether a thread-count variable (ARRAYNET_THREADS, OPENBLAS_NUM_THREADS ...) is set."""
    from arraynet.backends.numpy_backend import THREAD_VARS

    return any(os.environ.get(v, "").strip() for v in THREAD_VARS)


def rank_placement(
    backend: str, device: str | None, threads: int | None, local_rank: int, local_size: int
) -> tuple[str | None, int | None]:
    """A rank's device and CPU threads when `local_size` ranks share this machine: one
    GPU per local rank on a CUDA library, the usable CPUs shared out. What the user gave
    (a device, a thread count, a thread variable) is kept."""
    from arraynet.backends.numpy_backend import usable_cpus

    if local_size > 1:
        if device is None and uses_cuda(backend):
            device = f"cuda:{local_rank}"
        if threads is None and not threads_from_environment():
            threads = max(1, usable_cpus() // local_size)
    return device, threads
