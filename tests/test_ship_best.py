"""scripts/ship_best.py: the best single model is chosen on the validation split."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from arraynet.backends import get_backend
from arraynet.io import load_arrays
from arraynet.jobs import evaluate_weights, train_model
from arraynet.zoo import recipe_for
from tests.conftest import REPO


def _run(tmp_path, data_dir, seed: int, val_split: int) -> str:
    out = tmp_path / f"run-s{seed}-v{val_split}"
    train_model(
        "m4", get_backend("numpy"), seed=seed, out_dir=out, data_dir=str(data_dir),
        val_split=val_split, train_limit=1000, epochs=1, quiet_data=True,
    )  # fmt: skip
    return str(out)


@pytest.mark.slow
def test_ship_best_picks_on_validation_and_records_the_choice(tmp_path, data_dir):
    runs = [_run(tmp_path, data_dir, s, 500) for s in (0, 1, 2)]
    models = tmp_path / "models"
    script = [sys.executable, str(REPO / "scripts" / "ship_best.py")]
    args = [*runs, "--models-dir", str(models), "--data-dir", str(data_dir)]
    p = subprocess.run([*script, *args], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    rec = json.loads((models / "best.json").read_text())
    cands = rec["selection"]["candidates"]
    assert [c["run"] for c in cands] == runs and len({c["val_loss"] for c in cands}) == 3
    chosen = min(cands, key=lambda c: (c["val_error"], c["val_loss"], c["run"]))
    assert rec["selection"]["chosen"] == chosen["run"] and rec["layout"] == "m4"
    assert rec["error_rate"] == chosen["test_error"]  # measured after the choice, same weights
    again = evaluate_weights([str(models / "best.safetensors")], get_backend("numpy"), data_dir)
    assert again["error_rate"] == rec["error_rate"]
    assert rec["history"] and rec["recipe"]["optimizer"] and rec["hardware"]["cores"]
    assert "## Best single model" in (models / "README.md").read_text()


def test_ship_best_refuses_a_run_without_a_validation_split(tmp_path, data_dir):
    run = _run(tmp_path, data_dir, 0, 0)
    script = [sys.executable, str(REPO / "scripts" / "ship_best.py")]
    p = subprocess.run(
        [*script, run, "--models-dir", str(tmp_path / "m"), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 1 and "without --val-split" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()


@pytest.mark.slow
def test_ship_best_retrain_ships_the_full_run_of_the_chosen_recipe(tmp_path, data_dir):
    runs = [_run(tmp_path, data_dir, s, 500) for s in (0, 1)]
    full = _run(tmp_path, data_dir, 0, 0)
    models = tmp_path / "models"
    script = [sys.executable, str(REPO / "scripts" / "ship_best.py")]
    args = [*runs, "--retrain", full, "--models-dir", str(models), "--data-dir", str(data_dir)]
    p = subprocess.run([*script, *args], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    rec = json.loads((models / "best.json").read_text())
    assert rec["selection"]["retrained"]["run"] == full
    assert rec["selection"]["chosen"] in runs
    assert (models / "best.safetensors").read_bytes() == (
        tmp_path / "run-s0-v0" / "model.safetensors"
    ).read_bytes()
    again = evaluate_weights([f"{full}/model.safetensors"], get_backend("numpy"), data_dir)
    assert rec["error_rate"] == again["error_rate"] and len(rec["history"]) == 1
    assert "retrain" in (models / "README.md").read_text()


@pytest.mark.slow
def test_ship_best_retrain_refuses_a_different_recipe(tmp_path, data_dir):
    run = _run(tmp_path, data_dir, 0, 500)
    other = tmp_path / "other"
    train_model(
        "m4", get_backend("numpy"), seed=0, out_dir=other, data_dir=str(data_dir),
        train_limit=1000, epochs=1, quiet_data=True,
        recipe=recipe_for("m4").with_overrides(lr=0.5),
    )  # fmt: skip
    script = [sys.executable, str(REPO / "scripts" / "ship_best.py")]
    args = [run, "--retrain", str(other), "--models-dir", str(tmp_path / "m")]
    p = subprocess.run(
        [*script, *args, "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 1 and "recipe differs" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()


@pytest.mark.slow
def test_ship_ensemble_records_a_row_that_evaluate_reproduces(tmp_path, data_dir):
    members = [str(REPO / "models" / f"{m}.safetensors") for m in ("m3", "m5")]
    models = tmp_path / "models"
    script = [sys.executable, str(REPO / "scripts" / "ship_ensemble.py")]
    args = [*members, "--models-dir", str(models), "--data-dir", str(data_dir), "--why", "test"]
    p = subprocess.run([*script, *args], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    rec = json.loads((models / "ensemble.json").read_text())
    again = evaluate_weights(members, get_backend("numpy"), data_dir)
    assert rec["error_rate"] == again["error_rate"] and rec["total"] == 10000
    alone = [evaluate_weights([m], get_backend("numpy"), data_dir) for m in members]
    assert [m["error_rate"] for m in rec["members"]] == [a["error_rate"] for a in alone]
    assert "| ensemble | m3, m5 |" in (models / "README.md").read_text()
    one = subprocess.run([*script, members[0]], capture_output=True, text=True, timeout=600)
    assert one.returncode == 1 and "at least two" in one.stderr
    # an unreadable record in the models folder stops it before it writes anything
    (models / "ensemble.json").unlink()
    table = (models / "README.md").read_text()
    (models / "best.json").write_text("{not json")
    bad = subprocess.run([*script, *args], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and bad.stderr.startswith("ship_ensemble: error:"), bad.stderr
    assert len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr
    assert not (models / "ensemble.json").exists()
    assert (models / "README.md").read_text() == table


@pytest.mark.slow
def test_ship_best_scores_an_averaging_run_by_its_averaged_weights(tmp_path, data_dir):
    """A run ending in weight averaging (swa_from) is chosen on its final, averaged weights,
    not on the last epoch's raw ones."""
    base = _run(tmp_path, data_dir, 0, 500)
    swa = tmp_path / "swa"
    train_model(
        "m4", get_backend("numpy"), seed=0, out_dir=swa, data_dir=str(data_dir),
        val_split=500, train_limit=1000, epochs=3, quiet_data=True,
        recipe=recipe_for("m4").with_overrides(swa_from=1),
        init=f"{base}/model.safetensors",
    )  # fmt: skip
    models = tmp_path / "models"
    script = [sys.executable, str(REPO / "scripts" / "ship_best.py")]
    args = [base, str(swa), "--models-dir", str(models), "--data-dir", str(data_dir)]
    p = subprocess.run([*script, *args], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    rec = json.loads((models / "best.json").read_text())
    cand = rec["selection"]["candidates"][1]
    _, meta = load_arrays(swa / "model.safetensors")
    assert cand["val_loss"] == meta["metrics"]["val_loss"] != meta["history"][-1]["val_loss"]
    if rec["selection"]["chosen"] == str(swa):
        assert rec["init"]["weights"] == f"{base}/model.safetensors"
