"""NumPy backend (CPU), with fast kernels that NumPy's strided views make possible."""

from __future__ import annotations

import ctypes
import os
import sys

import array_api_compat.numpy as xp_numpy

from arraynet.backends import numpy_kernels
from arraynet.backends.base import Backend
from arraynet.backends.kernels import Kernels


def _tune_malloc() -> None:
    """Keep large freed buffers in the heap (glibc): big arrays are then reused instead of
    being mapped and page-faulted afresh at every step. Off with ARRAYNET_NO_MALLOPT=1."""
    global _TUNED
    if _TUNED or os.environ.get("ARRAYNET_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return
    _TUNED = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 31)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


_TUNED = False


THREAD_VARS = ("ARRAYNET_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


CGROUP_V2_CPU_MAX = "/sys/fs/cgroup/cpu.max"
CGROUP_V1_CPU = "/sys/fs/cgroup/cpu"


def cpu_quota() -> int | None:
    """CPUs a container's CPU quota allows (cgroup v2 `cpu.max`, or v1 CFS quota and
    period), rounded up; None when there is no quota or no cgroup to read."""
    try:
        with open(CGROUP_V2_CPU_MAX) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        try:
            with open(f"{CGROUP_V1_CPU}/cpu.cfs_quota_us") as f:
                quota = f.read().strip()
            with open(f"{CGROUP_V1_CPU}/cpu.cfs_period_us") as f:
                period = f.read().strip()
        except OSError:
            return None
    try:
        q, p = int(quota), int(period)
    except ValueError:  # 'max': no quota
        return None
    return -(-q // p) if q > 0 and p > 0 else None


def usable_cpus() -> int:
    """The CPUs this process may run on, capped by a container's CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    quota = cpu_quota()
    return max(1, min(cpus, quota)) if quota else cpus


def max_threads() -> int:
    """The most threads the fast kernels may be given: 4 a usable CPU, at least 8 (more
    only oversubscribe the cores; a typo like 100000 would start that many threads)."""
    return max(8, 4 * usable_cpus())


def check_threads(n: int, what: str = "--threads") -> int:
    """`n` if it is a sensible thread count, else ValueError (one line)."""
    top = max_threads()
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= top:
        raise ValueError(
            f"{what} wants 1..{top} threads (this machine has {usable_cpus()} usable CPUs), "
            f"not {n!r}"
        )
    return n


def default_threads() -> int:
    """Threads for the fast kernels: the first of ARRAYNET_THREADS, OPENBLAS_NUM_THREADS
    and OMP_NUM_THREADS that is set, else `usable_cpus()`. (So `OPENBLAS_NUM_THREADS=1`
    keeps a run on one core, as it always did.)"""
    for var in THREAD_VARS:
        text = os.environ.get(var, "").strip()
        if text:
            if not text.isdigit() or int(text) < 1:
                raise ValueError(f"{var} must be a whole number of threads >= 1, not {text!r}")
            return check_threads(int(text), var)
    return usable_cpus()


def make(device: str | None = None, *, fast: bool = True, threads: int | None = None) -> Backend:
    """The NumPy backend; `fast=False` runs only the portable Array-API code.

    The fast kernels share their work among `threads` threads (default:
    `default_threads()`); BLAS uses as many until they first do (`Workers`), then one."""
    if device not in (None, "cpu"):
        raise ValueError(f"numpy backend has only the 'cpu' device, not {device!r}")
    if not fast:
        return Backend(name="numpy", xp=xp_numpy, device="cpu", kernels=Kernels())
    _tune_malloc()
    n = default_threads() if threads is None else check_threads(threads)
    workers = numpy_kernels.shared_workers(n)
    numpy_kernels.set_blas_threads(workers.blas_threads)
    kernels = numpy_kernels.NumpyKernels(workers)
    return Backend(name="numpy", xp=xp_numpy, device="cpu", kernels=kernels, threads=workers.n)
