"""Communicators: what data-parallel training needs from MPI or NCCL, behind one interface.

Three forms:
- `SingleProcess`: one rank, no MPI (every operation is the identity); mpi4py is not imported.
- `MPIComm`: mpi4py on host buffers. NumPy arrays go to MPI directly; CuPy and torch arrays
  are staged through the host (one copy each way per call), or handed to MPI directly when
  the MPI library is CUDA-aware (`ARRAYNET_MPI_CUDA_AWARE=1`, or MPI reports it).
- `NCCLComm`: CuPy device buffers through `cupy.cuda.nccl`, with NCCL's unique id broadcast
  over MPI (which also carries the small host-side messages). Written against CuPy's NCCL
  bindings; it has not been run in arraynet's CI, which has no GPU.

A collective that waits longer than `ARRAYNET_COMM_TIMEOUT` seconds (default 900; 0 waits
forever) for the other ranks ends the job with one line: a rank that hangs without dying
cannot keep the others waiting for ever.

`world()` finds the job from the launcher's environment (mpiexec, mpirun, srun): a job of
one process is `SingleProcess` unless MPI is asked for, and mpi4py is imported only for a
job of more than one rank.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from typing import Any

from arraynet.backends.base import Array, Backend, derived_seed
from arraynet.backends.host import host_buffer, host_copy
from arraynet.log import get_logger

# (rank, size, local rank, local size) variables, by launcher
_ENV = (
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),  # MPICH / Hydra
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
     "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),  # Open MPI
    ("PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"),  # PMIx
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),  # srun
)  # fmt: skip

COMM_KINDS = ("auto", "single", "mpi", "nccl")
DEFAULT_TIMEOUT_S = 900.0  # a step, a checkpoint write or rank 0's reading of the data fits
ABORT_GRACE_S = 0.3  # how long an aborting rank waits for the launcher to forward its stderr


def comm_timeout() -> float | None:
    """Seconds a collective may wait for the other ranks (ARRAYNET_COMM_TIMEOUT; None: no
    limit)."""
    raw = os.environ.get("ARRAYNET_COMM_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        t = float(raw)
    except ValueError:
        raise CommError(f"ARRAYNET_COMM_TIMEOUT must be a number of seconds, not {raw!r}") from None
    if not t >= 0 or t == float("inf"):
        raise CommError(f"ARRAYNET_COMM_TIMEOUT must be 0 (no limit) or positive, not {raw!r}")
    return t or None


class CommError(RuntimeError):
    """The communicator asked for cannot be set up here (the message says why)."""


def launcher_world() -> tuple[int, int, int, int]:
    """(rank, size, local_rank, local_size) from the launcher's environment; (0, 1, 0, 1)
    outside one."""
    for rank_v, size_v, lrank_v, lsize_v in _ENV:
        size = _int_env(size_v)
        if size is not None and _int_env(rank_v) is not None:
            rank = _int_env(rank_v) or 0
            lrank = _int_env(lrank_v)
            lsize = _int_env(lsize_v)
            return rank, size, lrank if lrank is not None else rank, lsize or size
    return 0, 1, 0, 1


def _int_env(name: str) -> int | None:
    text = os.environ.get(name, "").split("(")[0].split(",")[0].strip()  # '2(x3)' on Slurm
    return int(text) if text.isdigit() else None


class Communicator:
    """The interface; `SingleProcess` is the identity everywhere."""

    name = "single"

    def __init__(self) -> None:
        self.rank, self.size, self.local_rank, self.local_size = 0, 1, 0, 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # -- arrays --------------------------------------------------------------------------
    def broadcast_arrays(self, arrays: dict[str, Array], backend: Backend) -> dict[str, Array]:
        """Rank 0's arrays, on every rank (names and shapes must agree across ranks)."""
        return arrays

    def allreduce_mean(self, arrays: dict[str, Array], backend: Backend) -> dict[str, Array]:
        """The mean over ranks of each array, all reduced in one flat buffer per dtype."""
        return arrays

    def allreduce_sum(self, x: Array, backend: Backend) -> Array:
        """The sum over ranks of one (small) array, e.g. batch-norm channel sums."""
        return x

    # -- host values ---------------------------------------------------------------------
    def sum_floats(self, values: list[float]) -> list[float]:
        """The sum over ranks of a few numbers (float64 on the host)."""
        return [float(v) for v in values]

    def bcast_json(self, obj: Any) -> Any:
        """Rank 0's JSON-able object on every rank (sent as JSON text, not pickled)."""
        return obj

    def gather_json(self, obj: Any) -> list | None:
        """Every rank's JSON-able object, as a list on rank 0 (None elsewhere)."""
        return [obj]

    # -- control -------------------------------------------------------------------------
    def barrier(self) -> None:
        """Wait until every rank gets here."""

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now with status `code`."""
        sys.exit(code)

    def describe(self) -> dict:
        """What `--json` results and `arraynet backends` report."""
        return {"communicator": self.name, "ranks": self.size, "rank": self.rank}


SingleProcess = Communicator


class MPIComm(Communicator):
    """MPI over host buffers (mpi4py), device buffers directly when CUDA-aware."""

    name = "mpi"

    def __init__(self, comm: Any = None, cuda_aware: bool | None = None) -> None:
        super().__init__()
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise CommError(
                f"MPI needs mpi4py ({e}); install the extra: pip install 'arraynet[mpi]'"
            ) from None
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.cuda_aware = _cuda_aware(MPI) if cuda_aware is None else cuda_aware
        self.timeout = comm_timeout()
        if self.cuda_aware:
            self.name = "mpi-cuda-aware"
        if self.size > 1:
            _abort_on_uncaught(self)

    # -- buffers -------------------------------------------------------------------------
    def _direct(self, backend: Backend) -> bool:
        """True when MPI may read and write this backend's arrays in place."""
        return backend.name == "numpy" or (self.cuda_aware and backend.name in ("cupy", "torch"))

    def _allreduce_inplace(self, flat: Array, backend: Backend) -> Array:
        """Sum `flat` (1-D, contiguous) over ranks; returns the summed array."""
        if self._direct(backend):
            if backend.name != "numpy":
                backend.synchronize()  # the kernels that wrote it have finished
            self._wait(
                self.comm.Iallreduce(self.MPI.IN_PLACE, _buffer(flat), op=self.MPI.SUM),
                "an all-reduce",
            )
            return flat
        host = host_copy(backend, flat)  # staged through the host
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM), "an all-reduce")
        return backend.from_host(host, dtype=flat.dtype)

    def _bcast_inplace(self, flat: Array, backend: Backend) -> Array:
        if self._direct(backend):
            if backend.name != "numpy":
                backend.synchronize()
            self._wait(self.comm.Ibcast(_buffer(flat), root=0), "a broadcast")
            return flat
        host = host_copy(backend, flat)
        self._wait(self.comm.Ibcast(host, root=0), "a broadcast")
        return backend.from_host(host, dtype=flat.dtype)

    def broadcast_arrays(self, arrays: dict[str, Array], backend: Backend) -> dict[str, Array]:
        return _flat_apply(arrays, backend, self._bcast_inplace, scale=None)

    def allreduce_mean(self, arrays: dict[str, Array], backend: Backend) -> dict[str, Array]:
        return _flat_apply(arrays, backend, self._allreduce_inplace, scale=1.0 / self.size)

    def allreduce_sum(self, x: Array, backend: Backend) -> Array:
        xp = backend.xp
        flat = xp.reshape(xp.asarray(x, copy=True), (-1,))
        return xp.reshape(self._allreduce_inplace(flat, backend), x.shape)

    def sum_floats(self, values: list[float]) -> list[float]:
        buf = host_buffer(values, "float64")
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), "an all-reduce")
        return [float(v) for v in buf]

    def bcast_json(self, obj: Any) -> Any:
        data = json.dumps(obj).encode() if self.rank == 0 else b""
        n = host_buffer([len(data)], "int64")
        self._wait(self.comm.Ibcast(n, root=0), "a broadcast")
        buf = host_buffer(data if self.rank == 0 else bytes(int(n[0])))
        self._wait(self.comm.Ibcast(buf, root=0), "a broadcast")
        return json.loads(buf.tobytes().decode())

    def gather_json(self, obj: Any) -> list | None:
        data = host_buffer(json.dumps(obj).encode())
        sizes = host_buffer([0] * self.size, "int64")
        mine = host_buffer([data.size], "int64")  # alive until the gather completes
        self._wait(self.comm.Igather(mine, sizes, root=0), "a gather")
        recv = None
        if self.rank == 0:
            recv = host_buffer(bytes(int(sizes.sum())))
            self._wait(self.comm.Igatherv(data, (recv, sizes), root=0), "a gather")
            bounds = [0, *itertools.accumulate(int(k) for k in sizes)]
            return [
                json.loads(recv[bounds[i] : bounds[i + 1]].tobytes().decode())
                for i in range(self.size)
            ]
        self._wait(self.comm.Igatherv(data, None, root=0), "a gather")
        return None

    def barrier(self) -> None:
        self._wait(self.comm.Ibarrier(), "a barrier")

    def _wait(self, request: Any, what: str) -> None:
        """Complete a non-blocking collective, or end the job with one line when the other
        ranks have not joined it within the timeout (a rank that hangs, or a deadlock)."""
        if self.timeout is None:
            request.Wait()
            return
        start = time.monotonic()
        while not request.Test():
            waited = time.monotonic() - start
            if waited > self.timeout:
                get_logger(__name__).error(
                    "arraynet: error: rank %d waited %.0f s for the other ranks at %s "
                    "(ARRAYNET_COMM_TIMEOUT=%g); a rank hangs or is far behind; ending the job",
                    self.rank, waited, what, self.timeout,
                )  # fmt: skip
                self.abort(1)
            # spin for the first millisecond, then sleep 1 % of the wait so far (at most
            # 10 ms): polling adds at most about 1 % to any wait
            if waited > 1e-3:
                time.sleep(min(0.01 * waited, 0.01))

    def abort(self, code: int = 1) -> None:
        """End every rank with status `code`. The caller has already said why on stderr,
        so MPICH's own "Abort(1) on node ..." line is dropped (stderr goes to /dev/null
        first), and this never returns (MPICH's MPI_Abort can, before the launcher's
        kill arrives). The short pause lets the launcher forward the line already written
        before the abort tears its pipes down (without it, about 1 abort in 40 lost it)."""
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_S)
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
        except OSError:
            pass
        self.comm.Abort(code)
        os._exit(code)

    def describe(self) -> dict:
        version = self.MPI.Get_library_version().strip().splitlines()
        return {
            **super().describe(),
            "local_ranks": self.local_size,
            "mpi": version[0].strip() if version else "",
            "cuda_aware": self.cuda_aware,
        }


