"""A data-parallel run where one rank fails mid-run, as `mpiexec -n 2 python
tests/dp_fail_worker.py OUT MODE`: in epoch 2 rank 1 kills itself (MODE 'kill', SIGKILL),
raises (MODE 'raise') or hangs without dying (MODE 'hang'); nothing catches the exception,
so what ends the other rank is arraynet's MPI communicator (its uncaught-exception hook, or
its collective timeout, ARRAYNET_COMM_TIMEOUT) or the launcher."""

from __future__ import annotations

import os
import signal
import sys
import time

from arraynet.backends import get_backend
from arraynet.jobs import train_model
from arraynet.parallel.comm import world
from arraynet.zoo import recipe_for


def main(out: str, mode: str) -> None:
    comm = world()
    epoch = [0]

    def on_epoch_start(e: int, n: int) -> None:
        epoch[0] = e

    def on_batch(i: int, size: int) -> None:
        if comm.rank == 1 and epoch[0] == 1 and i == 3:
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "hang":
                time.sleep(3600)
            raise RuntimeError("rank 1 fails on purpose")

    recipe = recipe_for("m4").with_overrides(epochs=3)
    train_model("m4", get_backend("numpy", threads=1), recipe=recipe, out_dir=out,
                train_limit=256, quiet_data=True,
                callbacks={"on_batch": on_batch, "on_epoch_start": on_epoch_start})  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
