"""Data-parallel training: sharding, the communicator, and 2-rank runs under mpiexec
(the mpich wheel's) checked against one process."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.io import load_arrays
from arraynet.layers import BatchNorm
from arraynet.parallel.comm import Communicator, launcher_world, rank_seed, world
from arraynet.parallel.data_parallel import DataParallel, LinearScaling, lr_scaling_for
from arraynet.parallel.sharding import epoch_batches
from tests.conftest import REPO

MPIEXEC = Path(sys.executable).parent / "mpiexec"
WORKERS = REPO / "tests"


def mpiexec(n: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`mpiexec -n n ARGS` with one thread a rank; never waits past `timeout`."""
    env = {**os.environ, "ARRAYNET_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [str(MPIEXEC), "-n", str(n), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout,
    )  # fmt: skip


def py(script: str, *args: str) -> list[str]:
    return [sys.executable, str(WORKERS / script), *args]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "arraynet.cli", *args]


# -- sharding and the size-1 communicator (no MPI) ----------------------------------------
def test_shares_laid_end_to_end_are_the_one_process_batches():
    order = np.random.default_rng(0).permutation(40)
    one, one_bounds = epoch_batches(order, 8)
    parts = [epoch_batches(order, 8, r, 2) for r in range(2)]
    for i, (a, z) in enumerate(one_bounds):
        joined = np.concatenate([p[0][p[1][i][0] : p[1][i][1]] for p in parts])
        assert np.array_equal(joined, one[a:z])


def test_a_last_batch_the_ranks_do_not_divide_loses_its_remainder():
    order = np.arange(19)  # batches of 8, 8, 3 over 2 ranks: the 3 becomes 1 + 1
    local0, b0 = epoch_batches(order, 8, 0, 2)
    local1, b1 = epoch_batches(order, 8, 1, 2)
    assert b0 == b1 == [(0, 4), (4, 8), (8, 9)]
    assert local0.tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 16]
    assert local1.tolist() == [4, 5, 6, 7, 12, 13, 14, 15, 17]
    with pytest.raises(ValueError, match="not a multiple of the 3 ranks"):
        epoch_batches(order, 8, 0, 3)


def test_one_process_world_is_single_and_imports_no_mpi():
    code = (
        "import sys; from arraynet.parallel.comm import world; c = world(); "
        "print(c.name, c.size, 'mpi4py' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "SLURM"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["single", "1", "False"], out.stderr


def test_launcher_world_reads_mpich_open_mpi_and_slurm(monkeypatch):
    for k in list(os.environ):
        if k.startswith(("PMI_", "OMPI_", "PMIX_", "SLURM_", "MPI_LOCAL")):
            monkeypatch.delenv(k)
    assert launcher_world() == (0, 1, 0, 1)
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4(x2)")
    assert launcher_world() == (5, 8, 1, 4)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "2")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "3")
    assert launcher_world()[:2] == (2, 3)


def test_rank_seeds_keep_one_process_and_differ_between_ranks():
    assert rank_seed(7, 0, 1) == 7
    seeds = {rank_seed(7, r, 4) for r in range(4)}
    assert len(seeds) == 4 and rank_seed(7, 1, 4) == rank_seed(7, 1, 4)
    assert rank_seed(7, 1, 4) != rank_seed(7, 1, 2)


def test_single_communicator_is_the_identity():
    b = get_backend("numpy", threads=1)
    c = Communicator()
    g = {"w": np.ones((2, 2))}
    assert c.allreduce_mean(g, b) is g
    assert c.sum_floats([1, 2.5]) == [1.0, 2.5]
    assert c.gather_json({"a": 1}) == [{"a": 1}] and c.bcast_json(3) == 3


def test_linear_scaling_warms_up_per_step_to_the_scaled_rate():
    s = lr_scaling_for(256, 32, 2.0)
    assert s.factor == 8.0
    assert s(0.1, 0, 0, 10) == pytest.approx(0.1)
    assert s(0.1, 1, 0, 10) == pytest.approx(0.1 * 4.5)  # half way
    assert s(0.1, 2, 5, 10) == pytest.approx(0.8) and s(0.1, 9, 0, 10) == pytest.approx(0.8)
    assert LinearScaling(4.0, 0)(0.1, 0, 0, 10) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="--lr-warmup-epochs"):
        lr_scaling_for(64, 32, -1.0)


