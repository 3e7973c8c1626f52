"""Sweeps: many independent trainings (zoo entries or layout files x seeds x recipe
overrides) as Ray Tune trials, each in its own run folder, with the results in one table
(JSON and CSV).

A trial trains in-process with `arraynet.jobs.train_model` on one CPU thread. A trial that
fails is retried by Tune (`max_failures`) and continues from its run folder's last
checkpoint; running the same sweep again reuses every finished trial's result and resumes
the unfinished ones.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from arraynet.files import atomic_write_bytes, atomic_write_json
from arraynet.train.recipe import Recipe
from arraynet.zoo.layouts import model_and_recipe

COLUMNS = (
    "trial", "model", "seed", "overrides", "status", "error_rate", "test_loss", "epochs_run",
    "best_epoch", "train_seconds", "resumed", "out", "error",
)  # fmt: skip


def parse_overrides(text: str) -> dict:
    """'lr=0.001,batch_size=32' -> {'lr': 0.001, 'batch_size': 32}, checked against the
    recipe's fields (ValueError naming the first bad one)."""
    names = {f.name for f in fields(Recipe)}
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise ValueError(
                f"--override wants KEY=VALUE[,KEY=VALUE] with recipe keys "
                f"({', '.join(sorted(names))}), not {part!r}"
            )
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value.strip()
    return out


def plan(
    models: list[str], seeds: list[int], overrides: list[dict], epochs: int | None, out: Path
) -> list[dict]:
    """One trial config per (model, seed, override set), each recipe checked up front. A
    model is a zoo entry or a layout file (its own recipe, or the default one)."""
    if not models or not seeds:
        raise ValueError("a sweep needs at least one --model and one seed")
    trials = []
    for model in models:
        model, layout, base = model_and_recipe(model)
        for ov in overrides or [{}]:
            recipe = base.with_overrides(**ov, epochs=epochs).validate()
            for seed in seeds:
                tid = _slug(f"{model}-seed{seed}" + "".join(f"-{k}{v}" for k, v in ov.items()))
                trials.append({
                    "trial": tid, "model": model, "seed": seed, "overrides": ov,
                    "recipe": recipe.to_dict(), "out": str(out / "trials" / tid),
                    **({"layout": layout} if layout is not None else {}),
                })  # fmt: skip
    ids = [t["trial"] for t in trials]
    if len(set(ids)) != len(ids):
        raise ValueError("two trials of the sweep are the same (repeated model, seed or override)")
    return trials


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)[:120]


def run_trial(config: dict) -> dict:
    """Train one trial (or pick up its finished result, or resume it); returns its row."""
    from arraynet.backends import get_backend
    from arraynet.io import load_arrays
    from arraynet.jobs import train_model
    from arraynet.parallel.comm import Communicator

    out = Path(config["out"])
    row = {k: config[k] for k in ("trial", "model", "seed")}
    row.update(overrides=json.dumps(config["overrides"], sort_keys=True), out=str(out))
    final = out / "model.safetensors"
    if final.is_file():
        _, meta = load_arrays(final)
        return {**row, **_metrics(meta.get("metrics") or {}), "status": "done", "resumed": False}
    resume = (out / "state.json").is_file()
    res = train_model(
        config["model"], get_backend("numpy", threads=config.get("threads", 1)),
        recipe=Recipe.from_dict(config["recipe"]), seed=config["seed"], out_dir=out,
        resume=resume, data_dir=config.get("data_dir"), train_limit=config.get("train_limit"),
        quiet_data=True, comm=Communicator(), layout=config.get("layout"),
    )  # fmt: skip
    return {**row, **_metrics(res), "status": "done", "resumed": resume}


def _metrics(res: dict) -> dict:
    keys = ("error_rate", "test_loss", "epochs_run", "best_epoch", "train_seconds")
    return {k: res.get(k) for k in keys}


def _tune_trainable(config: dict) -> None:
    from ray import tune

    tune.report(run_trial(config))


def run_sweep(
    trials: list[dict],
    out: Path,
    *,
    ray: str = "local",
    num_cpus: int = 2,
    max_failures: int = 2,
    data_dir: str | None = None,
    train_limit: int | None = None,
) -> list[dict]:
    """Run `trials` on Ray Tune (`ray='local'` starts Ray here with `num_cpus`, one CPU a
    trial; otherwise it is the address of a running cluster); writes out/results.json and
    out/results.csv and returns the rows, in plan order."""
    # Ray reads these when it is imported. Under `uv run`, Ray would otherwise build each
    # worker a fresh environment from the project with uv (a copy of the work tree, with
    # uv's default groups only: no Ray in it, so every worker dies at start).
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # (verbose=0 then prints nothing)
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray as ray_mod
        from ray import tune
    except ImportError as e:
        msg = f"sweeps need Ray Tune ({e}); install: pip install 'arraynet[sweep]'"
        raise ValueError(msg) from None
    out.mkdir(parents=True, exist_ok=True)
    data = str(Path(data_dir).resolve()) if data_dir else os.environ.get("ARRAYNET_DATA")
    env = {"ARRAYNET_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    if data:
        env["ARRAYNET_DATA"] = data
    init = {"include_dashboard": False, "log_to_driver": False, "logging_level": "error",
            "runtime_env": {"env_vars": env}}  # fmt: skip
    if ray == "local":
        ray_mod.init(num_cpus=num_cpus, **init)
    else:
        ray_mod.init(address=ray, **init)
    try:
        space = {"trial": tune.grid_search([t["trial"] for t in trials])}
        by_id = {t["trial"]: {**t, "data_dir": data, "train_limit": train_limit} for t in trials}

        def trainable(cfg: dict) -> None:
            _tune_trainable(by_id[cfg["trial"]])

        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=max(1, num_cpus)),
            run_config=tune.RunConfig(
                name="tune", storage_path=str((out / "ray").resolve()), verbose=0,
                log_to_file=True,  # each trial's stdout and stderr in its folder under out/ray
                failure_config=tune.FailureConfig(max_failures=max_failures),
            ),
        )  # fmt: skip
        grid = tuner.fit()
    finally:
        ray_mod.shutdown()
    rows_by_id: dict[str, dict] = {}
    for r in grid:
        tid = r.config["trial"]
        if r.error is not None or not r.metrics or "status" not in r.metrics:
            t = by_id[tid]
            rows_by_id[tid] = {
                "trial": tid, "model": t["model"], "seed": t["seed"],
                "overrides": json.dumps(t["overrides"], sort_keys=True), "status": "failed",
                "out": t["out"], "error": str(r.error).strip().splitlines()[-1][:300],
            }  # fmt: skip
        else:
            rows_by_id[tid] = {k: r.metrics.get(k) for k in COLUMNS if k in r.metrics}
    rows = [{c: rows_by_id[t["trial"]].get(c) for c in COLUMNS} for t in trials]
    write_table(rows, out)
    return rows


def write_table(rows: list[dict], out: Path) -> None:
    """results.json and results.csv in `out` (each written atomically)."""
    atomic_write_json(out / "results.json", {"trials": rows})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(out / "results.csv", buf.getvalue().encode())