class NCCLComm(MPIComm):
    """NCCL all-reduce and broadcast of CuPy arrays on the GPU; MPI for everything else.

    Untested in CI (no GPU there): written to CuPy's `cupy.cuda.nccl.NcclCommunicator`.
    """

    name = "nccl"

    def __init__(self, comm: Any = None) -> None:
        super().__init__(comm, cuda_aware=False)
        self.name = "nccl"
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError as e:
            raise CommError(f"NCCL needs CuPy with NCCL ({e}); use --comm mpi") from None
        self.nccl = nccl
        # one GPU per rank on a node (the device NCCL binds this rank to, and the one the
        # CLI gives the cupy backend)
        cupy.cuda.Device(self.local_rank % cupy.cuda.runtime.getDeviceCount()).use()
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = self.bcast_json(list(uid) if uid is not None else None)
        self.nc = nccl.NcclCommunicator(self.size, tuple(uid), self.rank)

    def _nccl_type(self, dtype: Any) -> int:
        n = self.nccl
        types = {"float32": n.NCCL_FLOAT32, "float64": n.NCCL_FLOAT64, "float16": n.NCCL_FLOAT16}
        return types[str(dtype).split(".")[-1]]  # (torch.float32 -> float32)

    def _check(self, backend: Backend) -> None:
        if backend.name != "cupy":
            raise CommError(f"the nccl communicator needs the cupy backend, not {backend.name}")

    def _allreduce_inplace(self, flat: Array, backend: Backend) -> Array:
        self._check(backend)
        import cupy

        stream = cupy.cuda.get_current_stream().ptr
        self.nc.allReduce(flat.data.ptr, flat.data.ptr, flat.size,
                          self._nccl_type(flat.dtype), self.nccl.NCCL_SUM, stream)  # fmt: skip
        return flat

    def _bcast_inplace(self, flat: Array, backend: Backend) -> Array:
        self._check(backend)
        import cupy

        stream = cupy.cuda.get_current_stream().ptr
        self.nc.bcast(flat.data.ptr, flat.size, self._nccl_type(flat.dtype), 0, stream)
        return flat

    def abort(self, code: int = 1) -> None:
        try:
            self.nc.abort()
        finally:
            super().abort(code)

    def describe(self) -> dict:
        return {**super().describe(), "nccl": str(self.nccl.get_version())}


