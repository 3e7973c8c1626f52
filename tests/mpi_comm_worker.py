"""The MPI communicator's operations, as `mpiexec -n N python tests/mpi_comm_worker.py`;
prints one JSON line per rank."""

from __future__ import annotations

import json

import numpy as np

from arraynet.backends import get_backend
from arraynet.backends.comm import world


def main() -> None:
    b = get_backend("numpy", threads=1)
    c = world()
    r = c.rank
    arrays = {"a": np.full((2, 3), float(r + 1)), "b": np.arange(4, dtype=np.float32) * (r + 1)}
    mean = c.allreduce_mean(arrays, b)
    bcast = c.broadcast_arrays({"w": np.full(5, float(r)), "v": np.full((1,), 10.0 + r)}, b)
    total = c.allreduce_sum(np.array([r, 1.0]), b)
    print(json.dumps({
        "rank": r, "size": c.size, "name": c.name,
        "mean_a": mean["a"].tolist(), "mean_b": mean["b"].tolist(),
        "mean_b_dtype": str(mean["b"].dtype),
        "bcast_w": bcast["w"].tolist(), "bcast_v": bcast["v"].tolist(),
        "sum": total.tolist(), "floats": c.sum_floats([0.5, r]),
        "json": c.bcast_json({"from": r}), "gathered": c.gather_json({"r": r}),
    }), flush=True)  # fmt: skip
    c.barrier()


if __name__ == "__main__":
    main()
