"""Sweeps: the plan, a trial's resume, and a 2-trial sweep on local Ray."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from arraynet.backends import get_backend
from arraynet.io import load_arrays
from arraynet.jobs import train_model
from arraynet.sweep import parse_overrides, plan, run_trial
from arraynet.zoo import recipe_for
from tests.conftest import REPO


def test_overrides_parse_and_bad_keys_are_named():
    assert parse_overrides("lr=0.001, batch_size=32,schedule=cosine") == {
        "lr": 0.001, "batch_size": 32, "schedule": "cosine"
    }  # fmt: skip
    with pytest.raises(ValueError, match="--override wants KEY=VALUE"):
        parse_overrides("learning_rate=1")


def test_plan_is_models_times_overrides_times_seeds(tmp_path):
    trials = plan(["m4", "m3"], [0, 1], [{}, {"lr": 0.05}], 1, tmp_path)
    assert len(trials) == 8 and len({t["out"] for t in trials}) == 8
    assert {t["recipe"]["epochs"] for t in trials} == {1}
    assert trials[2]["trial"] == "m4-seed0-lr0.05" and trials[2]["recipe"]["lr"] == 0.05
    with pytest.raises(ValueError, match="--batch-size wants"):
        plan(["m4"], [0], [{"batch_size": 0}], 1, tmp_path)
    with pytest.raises(ValueError, match="the same"):
        plan(["m4", "m4"], [0], [], 1, tmp_path)


def test_a_trial_resumes_its_checkpoint_then_reuses_its_result(tmp_path, data_dir):
    (cfg,) = plan(["m4"], [0], [], 2, tmp_path)
    cfg.update(data_dir=str(data_dir), train_limit=128)
    b = get_backend("numpy", threads=1)
    train_model("m4", b, recipe=recipe_for("m4").with_overrides(epochs=2), out_dir=cfg["out"],
                data_dir=str(data_dir), train_limit=128, epochs=1, quiet_data=True)  # fmt: skip
    (tmp_path / "trials" / "m4-seed0" / "model.safetensors").unlink()  # as if it had died
    row = run_trial(cfg)
    assert row["status"] == "done" and row["resumed"] is True and row["epochs_run"] == 2
    again = run_trial(cfg)
    assert again["resumed"] is False and again["error_rate"] == row["error_rate"]


@pytest.mark.slow
def test_two_trial_sweep_on_local_ray_writes_its_table(tmp_path, data_dir):
    out = tmp_path / "sw"
    env = {**os.environ, "ARRAYNET_DATA": str(data_dir)}
    p = subprocess.run(
        [sys.executable, "-m", "arraynet.cli", "sweep", "--model", "m4", "--seeds", "0,1",
         "--epochs", "1", "--train-limit", "128", "--ray", "local", "--out", str(out), "--json"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert [t["trial"] for t in res["trials"]] == ["m4-seed0", "m4-seed1"]
    assert all(t["status"] == "done" and 0 < t["error_rate"] < 0.9 for t in res["trials"])
    assert json.loads((out / "results.json").read_text()) == {"trials": res["trials"]}
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == ["m4-seed0", "m4-seed1"]
    for t in res["trials"]:
        assert (tmp_path / "sw" / "trials" / t["trial"] / "model.safetensors").is_file()
    # each Ray trial is the one-process run of its model and seed, bitwise
    direct = train_model("m4", get_backend("numpy", threads=1), seed=1, out_dir=tmp_path / "one",
                         recipe=recipe_for("m4").with_overrides(epochs=1),
                         data_dir=str(data_dir), train_limit=128, quiet_data=True)  # fmt: skip
    trial = next(t for t in res["trials"] if t["trial"] == "m4-seed1")
    assert trial["error_rate"] == direct["error_rate"]
    a, _ = load_arrays(out / "trials" / "m4-seed1" / "model.safetensors")
    b, _ = load_arrays(tmp_path / "one" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_a_layout_file_is_a_trial_that_trains_its_layout(tmp_path, data_dir):
    """--model takes layout files too: the trial trains the file's layout with its recipe
    (here m4's, exported), to the zoo entry's numbers."""
    from arraynet.zoo.layouts import zoo_layout

    doc = {**zoo_layout("m4"), "name": "mine"}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(doc))
    (cfg,) = plan([str(path)], [0], [{"lr": 0.05}], 1, tmp_path / "sw")
    assert cfg["trial"] == "mine-seed0-lr0.05" and cfg["model"] == "mine"
    assert cfg["layout"]["layers"] == doc["layers"] and cfg["recipe"]["lr"] == 0.05
    cfg.update(data_dir=str(data_dir), train_limit=128)
    row = run_trial(cfg)
    assert row["status"] == "done" and row["epochs_run"] == 1
    zoo = train_model("m4", get_backend("numpy", threads=1), out_dir=tmp_path / "zoo",
                      recipe=recipe_for("m4").with_overrides(lr=0.05, epochs=1),
                      data_dir=str(data_dir), train_limit=128, quiet_data=True)  # fmt: skip
    assert row["error_rate"] == zoo["error_rate"]