def _cuda_aware(MPI: Any) -> bool:
    flag = os.environ.get("ARRAYNET_MPI_CUDA_AWARE", "").strip()
    if flag:
        return flag not in ("0", "no", "false")
    query = getattr(MPI, "Query_cuda_support", None)  # MPIX extension (Open MPI, MPICH 4+)
    try:
        return bool(query()) if query else False
    except Exception:
        return False


def _buffer(flat: Array) -> Any:
    """What mpi4py takes for an array: NumPy itself, a device array by DLPack / CAI."""
    return flat


def _flat_apply(arrays: dict[str, Array], backend: Backend, op: Any, scale: float | None) -> dict:
    """Pack `arrays` into one flat buffer per dtype, apply `op` in place, unpack (and scale)."""
    xp = backend.xp
    out = dict(arrays)
    groups: dict[str, list[str]] = {}
    for k, v in arrays.items():
        groups.setdefault(str(v.dtype), []).append(k)
    for names in groups.values():
        flat = xp.concat([xp.reshape(arrays[k], (-1,)) for k in names])
        flat = op(flat, backend)
        if scale is not None:
            flat = flat * scale
        i = 0
        for k in names:
            shape = tuple(arrays[k].shape)
            n = 1
            for d in shape:
                n *= d
            out[k] = xp.reshape(flat[i : i + n], shape)
            i += n
    return out


