"""scripts/train_zoo.py end to end on a tiny budget (weights, metadata, table, resume)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_train_zoo_writes_weights_metadata_and_table(tmp_path, data_dir):
    env = {**os.environ, "ARRAYNET_DATA": str(data_dir)}
    cmd = [
        sys.executable, str(REPO / "scripts" / "train_zoo.py"), "m3", "m5",
        "--max-epochs", "1", "--train-limit", "2000",
        "--runs", str(tmp_path / "runs"), "--models-dir", str(tmp_path / "models"),
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    for name in ("m3", "m5"):
        meta = json.loads((tmp_path / "models" / f"{name}.json").read_text())
        assert meta["epochs_run"] == 1 and meta["epoch_cap"] == 1
        assert meta["seed_epochs"] > 1 and 0 < meta["error_rate"] < 0.5
        assert (tmp_path / "models" / f"{name}.safetensors").stat().st_size > 1000
    table = (tmp_path / "models" / "README.md").read_text()
    assert "| m3 |" in table and "| m5 |" in table and "(1 / 100)" in table
    # running again resumes the finished runs instead of starting over
    p2 = subprocess.run(cmd[:3] + cmd[4:], capture_output=True, text=True, env=env, timeout=600)
    assert p2.returncode == 0 and "[m3] resuming" in p2.stdout


@pytest.mark.slow
def test_train_zoo_picks_a_seed_on_the_validation_split(tmp_path, data_dir):
    env = {**os.environ, "ARRAYNET_DATA": str(data_dir)}
    cmd = [
        sys.executable, str(REPO / "scripts" / "train_zoo.py"), "m4",
        "--max-epochs", "1", "--train-limit", "1000", "--seeds", "0,1,2",
        "--runs", str(tmp_path / "runs"), "--models-dir", str(tmp_path / "models"),
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode != 0 and "needs a validation split" in p.stderr
    p = subprocess.run([*cmd, "--val-split", "500"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    meta = json.loads((tmp_path / "models" / "m4.json").read_text())
    cands = meta["selection"]["candidates"]
    assert [c["seed"] for c in cands] == [0, 1, 2]
    best = min(cands, key=lambda c: (c["val_error"], c["val_loss"], c["seed"]))
    assert meta["seed"] == meta["selection"]["selected_seed"] == best["seed"]
    assert meta["error_rate"] == best["error_rate"] and meta["val_split"] == 500
    assert len({c["val_loss"] for c in cands}) == 3  # the seeds really differ
    assert cands[0]["out"] == str(tmp_path / "runs" / "m4-s0")
    assert f"{best['seed']} (best val of 3)" in (tmp_path / "models" / "README.md").read_text()


@pytest.mark.parametrize(
    "script,args,text",
    [
        ("train_zoo.py", ["m4", "--backend", "bogus"], "train_zoo: error: unknown backend"),
        ("train_zoo.py", ["m4", "--max-epochs", "-1"], "train_zoo: error: --epochs wants"),
        ("train_zoo.py", ["m4", "--val-split", "60000"], "train_zoo: error: --val-split"),
        ("ship_best.py", ["no/such/run"], "ship_best: error:"),
        ("ship_ensemble.py", ["a.safetensors", "b.safetensors"], "ship_ensemble: error:"),
    ],
)
@pytest.mark.slow
def test_scripts_bad_input_is_one_line(script, args, text, tmp_path, data_dir):
    extra = ["--models-dir", str(tmp_path / "models"), "--data-dir", str(data_dir)]
    if script == "train_zoo.py":
        extra += ["--runs", str(tmp_path / "runs")]
    p = subprocess.run([sys.executable, str(REPO / "scripts" / script), *args, *extra],
                       capture_output=True, text=True, cwd=REPO, timeout=600)  # fmt: skip
    assert p.returncode != 0 and "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], p.stderr
    assert not (tmp_path / "runs" / "m4" / "model.safetensors").exists()


@pytest.mark.slow
def test_table_names_an_unreadable_record(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(REPO / "models", models)
    script = [sys.executable, str(REPO / "scripts" / "train_zoo.py"), "--table-only"]
    p = subprocess.run([*script, "--models-dir", str(models)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (models / "README.md").read_text() == (REPO / "models" / "README.md").read_text()
    for bad in ("{}", "{bad", '{"model": "m7", "error_rate": "x"}'):
        (models / "m7.json").write_text(bad)
        p = subprocess.run([*script, "--models-dir", str(models)], capture_output=True, text=True)
        assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
        assert f"{models / 'm7.json'}: " in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_a_retrain_with_another_recipe_keeps_the_replaced_figures(tmp_path, data_dir):
    """The record a retrain replaces is kept under 'before' when its recipe differs (here
    the optimizer), and shown in the table; a rerun of the same recipe keeps it."""
    from arraynet.zoo import recipe_for

    models = tmp_path / "models"
    models.mkdir()
    old_recipe = {**recipe_for("m4").to_dict(), "optimizer": "adam-seed-const"}
    old = {"model": "m4", "error_rate": 0.0293, "correct": 9707, "total": 10000,
           "epochs_run": 30, "train_seconds": 60.0, "seed": 0, "recipe": old_recipe}  # fmt: skip
    (models / "m4.json").write_text(json.dumps(old))
    env = {**os.environ, "ARRAYNET_DATA": str(data_dir)}
    cmd = [
        sys.executable, str(REPO / "scripts" / "train_zoo.py"), "m4", "--max-epochs", "1",
        "--train-limit", "500", "--runs", str(tmp_path / "runs"), "--models-dir", str(models),
    ]  # fmt: skip
    for _ in range(2):  # the second run resumes the finished run: same recipe
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert p.returncode == 0, p.stderr
        rec = json.loads((models / "m4.json").read_text())
        assert rec["recipe"]["optimizer"] == "adam-seed" and rec["epochs_run"] == 1
        assert rec["before"]["correct"] == 9707
        assert rec["before"]["recipe"]["optimizer"] == "adam-seed-const"
        row = next(x for x in (models / "README.md").read_text().splitlines() if "| m4 |" in x)
        assert "adam-seed 0.01" in row and row.endswith(
            "| 2.93 % (9,707/10,000), adam-seed-const 0.01 |"
        )
