"""Run folders: the one set of rules for a new run, a resume and what a run saves.

A run folder holds `checkpoint.safetensors` (model, optimizer, weight averages, the
early-stopping window and, in its metadata, the whole run state), `state.json` (a readable
copy of that state, written after it) and at the end `model.safetensors`. The CLI,
`arraynet.jobs.train_model` and `Sequential.fit` all go through `RunFolder`.

In a data-parallel run (`Training.parallel`) every rank calls the same methods: rank 0
alone writes, and the checkpoint keeps every rank's random stream (`rank_rng_states`), so
a resume on as many ranks continues each rank's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from arraynet import __version__
from arraynet.backends.device_rng import rng_kind_of
from arraynet.io import WeightsError, atomic_write_json, load_arrays, save_arrays, save_model
from arraynet.train.recipe import Recipe

RUN_FILES = ("state.json", "checkpoint.safetensors", "model.safetensors")
Training = Any  # arraynet.train.loop.Training


class RunFolder:
    """A run folder at `path` (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._state: dict | None = None

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.safetensors"

    @property
    def weights(self) -> Path:
        return self.path / "model.safetensors"

    # -- a new run -------------------------------------------------------------------
    def check_new(self, probe: bool = True) -> None:
        """A fresh run's folder must not hold another run (or weights), and must be
        writable: both are checked before any training, so nothing is lost or wasted.
        `probe=False` skips the write test (data-parallel ranks other than 0 write nothing)."""
        out = self.path
        found = [f for f in RUN_FILES if (out / f).exists()]
        if found == ["checkpoint.safetensors"]:  # a save cut between its two files
            raise ValueError(
                f"{out} holds checkpoint.safetensors without state.json (an interrupted save): "
                "continue it with --resume (the checkpoint holds the whole run state), or "
                "pick another --out"
            )
        if found:
            raise ValueError(
                f"{out} already holds {found[0]}: continue that run with --resume, "
                "or pick another --out"
            )
        if not probe:
            return
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".arraynet-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise ValueError(f"{out}: cannot write the run there ({e.strerror or e})") from None

    # -- a resume --------------------------------------------------------------------
    def check_resumable(self) -> None:
        """There is a run to continue: its checkpoint (which holds the whole state; a save
        cut before its readable copy state.json was written still resumes)."""
        if not self.checkpoint.is_file():
            what = "no checkpoint.safetensors" + (
                "" if (self.path / "state.json").is_file() else " or state.json"
            )
            raise FileNotFoundError(f"{self.path}: nothing to resume ({what})")

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete what killed writes left behind: the temporary files the atomic writes of
        this folder's own files use (`.state.json.*.tmp` ...) and write probes."""
        stale = [
            p for p in self.path.glob(".*")
            if p.is_file() and (
                any(p.name.startswith(f".{f}.") and p.name.endswith(".tmp") for f in RUN_FILES)
                or p.name.startswith(".arraynet-write-test")
            )
        ]  # fmt: skip
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def saved_state(self) -> dict:
        """The run state of the last finished epoch, read once: the checkpoint's own copy,
        or state.json for checkpoints that keep only the epoch (checked to agree)."""
        if self._state is not None:
            return self._state
        self.check_resumable()
        arrays, ck_meta = load_arrays(self.checkpoint)
        state = ck_meta.get("state")
        if not isinstance(state, dict):  # older checkpoints: epoch-only metadata
            if not (self.path / "state.json").is_file():
                raise FileNotFoundError(
                    f"{self.path}: nothing to resume (an older checkpoint.safetensors, which "
                    "keeps only its epoch, and no state.json)"
                )
            path = self.path / "state.json"
            try:
                state = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise WeightsError(f"{path}: cannot resume ({e})") from None
            if not isinstance(state, dict):
                raise WeightsError(f"{path}: cannot resume (not a run state)")
            if ck_meta.get("epoch", state.get("epoch")) != state.get("epoch"):
                raise WeightsError(
                    f"{self.path}: checkpoint.safetensors (epoch {ck_meta['epoch']}) and "
                    f"state.json (epoch {state.get('epoch')}) disagree; cannot resume"
                )
        self._arrays = arrays
        self._state = state
        return state

    def saved_recipe(self) -> Recipe:
        """The recipe the run was begun with."""
        try:
            return Recipe.from_dict(self.saved_state()["recipe"])
        except (KeyError, TypeError) as e:
            raise WeightsError(f"{self.path}: unreadable run state ({e})") from None

    def saved_meta(self) -> dict:
        """The run facts (model, data, split ...) the run was begun with."""
        return self.saved_state().get("meta") or {}

    def check_same(self, meta: dict, flags: dict[str, str]) -> None:
        """Refuse a resume whose run facts differ: `flags` maps a meta key to the option
        that sets it (for the message)."""
        saved = self.saved_meta()
        for key, flag in flags.items():
            if key in saved and saved[key] != meta.get(key):
                if isinstance(saved[key], dict | list):
                    raise ValueError(f"{self.path}: the run was begun with another {flag}")
                raise ValueError(
                    f"{self.path}: the run was begun with {flag} {saved[key]}, not {meta.get(key)}"
                )

    def check_recipe(self, recipe: Recipe, seed: int) -> None:
        """The seed and recipe must be the run's; --epochs may change (a longer run),
        except under cosine decay, whose rates are laid out over the whole run."""
        state = self.saved_state()
        if state.get("seed", seed) != seed:
            raise WeightsError(
                f"{self.path}: the checkpoint was trained with seed {state['seed']}, not "
                f"{seed}; resume with --seed {state['seed']}"
            )
        free = () if recipe.schedule == "cosine" else ("epochs",)
        saved = {k: v for k, v in (state.get("recipe") or {}).items() if k not in free}
        wanted = {k: v for k, v in recipe.to_dict().items() if k not in free}
        diff = sorted(k for k in saved.keys() & wanted.keys() if saved[k] != wanted[k])
        if diff:
            k = diff[0]
            raise WeightsError(
                f"{self.path}: the checkpoint was trained with {k}={saved[k]!r}, not "
                f"{wanted[k]!r}; resume with the same recipe or start a new run folder"
            )

    def resume(self, t: Training) -> None:
        """Continue `t` from the checkpoint (raises WeightsError when unusable); the
        folder's stale temporary files go, and a missing state.json is written again."""
        state = self.saved_state()
        if t.parallel is None or t.parallel.is_root:
            self.remove_stale_temporaries()
            if not (self.path / "state.json").is_file():
                atomic_write_json(self.path / "state.json", state)
        self.check_recipe(t.recipe, t.seed)
        arrays = self._arrays
        b = t.backend

        def part(prefix: str) -> dict:
            n = len(prefix)
            return {k[n:]: b.from_host(v) for k, v in arrays.items() if k.startswith(prefix)}

        try:
            t.model.load_state_dict(part("model."))
        except ValueError as e:
            raise WeightsError(f"{self.path}: checkpoint does not fit the model ({e})") from None
        t.opt.load_state(part("opt."), state["opt_t"])
        if t.ema is not None:
            t.ema.params = part("ema.")
        for cb in t.callbacks:
            cb.restore(t, arrays, state)
        kind = rng_kind_of(state["rng_state"])
        if t.rng.kind != kind:
            if t.rng_kind is not None:  # asked for explicitly
                raise WeightsError(
                    f"{self.path}: the run was begun with --rng {kind}, not --rng {t.rng_kind}"
                )
            t.use_rng(kind)
        t.rng.set_state(state["rng_state"])
        par = t.parallel
        if par is not None and par.size > 1:
            states = state.get("rank_rng_states") or []
            if len(states) != par.size:
                raise WeightsError(
                    f"{self.path}: the checkpoint holds {len(states) or 1} rank(s)' random "
                    f"streams, not {par.size}; resume with as many ranks as it was trained on"
                )
            t.rng.set_state(states[par.rank])
        t.shuffle.set_state(state["shuffle_state"])
        t.epoch = state["epoch"]
        t.history = state["history"]
        t.stopped = state["stopped"]
        t.elapsed = state.get("elapsed", 0.0)

    # -- saving ----------------------------------------------------------------------
    def save_checkpoint(self, t: Training) -> None:
        """checkpoint.safetensors (arrays, with the state in its metadata) + state.json."""
        par = t.parallel
        rank_rng = par.gather_json(t.rng.get_state()) if par is not None and par.size > 1 else None
        if par is not None and not par.is_root:
            return  # rank 0 alone writes
        b = t.backend
        arrays = {f"model.{k}": b.to_host(v) for k, v in t.model.state_dict().items()}
        arrays.update({f"opt.{k}": b.to_host(v) for k, v in t.opt.state_dict().items()})
        if t.ema is not None:
            arrays.update({f"ema.{k}": b.to_host(v) for k, v in t.ema.params.items()})
        extra: dict = {}
        for cb in t.callbacks:
            arrays.update(cb.checkpoint_arrays(t))
            extra.update(cb.checkpoint_state(t))
        state = {
            "epoch": t.epoch,
            "stopped": t.stopped,
            "elapsed": t.elapsed,
            "history": t.history,
            "rng_state": t.rng.get_state(),
            "shuffle_state": t.shuffle.get_state(),
            "opt_t": t.opt.t,
            "es_window": None,
            "swa_count": 0,
            **extra,
            "recipe": t.recipe.to_dict(),
            "seed": t.seed,
            "meta": t.meta,
            "arraynet_version": __version__,
        }
        if rank_rng is not None:
            state["rank_rng_states"] = rank_rng  # every rank's dropout/augmentation stream
        # The checkpoint carries the whole state, so weights and state change in one atomic
        # rename; state.json is a readable copy written after it.
        save_arrays(self.checkpoint, arrays, {"epoch": t.epoch, "state": state})
        atomic_write_json(self.path / "state.json", state)

    def save_final(self, t: Training, metrics: dict) -> None:
        """model.safetensors: the final weights with layout, recipe, metrics, run facts
        (rank 0 writes)."""
        if t.parallel is not None and not t.parallel.is_root:
            return
        meta = {
            **t.meta,
            "recipe": t.recipe.to_dict(),
            "metrics": metrics,
            "history": t.history,
            "backend": t.backend.name,
            "device": t.backend.device_name(),
            "tf32": t.backend.tf32,
            "arraynet_version": __version__,
            "seed": t.seed,
        }
        save_model(self.weights, t.model, meta)
