"""scripts/device_check.py in CPU mode, at the tiniest sizes, writes its one JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_device_check_cpu_writes_report(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    cmd = [
        sys.executable, str(REPO / "scripts" / "device_check.py"), "--cpu",
        "--out", str(out), "--data-dir", str(data_dir),
        "--models", "m8,m12", "--parity-batch", "4",
        "--batch-sizes", "16", "--bench-steps", "2", "--bench-warmup", "1", "--eval-batch", "32",
        "--train-model", "m9", "--epochs", "1", "--train-limit", "200",
        "--train-out", str(tmp_path / "train"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    report = out / "device_check.json"
    assert report.is_file(), proc.stdout + proc.stderr
    doc = json.loads(report.read_text())
    assert proc.returncode == 0, (doc["errors"], proc.stdout[-3000:])
    assert doc["status"] == "done" and doc["mode"] == "cpu"
    assert doc["device"].startswith("cpu")
    assert doc["parity_ok"] is True
    assert set(doc["parity_max_abs_diff"]) == {"m8", "m12"}
    assert doc["parity"]["m12"]["numpy-vs-array-api-strict"]["ok"] is True
    assert doc["bench"]["arraynet"]["b16"]["train_img_per_s"] > 0
    assert doc["tf32"] is False and doc["bench"]["tf32"] is False
    if "torch" in doc["versions"]:  # arraynet's layers on torch tensors, against PyTorch
        assert doc["bench"]["arraynet_torch"]["b16"]["kernels"] == "TorchKernels"
        assert doc["bench"]["ratios"]["torch_backend_train_b16"] > 0
    sums = doc["reductions"]["rows"]  # column sums: plain against a product with ones
    assert sums and all(r["us"]["ones"] > 0 and r["sum_over_ones"] > 0 for r in sums)
    rng = doc["rng"]  # host against device generator, with the transfers of each step
    assert rng["numpy host"]["train_img_per_s"] > 0 and rng["numpy device"]["train_img_per_s"] > 0
    assert rng["numpy device"]["host_to_device_per_step"] == 0
    if "torch device" in rng:
        assert rng["torch device"]["host_to_device_per_step"] == 0
        assert rng["torch device"]["device_to_host_per_step"] == 0
        assert rng["torch host"]["host_to_device_per_step"] > 0
    train = doc["train"]
    assert 0.0 <= train["error_rate"] <= 1.0 and train["total"] == 10000
    assert train["epochs_run"] == 1 and len(train["seconds_per_epoch"]) == 1
    assert doc["versions"]["numpy"] and doc["date"] and "device_check.py" in doc["command"]
