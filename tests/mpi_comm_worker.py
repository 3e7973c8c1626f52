"""The MPI communicator's operations, as `mpiexec -n N python tests/mpi_comm_worker.py
BACKEND OUT`; each rank writes OUT/rank-R.json. NumPy arrays go to MPI directly; array-api-strict's
take the path of CuPy and torch without a CUDA-aware MPI (staged through the host)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from arraynet.backends import get_backend
from arraynet.parallel.comm import world


def main(backend: str, out: Path) -> None:
    b = get_backend(backend)
    c = world()
    r = c.rank
    h = b.to_host
    arrays = {"a": np.full((2, 3), float(r + 1)), "b": np.arange(4, dtype=np.float32) * (r + 1)}
    mean = c.allreduce_mean({k: b.from_host(v) for k, v in arrays.items()}, b)
    sent = {"w": np.full(5, float(r)), "v": np.full((1,), 10.0 + r)}
    bcast = c.broadcast_arrays({k: b.from_host(v) for k, v in sent.items()}, b)
    total = h(c.allreduce_sum(b.from_host(np.array([r, 1.0])), b))
    mean, bcast = {k: h(v) for k, v in mean.items()}, {k: h(v) for k, v in bcast.items()}
    (out / f"rank-{r}.json").write_text(json.dumps({
        "rank": r, "size": c.size, "name": c.name, "direct": c._direct(b),
        "mean_a": mean["a"].tolist(), "mean_b": mean["b"].tolist(),
        "mean_b_dtype": str(mean["b"].dtype),
        "bcast_w": bcast["w"].tolist(), "bcast_v": bcast["v"].tolist(),
        "sum": total.tolist(), "floats": c.sum_floats([0.5, r]),
        "json": c.bcast_json({"from": r}), "gathered": c.gather_json({"r": r}),
    }))  # fmt: skip
    c.barrier()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
