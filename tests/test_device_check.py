"""scripts/device_check.py in CPU mode, at the tiniest sizes, writes its one JSON report;
its new pieces (the gpu_tests step's summary parsing and missing pytest, training with the
own CUDA kernels) and scripts/bench_kernels.py on cuda-on-cpu, quickly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

OPS = {"conv2d_forward", "conv2d_backward", "batchnorm_forward", "batchnorm_backward",
       "batchnorm_inference", "maxpool_forward", "maxpool_backward", "softmax_cross_entropy",
       "column_sum", "adam_update"}  # fmt: skip


def _script(name: str):
    """scripts/<name>.py as a module (scripts/ on sys.path, as when it runs as a script)."""
    scripts = str(REPO / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    own = doc["parity"]["m12"]["numpy-vs-cuda-on-cpu"]  # arraynet's CUDA source, built for the host
    assert own["ok"] is True and own["cuda_kernels"] is True
    assert doc["parity_cuda_kernels_ok"] is True
    tests = doc["gpu_tests"]  # pytest -m gpu: every test skips without a CUDA device
    assert tests["returncode"] == 0 and tests["failed"] == 0 and tests["passed"] == 0
    assert tests["skipped"] > 0 and "skipped" in tests["summary"] and tests["tail"]
    assert "tests/test_kernels.py" in tests["files"]
    kernels = doc["kernels"]  # own CUDA kernels against the portable definitions
    assert kernels["backend"] == "cuda-on-cpu" and kernels["default_kernels"] == "Kernels"
    assert kernels["parity_ok"] is True and kernels["batches"] == [2]
    assert {r["op"] for r in kernels["rows"]} == OPS
    assert all(r["ok"] and r["ms"]["cuda"] > 0 and r["default_over_cuda"] > 0
               for r in kernels["rows"])  # fmt: skip
    assert set(kernels["median_default_over_cuda"]) == OPS
    assert doc["bench"]["arraynet"]["b16"]["train_img_per_s"] > 0
    assert doc["tf32"] is False and doc["bench"]["tf32"] is False
    assert doc["bench"]["arraynet_cuda_kernels"]["b16"]["kernels"] == "CudaKernels"
    assert doc["bench"]["cuda_kernels_over_default"]["train_b16"] > 0
    if "torch" in doc["versions"]:  # arraynet's layers on torch tensors, against PyTorch
        assert doc["bench"]["arraynet_torch"]["b16"]["kernels"] == "TorchKernels"
        assert doc["bench"]["ratios"]["torch_backend_train_b16"] > 0
        assert doc["bench"]["ratios"]["cuda_kernels_train_b16"] > 0
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
    assert train["train_kernels"] == "default" and train["kernels"] == "NumpyKernels"
    assert doc["versions"]["numpy"] and doc["date"] and "device_check.py" in doc["command"]


SUMMARIES = [
    ("x\n47 skipped, 89 deselected in 3.37s\n", "47 skipped, 89 deselected in 3.37s",
     {"skipped": 47, "deselected": 89}),
    ("F.\n=== 1 failed, 40 passed, 2 skipped, 1 error in 75.20s (0:01:15) ===\n",
     "1 failed, 40 passed, 2 skipped, 1 error in 75.20s (0:01:15)",
     {"failed": 1, "passed": 40, "skipped": 2, "errors": 1}),
    ("no tests ran in 0.01s\n", "no tests ran in 0.01s", {}),
    ("Traceback ...\nModuleNotFoundError: No module named 'pytest'\n", None, {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "counts"), SUMMARIES, ids=["skipped", "failed", "none-ran", "crashed"]
)
def test_pytest_summary_line_and_counts(text: str, line: str | None, counts: dict) -> None:
    assert _script("device_check").pytest_summary(text) == (line, counts)


def test_missing_pytest_is_one_line_and_the_next_step_runs(tmp_path: Path, monkeypatch) -> None:
    dc = _script("device_check")
    monkeypatch.setattr(dc, "_has", lambda module: module != "pytest")
    args = dc.parse_args(["--cpu", "--out", str(tmp_path)])
    assert args.steps[0] == "gpu_tests" and "kernels" in args.steps
    doc = {"errors": {}, "tracebacks": {}, "step_seconds": {}, "step_status": {}}
    rep = dc.Report(tmp_path / "device_check.json", doc)
    rep.step("gpu_tests", lambda: dc.step_gpu_tests(args, rep, {}))
    rep.step("next", lambda: None)
    doc = json.loads(rep.path.read_text())
    assert doc["errors"]["gpu_tests"].startswith("RuntimeError: pytest is not installed")
    assert "\n" not in doc["errors"]["gpu_tests"]
    assert doc["step_status"] == {"gpu_tests": "error", "next": "ok"}


def test_train_kernels_cuda_trains_on_the_own_kernels(tmp_path: Path, monkeypatch) -> None:
    """`--train-kernels cuda` hands training a backend with CudaKernels (on the CPU:
    cuda-on-cpu) and records it; the training itself is stubbed (it is slow there)."""
    import arraynet.jobs

    dc = _script("device_check")
    seen = {}

    def fake_train(model, b, **kw):
        seen["kernels"] = type(b.kernels).__name__
        kw["callbacks"]["on_epoch"]({"epoch": 1, "train_loss": 1.0, "seconds": 0.1,
                                     "img_per_s": 1.0})  # fmt: skip
        return {"error_rate": 0.5, "correct": 1, "total": 2, "test_loss": 1.0, "epochs_run": 1,
                "train_seconds": 0.1}  # fmt: skip

    monkeypatch.setattr(arraynet.jobs, "train_model", fake_train)
    monkeypatch.setattr(dc, "require_mnist", lambda args: None)
    monkeypatch.setenv("DEVICE_CHECK_TRAIN_KERNELS", "cuda")
    args = dc.parse_args(["--cpu", "--out", str(tmp_path), "--train-out", str(tmp_path / "t")])
    assert args.train_kernels == "cuda"
    rep = dc.Report(tmp_path / "device_check.json", {})
    dc.step_train(args, rep, {"backend": None})
    train = rep.doc["train"]  # (saved after every epoch, and by main after the step)
    assert json.loads(rep.path.read_text())["train"]["kernels"] == "CudaKernels"
    assert seen["kernels"] == "CudaKernels"
    assert train["train_kernels"] == "cuda" and train["kernels"] == "CudaKernels"
    assert train["backend"] == "cuda-on-cpu" and train["error_rate"] == 0.5
    monkeypatch.setenv("DEVICE_CHECK_TRAIN_KERNELS", "fast")
    with pytest.raises(SystemExit):
        dc.parse_args(["--cpu"])


def test_bench_kernels_alone_on_cuda_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "kernels.json"
    ops = "column_sum,softmax,adam,m14 conv3"
    cmd = [sys.executable, str(REPO / "scripts" / "bench_kernels.py"), "--backend",
           "cuda-on-cpu", "--ops", ops, "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "default ms" in proc.stdout and "column_sum" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["backend"] == "cuda-on-cpu" and doc["default_kernels"] == "Kernels"
    assert doc["batches"] == [2] and doc["cuda_kernels"] == "CudaKernels(cpu)"
    want = {"column_sum", "softmax_cross_entropy", "adam_update", "conv2d_forward",
            "conv2d_backward"}  # fmt: skip
    assert {r["op"] for r in doc["rows"]} == want
    assert all(r["ok"] and r["max_abs_diff"] <= 1e-4 * max(1, r["max_abs_ref"])
               for r in doc["rows"])  # fmt: skip
