"""One way to set up a training run, shared by `Sequential.fit` (`arraynet.train.fit`) and
`arraynet train` (`arraynet.jobs.train_model`), and so by sweeps and scripts too.

    run = RunSetup.open(backend, recipe.batch_size, out_dir=..., resume=..., comm=...)
    ...load and check the data, build the model, collect the run's facts in `meta`...
    run.check_same(meta, flags)           # a resume must continue the same run
    t = run.start(model, recipe, train, val, seed=..., meta=meta, callbacks=[...])
    fit_loop(t)
    run.finish(t, metrics)                # the final weights, when there is a run folder

`open` decides data parallelism (several ranks, synchronised batch norm or a scaled
learning rate) and checks the run folder: a new run's folder must be free and writable,
a resumed one must hold a checkpoint begun on as many ranks. `start` puts rank 0's weights
on every rank, builds the `Training` with a checkpoint callback, and restores the
checkpoint on a resume.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arraynet.backends import Backend
from arraynet.network import Network
from arraynet.parallel.comm import Communicator, world
from arraynet.parallel.data_parallel import DataParallel, LinearScaling, check_resume_ranks
from arraynet.train.callbacks import ModelCheckpoint
from arraynet.train.loop import Dataset, Training, evaluate
from arraynet.train.recipe import Recipe
from arraynet.train.runfolder import RunFolder

__all__ = ["RunSetup"]


@dataclass
class RunSetup:
    """A run's communicator, data-parallel policy (None for one process without
    synchronised batch norm or rate scaling), run folder (None: nothing is written) and,
    on a resume, the facts the run was begun with (`saved`)."""

    comm: Communicator
    parallel: DataParallel | None = None
    folder: RunFolder | None = None
    resume: bool = False
    saved: dict = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        backend: Backend,
        batch_size: int,
        *,
        out_dir: str | Path | None = None,
        resume: bool = False,
        comm: Communicator | None = None,
        sync_bn: bool = False,
        lr_scaling: LinearScaling | None = None,
    ) -> RunSetup:
        """Check what can be checked before any data are read (one-line errors)."""
        comm = comm or world()
        par = None
        if comm.size > 1 or sync_bn or lr_scaling is not None:
            par = DataParallel(comm, backend, sync_bn=sync_bn, lr_scaling=lr_scaling)
            par.check_batch(batch_size)
        if out_dir is None:
            if resume:
                raise ValueError("resume=True needs the out_dir of the run to continue")
            return cls(comm, par)
        folder = RunFolder(out_dir)
        saved: dict = {}
        if resume:
            folder.check_resumable()
            saved = folder.saved_meta()
            check_resume_ranks(folder.path, saved, comm.size)
        else:
            folder.check_new(probe=comm.is_root)
        return cls(comm, par, folder, resume, saved)

    def parallel_meta(self) -> dict:
        """The data-parallel facts a run records (and a resume must match)."""
        par = self.parallel
        if par is None:
            return {}
        scaling = par.lr_scaling.to_dict() if par.lr_scaling else None
        return {"ranks": self.comm.size, "sync_bn": par.sync_bn, "lr_scaling": scaling}

    def check_same(self, meta: dict, flags: dict[str, str]) -> None:
        """On a resume, the run facts named in `flags` (meta key -> the option that sets
        it, for the message) must be those the run was begun with."""
        if self.resume and self.folder is not None:
            self.folder.check_same(meta, flags)

    def start(
        self,
        model: Network,
        recipe: Recipe,
        train: Dataset,
        val: Dataset | None = None,
        *,
        seed: int = 0,
        meta: dict | None = None,
        callbacks: Iterable[Any] = (),
        rng: str | None = None,
    ) -> Training:
        """The run's `Training` (checkpointed into the folder, continued on a resume)."""
        cbs = list(callbacks)
        if self.folder is not None:
            cbs.append(ModelCheckpoint(self.folder))
        if self.parallel is not None:
            self.parallel.setup(model)  # rank 0's weights on every rank
        t = Training(model, recipe, train, val, seed=seed, callbacks=cbs, meta=meta or {},
                     rng_kind=rng, parallel=self.parallel)  # fmt: skip
        if self.folder is not None and self.resume:
            self.folder.resume(t)
        return t

    def val_metrics(self, model: Network, val: Dataset | None) -> dict:
        """Error and loss of the final weights on the validation split (empty without one)."""
        if val is None:
            return {}
        m = evaluate(model, val, parallel=self.parallel)
        return {"val_error": m["error_rate"], "val_loss": m["loss"]}

    def finish(self, t: Training, metrics: dict) -> None:
        """Write the final weights and run record (rank 0 only), when there is a folder."""
        if self.folder is not None:
            self.folder.save_final(t, metrics)