def test_lr_scaling_reaches_the_optimizer_step(tmp_path):
    """A scaling of 2 without warm-up trains exactly as the recipe's rate doubled."""
    import tests.dp_worker as w
    from arraynet.train.loop import Training, fit_loop
    from arraynet.train.recipe import Recipe

    b = get_backend("numpy", threads=1)
    finals = []
    for lr, scaling in ((0.1, LinearScaling(2.0, 0)), (0.2, None)):
        model = w.make_model("plain").build(b, seed=3, dtype="float64")
        par = DataParallel(Communicator(), b, lr_scaling=scaling)
        par.setup(model)
        recipe = Recipe(optimizer="sgd", lr=lr, batch_size=8, epochs=1)
        fit_loop(Training(model, recipe, w.tiny_data(b), seed=3, parallel=par))
        finals.append(model.parameters())
    for k in finals[0]:
        assert np.array_equal(finals[0][k], finals[1][k]), k


def test_sync_bn_with_one_rank_is_plain_batch_norm():
    """The synchronised forward/backward (sum-of-squares about the running mean) with an
    identity 'all-reduce' equals the ordinary batch norm, float64, to rounding."""
    b = get_backend("numpy", fast=False)
    g = np.random.default_rng(1)
    x = g.normal(2.0, 3.0, size=(6, 4, 4, 3))
    dy = g.normal(size=x.shape)
    outs = []
    for sync in (None, lambda a: a):
        bn = BatchNorm(momentum=0.7)
        bn.build((4, 4, 3), _ctx(b))
        bn.params["gamma"] = np.array([1.5, 0.5, -1.0])
        bn.buffers["running_mean"] = np.array([0.3, -0.2, 5.0])
        bn.sync = sync
        y = bn.forward(x, True)
        dx = bn.backward(dy)
        outs.append((y, dx, bn.grads["gamma"], bn.grads["beta"], bn.buffers["running_var"]))
    for a, z in zip(*outs, strict=True):
        np.testing.assert_allclose(a, z, rtol=0, atol=1e-12)


def _ctx(b):
    from arraynet.layers import BuildContext

    return BuildContext(backend=b, rng=b.rng(0), dtype=b.dtype("float64"))


def test_data_parallel_rejects_a_batch_the_ranks_do_not_divide():
    c = Communicator()
    c.size = 2  # (only the arithmetic is used)
    with pytest.raises(ValueError, match="not divisible by the 2 ranks"):
        DataParallel(c, get_backend("numpy")).check_batch(33)


def test_every_json_result_names_ranks_and_communicator(data_dir):
    p = subprocess.run(cli("data", "verify", "--data-dir", str(data_dir), "--json"),
                       capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.splitlines()[-1])
    assert res["ok"] and res["ranks"] == 1 and res["communicator"] == "single"


def test_world_rejects_an_unknown_communicator():
    from arraynet.parallel.comm import CommError

    if world().name == "single":
        with pytest.raises(CommError, match="already single"):
            world("nccl")


# -- under mpiexec (two ranks) -------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "array-api-strict"])
def test_mpi_communicator_operations(backend, tmp_path):
    """numpy: buffers to MPI directly; array-api-strict: staged through the host, the
    path CuPy and torch take without a CUDA-aware MPI."""
    p = mpiexec(2, *py("mpi_comm_worker.py", backend, str(tmp_path)), timeout=60)
    assert p.returncode == 0, p.stderr
    rows = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    for r in rows:
        assert r["size"] == 2 and r["name"] == "mpi" and r["direct"] == (backend == "numpy")
        assert r["mean_a"] == [[1.5] * 3] * 2 and r["mean_b"] == [0.0, 1.5, 3.0, 4.5]
        assert r["mean_b_dtype"] == "float32"  # one flat buffer per dtype, dtypes kept
        assert r["bcast_w"] == [0.0] * 5 and r["bcast_v"] == [10.0]
        assert r["sum"] == [1.0, 2.0] and r["floats"] == [1.0, 1.0]
        assert r["json"] == {"from": 0}
    assert rows[0]["gathered"] == [{"r": 0}, {"r": 1}] and rows[1]["gathered"] is None


def _final(folder: Path) -> dict:
    arrays, _ = load_arrays(folder / "final.safetensors")
    return arrays


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plain", "syncbn"])
def test_two_ranks_train_the_one_process_model(tmp_path, mode):
    """float64, SGD, no dropout or augmentation: 12 steps on 2 ranks with global batch 8
    end within 1e-10 of one process with batch 8 (with --sync-bn, of full-batch batch
    norm), and the ranks hold bitwise equal weights after every step."""
    one = subprocess.run(py("dp_worker.py", str(tmp_path / "one"), mode),
                         capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = mpiexec(2, *py("dp_worker.py", str(tmp_path / "two"), mode), timeout=60)
    assert two.returncode == 0, two.stderr
    rep = json.loads((tmp_path / "two" / "report.json").read_text())
    assert rep["ranks"] == 2 and rep["steps"] == 12
    assert rep["mismatched_steps"] == [[], []] and rep["final_equal"] == [True, True]
    a, b = _final(tmp_path / "one"), _final(tmp_path / "two")
    assert sorted(a) == sorted(b)
    if mode == "syncbn":
        assert "2.running_var" in a  # the running statistics are compared too
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-10, err_msg=k)
        assert np.abs(a[k]).max() > 1e-3  # (not trivially zero)


