"""`model.fit` under mpiexec, as `mpiexec -n N python tests/dp_fit_worker.py OUT` (or one
process for the reference): a small float64 model fitted with SGD on a tiny synthetic set
into the run folder OUT/run; rank 0 writes OUT/report.json with every rank's final
parameters (to compare them bitwise) and the fit's history."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from arraynet.backends import get_backend
from arraynet.layers import Activation, Conv2D, Dense, Flatten, MaxPool2D
from arraynet.model import Sequential
from arraynet.parallel.comm import world


def main(out: Path) -> None:
    b = get_backend("numpy", threads=1)
    comm = world()
    model = Sequential(
        [Conv2D(3, 3, padding="same"), Activation("relu"), MaxPool2D(2), Flatten(),
         Dense(5), Activation("softmax")],
        input_shape=(6, 6, 1),
    ).build(b, seed=3, dtype="float64")  # fmt: skip
    g = np.random.default_rng(7)
    x = g.normal(size=(48, 6, 6, 1))
    y = g.integers(0, 5, size=48)
    history = model.fit(x, y, epochs=2, batch_size=8, lr=0.05, optimizer="sgd", seed=3,
                        out_dir=out / "run", verbose=True)  # fmt: skip
    flat = np.concatenate([np.ravel(v) for v in model.state_dict().values()])
    finals = comm.gather_json(flat.tolist())
    if comm.is_root:
        report = {"ranks": comm.size, "finals": finals, "history": history}
        (out / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