_WORLD: Communicator | None = None


def world(kind: str = "auto") -> Communicator:
    """The job's communicator (made once per process).

    'auto': MPI when the launcher started more than one rank (NCCL is never picked
    automatically), else `SingleProcess`. 'single', 'mpi' and 'nccl' ask for one form;
    'mpi' and 'nccl' import mpi4py even for one rank.
    """
    global _WORLD
    if _WORLD is not None:
        if kind not in ("auto", _WORLD.name) and not _WORLD.name.startswith(kind):
            raise CommError(f"the communicator is already {_WORLD.name}, not {kind}")
        return _WORLD
    if kind not in COMM_KINDS:
        raise CommError(f"unknown communicator {kind!r}; choose from {', '.join(COMM_KINDS)}")
    _, size, _, _ = launcher_world()
    if kind == "single" or (kind == "auto" and size == 1):
        if kind == "single" and size > 1:
            raise CommError(f"--comm single, but the launcher started {size} ranks")
        _WORLD = Communicator()
    elif kind == "nccl":
        _WORLD = NCCLComm()
    else:
        _WORLD = MPIComm()
    return _WORLD


def active_world() -> Communicator | None:
    """The communicator made so far, if any (for error handling: abort the others)."""
    return _WORLD


def rank_seed(seed: int, rank: int, size: int) -> int:
    """A seed for rank `rank` of `size`: `seed` itself for one process (today's streams),
    else an independent stream derived from (seed, rank, size)."""
    if size == 1:
        return seed
    return derived_seed(seed, rank, size)


def probe_comm(comm: Communicator) -> dict:
    """This job's ranks and communicator, and which distributed libraries are installed
    (by their package metadata: neither mpi4py nor CuPy is imported for it)."""
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    cupy = next((v for d in ("cupy-cuda12x", "cupy-cuda13x", "cupy") if (v := version(d))), None)
    return {
        **comm.describe(),
        "is_root": comm.is_root,
        "mpi4py": version("mpi4py"),
        "mpich": version("mpich"),
        "nccl": f"via cupy {cupy}" if cupy else None,
    }


def _abort_on_uncaught(comm: MPIComm) -> None:
    """An exception that reaches the top of a rank ends the whole job (as `python -m
    mpi4py` does) instead of leaving the other ranks waiting for it."""
    previous = sys.excepthook

    def hook(kind: Any, value: Any, tb: Any) -> None:
        previous(kind, value, tb)
        comm.abort(1)

    sys.excepthook = hook
