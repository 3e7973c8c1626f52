"""Data-parallel equivalence worker, run as `mpiexec -n N python tests/dp_worker.py OUT MODE`
(or as one process for the reference). MODE: 'plain' (conv, no batch norm) or 'syncbn'
(conv + batch norm, synchronised when N > 1).

Trains a small float64 model on a tiny synthetic set with SGD and checks after every step
that the ranks hold bitwise the same parameters; rank 0 writes the final state and the
per-step checks to OUT (safetensors + JSON).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from arraynet.backends import get_backend
from arraynet.io import save_arrays
from arraynet.layers import Activation, BatchNorm, Conv2D, Dense, Flatten, MaxPool2D
from arraynet.model import Sequential
from arraynet.parallel.comm import world
from arraynet.parallel.data_parallel import DataParallel
from arraynet.train.callbacks import Hooks
from arraynet.train.loop import Dataset, Training, fit_loop
from arraynet.train.recipe import Recipe

N_IMAGES, BATCH, EPOCHS = 48, 8, 2  # 12 steps; 48 = 6 global batches of 8


def make_model(mode: str) -> Sequential:
    layers = [Conv2D(3, 3, padding="same"), Activation("relu")]
    if mode == "syncbn":
        layers += [BatchNorm(momentum=0.8)]
    layers += [MaxPool2D(2), Flatten(), Dense(5), Activation("softmax")]
    return Sequential(layers, input_shape=(6, 6, 1))


def tiny_data(backend) -> Dataset:
    g = np.random.default_rng(7)
    x = g.normal(size=(N_IMAGES, 6, 6, 1))
    labels = g.integers(0, 5, size=N_IMAGES)
    y = np.eye(5)[labels]
    f64 = backend.dtype("float64")
    return Dataset(backend.from_host(x, dtype=f64), backend.from_host(y, dtype=f64), labels)


def main(out: Path, mode: str) -> None:
    b = get_backend("numpy", threads=1)
    comm = world()
    model = make_model(mode).build(b, seed=3, dtype="float64")
    par = DataParallel(comm, b, sync_bn=mode == "syncbn")
    par.setup(model)
    recipe = Recipe(optimizer="sgd", lr=0.05, batch_size=BATCH, epochs=EPOCHS)
    mismatches: list[int] = []
    steps = [0]

    def on_batch(i: int, size: int) -> None:
        steps[0] += 1
        flat = np.concatenate([b.to_host(v).ravel() for v in model.state_dict().values()])
        ref = flat.copy()
        if comm.size > 1:
            comm.comm.Bcast(ref, root=0)
        if not np.array_equal(flat.view(np.uint64), ref.view(np.uint64)):
            mismatches.append(steps[0])

    tr = Training(model, recipe, tiny_data(b), seed=3, callbacks=[Hooks({"on_batch": on_batch})],
                  parallel=par)  # fmt: skip
    fit_loop(tr)
    bad = comm.gather_json(mismatches)
    n_steps = steps[0]
    on_batch(0, 0)  # the state as saved (after the epoch's end): equal on every rank?
    final_equal = comm.gather_json(steps[0] not in mismatches)
    if comm.is_root:
        out.mkdir(parents=True, exist_ok=True)
        arrays = {k: b.to_host(v) for k, v in model.state_dict().items()}
        save_arrays(out / "final.safetensors", arrays, {})
        report = {"ranks": comm.size, "steps": n_steps, "mismatched_steps": bad,
                  "final_equal": final_equal,
                  "history": tr.history}  # fmt: skip
        (out / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