@pytest.mark.slow
def test_per_rank_batch_norm_is_not_full_batch_batch_norm(tmp_path):
    """The control for the sync-bn test: without synchronisation the 2-rank run differs."""
    code = (
        "import sys, tests.dp_worker as w;"
        "from arraynet.parallel.data_parallel import DataParallel as D;"
        "init = D.__init__;"
        "D.__init__ = lambda s, c, b, sync_bn=False, lr_scaling=None: init(s, c, b);"
        "w.main(__import__('pathlib').Path(sys.argv[1]), 'syncbn')"
    )
    two = mpiexec(2, sys.executable, "-c", code, str(tmp_path / "two"), timeout=60)
    assert two.returncode == 0, two.stderr
    one = subprocess.run(py("dp_worker.py", str(tmp_path / "one"), "syncbn"),
                         capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert one.returncode == 0, one.stderr
    a, b = _final(tmp_path / "one"), _final(tmp_path / "two")
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) > 1e-6
    rep = json.loads((tmp_path / "two" / "report.json").read_text())
    assert rep["mismatched_steps"][1]  # mid-epoch rank 1's running statistics differ,
    assert rep["final_equal"] == [True, True]  # and at the epoch's end they are averaged


@pytest.mark.slow
def test_mpiexec_train_reports_ranks_and_resumes_only_with_as_many(tmp_path, data_dir):
    out = tmp_path / "run"
    args = ("train", "--model", "m4", "--train-limit", "256", "--data-dir", str(data_dir),
            "--out", str(out))  # fmt: skip
    p = mpiexec(2, *cli(*args, "--epochs", "1", "--json"))
    assert p.returncode == 0, p.stderr
    lines = [json.loads(s) for s in p.stdout.splitlines() if s.startswith("{")]
    assert len(lines) == 1  # rank 0 alone prints
    res = lines[0]
    assert res["ranks"] == 2 and res["communicator"] == "mpi"
    assert res["distributed"]["ranks"] == 2 and 0 < res["error_rate"] < 0.5
    state = json.loads((out / "state.json").read_text())
    assert len(state["rank_rng_states"]) == 2 and state["meta"]["ranks"] == 2
    one = subprocess.run(cli(*args, "--epochs", "2", "--resume"), capture_output=True,
                         text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert one.returncode == 1
    assert "trained on 2 rank(s), not 1" in one.stderr and "Traceback" not in one.stderr
    p = mpiexec(2, *cli(*args, "--epochs", "2", "--resume", "--json"))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["epochs_run"] == 2


@pytest.mark.slow
def test_mpiexec_batch_the_ranks_do_not_divide_is_a_one_line_error(tmp_path, data_dir):
    args = ("train", "--model", "m4", "--batch-size", "33", "--epochs", "1", "--out",
            str(tmp_path), "--data-dir", str(data_dir))  # fmt: skip
    p = mpiexec(2, *cli(*args), timeout=60)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "--batch-size 33 (the global batch) is not divisible by the 2 ranks" in p.stderr
    # one line from each rank that got that far, and nothing from MPICH's MPI_Abort
    lines = p.stderr.splitlines()
    assert 1 <= len(lines) <= 2, p.stderr
    assert all(s.startswith("arraynet: error (rank ") for s in lines), p.stderr


@pytest.mark.slow
def test_backends_reports_ranks_and_communicator():
    p = mpiexec(2, *cli("backends", "--json"), timeout=60)
    assert p.returncode == 0, p.stderr
    (line,) = p.stdout.splitlines()  # rank 0 alone
    d = json.loads(line)["distributed"]
    assert d["ranks"] == 2 and d["communicator"] == "mpi" and d["mpi4py"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["kill", "raise", "hang"])
def test_a_failing_rank_ends_the_job_and_the_checkpoint_resumes(
    tmp_path, data_dir, mode, monkeypatch
):
    """A rank that dies, raises or hangs (alive, never joining the next all-reduce) ends
    the job; the last checkpoint is intact and resumes."""
    out = tmp_path / "run"
    monkeypatch.setenv("ARRAYNET_DATA", str(data_dir))
    monkeypatch.setenv("ARRAYNET_COMM_TIMEOUT", "3")
    t0 = time.monotonic()
    p = mpiexec(2, *py("dp_fail_worker.py", str(out), mode), timeout=60)
    assert time.monotonic() - t0 < 30
    assert p.returncode != 0
    if mode == "hang":
        assert re.search(
            r"arraynet: error: rank 0 waited \d+ s for the other ranks at an "
            r"all-reduce \(ARRAYNET_COMM_TIMEOUT=3\)",
            p.stderr,
        ), p.stderr
        assert "Abort(" not in p.stderr, p.stderr  # MPICH's own line is dropped
    arrays, meta = load_arrays(out / "checkpoint.safetensors")
    assert meta["epoch"] == 1 and math.isfinite(float(arrays["model.1.kernel"].sum()))
    args = ("train", "--model", "m4", "--train-limit", "256", "--epochs", "3", "--out",
            str(out), "--data-dir", str(data_dir), "--resume", "--json")  # fmt: skip
    r = mpiexec(2, *cli(*args))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    assert res["epochs_run"] == 3 and res["ranks"] == 2


@pytest.mark.slow
def test_model_fit_under_mpiexec_is_the_one_process_fit(tmp_path):
    """`model.fit` under mpiexec -n 2 (float64, SGD, global batch 8) ends within 1e-10 of
    the one-process fit, bitwise equal on both ranks; rank 0 alone prints and writes the
    run folder, whose checkpoint keeps both ranks' random streams."""
    one = subprocess.run(py("dp_fit_worker.py", str(tmp_path / "one")),
                         capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert one.returncode == 0, one.stderr
    (tmp_path / "two").mkdir()
    two = mpiexec(2, *py("dp_fit_worker.py", str(tmp_path / "two")), timeout=60)
    assert two.returncode == 0, two.stderr
    a = json.loads((tmp_path / "one" / "report.json").read_text())
    b = json.loads((tmp_path / "two" / "report.json").read_text())
    assert a["ranks"] == 1 and b["ranks"] == 2
    r0, r1 = (np.array(f) for f in b["finals"])
    assert np.array_equal(r0.view(np.uint64), r1.view(np.uint64))
    ref = np.array(a["finals"][0])
    np.testing.assert_allclose(r0, ref, rtol=0, atol=1e-10)
    assert np.abs(ref).max() > 1e-3
    assert [h["epoch"] for h in b["history"]] == [1, 2]
    for h1, h2 in zip(a["history"], b["history"], strict=True):
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-9)
    assert two.stdout.count("epoch   1") == 1  # rank 0 alone prints
    state = json.loads((tmp_path / "two" / "run" / "state.json").read_text())
    assert len(state["rank_rng_states"]) == 2 and state["meta"]["ranks"] == 2
    assert (tmp_path / "two" / "run" / "model.safetensors").is_file()


@pytest.mark.parametrize("kind", ["host", "device"])
def test_per_rank_streams_derive_from_the_seed_for_host_and_device_rng(kind):
    """Each rank's dropout/augmentation generator is seeded with rank_seed(seed + 1, rank,
    ranks), host or device alike; one rank keeps the one-process stream."""
    import tests.dp_worker as w
    from arraynet.train.loop import Training
    from arraynet.train.recipe import Recipe

    b = get_backend("numpy", threads=1)
    draws = []
    for rank, size in ((0, 1), (0, 2), (1, 2)):
        c = Communicator()
        c.rank, c.size = rank, size  # (no collective is called here)
        model = w.make_model("plain").build(b, seed=5, dtype="float64")
        t = Training(model, Recipe(optimizer="sgd", lr=0.1, batch_size=8, epochs=1),
                     w.tiny_data(b), seed=5, rng_kind=kind,
                     parallel=DataParallel(c, b))  # fmt: skip
        assert t.rng.kind == kind and model.rng is t.rng
        again = b.rng(rank_seed(6, rank, size), host=kind == "host")
        assert np.array_equal(t.rng.permutation(50), again.permutation(50))
        draws.append(t.rng.permutation(50))
    assert not np.array_equal(draws[1], draws[2])  # the two ranks' streams differ


@pytest.mark.parametrize(
    ("value", "expected"), [("", 900.0), ("2.5", 2.5), ("0", None), ("abc", "a number"),
                            ("-1", "0 (no limit) or positive"), ("nan", "positive")],
)  # fmt: skip
def test_the_collective_timeout_is_read_from_the_environment(monkeypatch, value, expected):
    from arraynet.parallel.comm import CommError, comm_timeout

    monkeypatch.setenv("ARRAYNET_COMM_TIMEOUT", value)
    if isinstance(expected, str):
        with pytest.raises(CommError, match=re.escape(expected)):
            comm_timeout()
    else:
        assert comm_timeout() == expected
