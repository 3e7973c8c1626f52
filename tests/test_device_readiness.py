"""GPU readiness proven on the CPU: the device generator, no host transfers in a
steady-state training step (torch on the CPU, instrumented, stands in for CUDA), and no
array created off the device in use (array-api-strict's non-default 'device1')."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.backends.device_rng import DeviceRNG, draw_key
from arraynet.train.callbacks import Callback
from arraynet.train.loop import Dataset, Training, evaluate, fit_loop
from arraynet.zoo import build_layout, recipe_for
from tests.conftest import HAVE_TORCH

needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """torch's CPU thread pool spins on a shared 2-core machine; these runs are tiny."""
    if not HAVE_TORCH:
        yield
        return
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _random_data(b, n, seed=0):
    g = np.random.default_rng(seed)
    labels = g.integers(0, 10, n)
    x = b.from_host(g.random((n, 28, 28, 1), dtype=np.float32))
    return Dataset(x, b.from_host(np.eye(10, dtype=np.float32)[labels]), labels)


# -- the device generator --------------------------------------------------------------
@pytest.mark.parametrize("name", ["numpy", "array-api-strict", "torch"])
def test_device_rng_is_counter_based_and_restorable(name):
    if name == "torch" and not HAVE_TORCH:
        pytest.skip("torch is not installed")
    b = get_backend(name)
    r = b.rng(3, host=False)
    assert isinstance(r, DeviceRNG) and r.get_state() == {"kind": "device", "seed": 3, "counter": 0}
    a = b.to_host(r.bernoulli_scaled((1000,), 0.75, b.dtype("float32")))
    state = json.loads(json.dumps(r.get_state()))  # JSON-able
    later = b.to_host(r.uniform((5,), -2.0, 2.0, b.dtype("float32")))
    coin = r.host_random()
    assert set(np.unique(a)) == {0.0, np.float32(1 / 0.75)} and 0.65 < (a > 0).mean() < 0.85
    assert np.all((later >= -2.0) & (later < 2.0))
    again = b.rng(0, host=False)
    again.set_state(state)
    np.testing.assert_array_equal(b.to_host(again.uniform((5,), -2.0, 2.0, b.dtype("float32"))),
                                  later)  # fmt: skip
    assert again.host_random() == coin
    fresh = b.rng(3, host=False)
    np.testing.assert_array_equal(
        b.to_host(fresh.bernoulli_scaled((1000,), 0.75, b.dtype("float32"))), a
    )
    assert draw_key(3, 0) != draw_key(3, 1) != draw_key(4, 1)
    with pytest.raises(ValueError, match="host"):
        again.set_state(b.rng(3).get_state())
    with pytest.raises(ValueError, match="not a host"):
        b.rng(3).set_state(state)


def test_default_generator_per_backend():
    """host on the CPU backends (numpy stays bitwise as shipped); cupy and torch on CUDA
    override it with 'device' (their classes say so; no GPU here to build them on)."""
    from arraynet.backends.cupy_backend import CupyBackend

    assert get_backend("numpy").default_rng_kind() == "host"
    assert get_backend("array-api-strict", "device1").default_rng_kind() == "host"
    assert CupyBackend.default_rng_kind(None) == "device"
    if HAVE_TORCH:
        import torch

        tb = get_backend("torch")
        assert tb.default_rng_kind() == "host"
        tb.device = torch.device("cuda", 0)  # only asked, never used
        assert tb.default_rng_kind() == "device"


@pytest.mark.parametrize("name", ["numpy", "array-api-strict"])
def test_device_augmentation_composes_the_host_maps(name):
    """The maps and the elastic smoothing built on the device equal the host's formulas."""
    from arraynet.augment import compose_maps, smoothing_matrix
    from arraynet.data.affine import affine_matrix, gaussian_smoothing_matrix

    b = get_backend(name, "device1" if name == "array-api-strict" else None)
    g = np.random.default_rng(1)
    z, ang = g.uniform(0.8, 1.2, 6), g.uniform(-25, 25, 6)
    dx, dy = np.rint(g.uniform(-5, 5, 6)), np.rint(g.uniform(-5, 5, 6))
    f64 = b.dtype("float64")
    dev = [b.from_host(v, f64) for v in (z, ang, dx, dy)]
    got = b.to_host(compose_maps(*dev, (28, 20)))
    np.testing.assert_allclose(got, affine_matrix(z, ang, dx, dy, (28, 20)), atol=1e-12)
    s = b.to_host(smoothing_matrix(b.xp, 28, 4.0, f64, b.device))
    np.testing.assert_allclose(s, gaussian_smoothing_matrix(28, 4.0), atol=1e-15)


# -- host transfers of a training step -------------------------------------------------
class _PerStep(Callback):
    """Transfer counts at every batch end."""

    def __init__(self, counts):
        self.counts, self.rows = counts, []

    def on_epoch_begin(self, t, epoch, n):
        self.rows.append([self.counts.snapshot()])

    def on_batch_end(self, t, batch, size):
        self.rows[-1].append(self.counts.snapshot())

    def per_step(self):
        """(h2d, d2h) of each step of each epoch."""
        return [[(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(ep)] for ep in self.rows]


def _count_steps(name, rng_kind, epochs=2, batches=3):
    from arraynet.backends.transfers import count_transfers

    b = get_backend("torch")
    base = recipe_for(name)
    aug = {**base.augment, "elastic": [8.0, 3.0]}  # every random map the loop can draw
    # small batches keep it quick; the transfers of a step do not depend on its size
    r = base.with_overrides(epochs=epochs, batch_size=8, aug_p=1.0, augment=aug, ema=0.99)
    data = _random_data(b, batches * r.batch_size - 5)  # a short last batch too
    model = build_layout(name).build(b, seed=0)
    with count_transfers(b) as counts:
        rec = _PerStep(counts)
        t = Training(model, r, data, seed=0, callbacks=[rec], rng_kind=rng_kind)
        fit_loop(t)
    return rec.per_step(), counts


@needs_torch
@pytest.mark.parametrize("name", ["m12", "m14-fast"])
def test_a_steady_state_step_makes_no_host_transfer(name):
    """With the device generator, dropout, augmentation (affine and elastic), the loss sum
    and the weight average stay on the device: after the first step of an epoch (here: from
    the first on) a step copies nothing to the device and reads nothing back."""
    steps, counts = _count_steps(name, "device")
    assert all(s == (0, 0) for epoch in steps for s in epoch), (steps, counts.log)
    assert len(steps) == 2 and len(steps[0]) == 3
    # the host generator copies its masks and maps: the counter sees them
    host_steps, _ = _count_steps(name, "host", epochs=1, batches=2)
    assert all(h2d > 0 and d2h == 0 for h2d, d2h in host_steps[0]), host_steps


@needs_torch
def test_the_counter_sees_every_kind_of_transfer():
    import torch

    from arraynet.backends.transfers import count_transfers

    b = get_backend("torch")
    t = torch.ones(3)
    with count_transfers(b) as c:
        float(t[0]), t[0].item(), bool(t[0] > 0), int(t[1]), t.tolist(), np.asarray(t)
        torch.asarray(1.0), torch.tensor([1.0]), b.to_host(t), b.from_host(np.ones(2))
        torch.asarray(t), t * 2.0, torch.zeros(3) + t  # no transfers
    assert (c.h2d, c.d2h) == (3, 7), c.log
    assert "from_host" not in vars(b) and "item" not in vars(torch.Tensor)  # all undone


@needs_torch
def test_evaluation_reads_back_once_per_batch():
    from arraynet.backends.transfers import count_transfers

    b = get_backend("torch")
    data = _random_data(b, 70)
    model = build_layout("m12").build(b, seed=0)
    ref = evaluate(model, data, batch_size=16)
    with count_transfers(b) as c:
        ev = evaluate(model, data, batch_size=16)
    assert ev == ref and (c.h2d, c.d2h) == (0, 5), c.log


@needs_torch
def test_device_rng_resume_on_torch_is_bitwise(tmp_path):
    """torch (CPU) with --rng device (m9: dropout and augmentation): 2 epochs, then a
    resume from the run folder to 4, equal 4 straight epochs bitwise."""
    from arraynet.io import WeightsError
    from arraynet.train.callbacks import ModelCheckpoint
    from arraynet.train.runfolder import RunFolder

    b = get_backend("torch")
    recipe = recipe_for("m9").with_overrides(epochs=4, aug_p=0.5, batch_size=16)
    data = _random_data(b, 40)

    def training(out, rng="device"):
        model = build_layout("m9").build(b, seed=5)
        cbs = [ModelCheckpoint(RunFolder(tmp_path / out))]
        return Training(model, recipe, data, seed=5, callbacks=cbs, rng_kind=rng)

    straight = training("straight")
    fit_loop(straight, 4)
    fit_loop(training("resumed"), 2)
    state = json.loads((tmp_path / "resumed" / "state.json").read_text())
    assert state["rng_state"]["kind"] == "device" and state["rng_state"]["counter"] > 0
    with pytest.raises(WeightsError, match="begun with --rng device, not --rng host"):
        RunFolder(tmp_path / "resumed").resume(training("resumed", rng="host"))
    resumed = training("resumed", rng=None)  # a resume keeps the run's own generator
    RunFolder(tmp_path / "resumed").resume(resumed)
    assert resumed.rng.kind == "device"
    fit_loop(resumed, 4)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    a, c = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        np.testing.assert_array_equal(b.to_host(a[k]), b.to_host(c[k]))


# -- no device leaks: array-api-strict on 'device1' ------------------------------------
def test_strict_device1_refuses_arrays_from_the_default_device():
    b = get_backend("array-api-strict", "device1")
    assert b.device_name() == "device1"
    x = b.from_host(np.ones(3, dtype=np.float32))
    with pytest.raises(ValueError, match="different devices"):
        _ = x + b.xp.asarray(1.0, dtype=b.xp.float32)  # created without device=
    with pytest.raises(ValueError, match="no device 'gpu'"):
        get_backend("array-api-strict", "gpu")


@pytest.mark.parametrize("rng_kind", ["host", "device"])
def test_training_evaluation_and_loading_on_strict_device1(tmp_path, rng_kind):
    """Training steps (conv, batch norm, dropout, Adam, EMA, elastic augmentation),
    checkpoints, evaluation, test-time augmentation and weight loading on a non-default
    device: any array created elsewhere would fail to combine."""
    from arraynet.io import load_model
    from arraynet.jobs import predict_probs
    from arraynet.train.callbacks import ModelCheckpoint

    b = get_backend("array-api-strict", "device1")
    base = recipe_for("m14")
    aug = {**base.augment, "elastic": [8.0, 3.0]}
    r = base.with_overrides(epochs=1, batch_size=16, aug_p=1.0, augment=aug, ema=0.99)
    data = _random_data(b, 40)
    model = build_layout("m14").build(b, seed=0)
    t = Training(model, r, data, data, seed=0, rng_kind=rng_kind,
                 callbacks=[ModelCheckpoint(tmp_path / "run")])  # fmt: skip
    assert fit_loop(t)["epochs_run"] == 1 and t.rng.kind == rng_kind
    ev = evaluate(model, data, batch_size=16)
    probs = predict_probs(model, data.x[:3, ...], tta=True)
    assert probs.device == b.device and ev["total"] == 40
    model.save(tmp_path / "w.safetensors")
    loaded, _ = load_model(tmp_path / "w.safetensors", b)
    assert evaluate(loaded, data, batch_size=16) == ev
    for v in loaded.state_dict().values():
        assert v.device == b.device


def test_parity_on_strict_device1(data_dir):
    from arraynet.parity import run_parity

    res = run_parity("m9", ["numpy", "array-api-strict@device1"], batch_size=4,
                     data_dir=str(data_dir))  # fmt: skip
    assert res["ok"] and res["rng"] == "host"


@pytest.mark.slow
def test_cli_rng_and_a_device_of_strict(tmp_path, data_dir):
    """`train --rng device` records the device generator, a resume with another --rng is
    one line, and `parity` takes array-api-strict@device1."""
    from tests.test_cli import run

    out = tmp_path / "run"
    args = ["train", "--model", "m9", "--epochs", "1", "--train-limit", "64", "--out", str(out)]
    r = run(*args, "--rng", "device", "--json", data_dir=data_dir)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "state.json").read_text())["rng_state"]["kind"] == "device"
    r = run(*args[:-2], "--epochs", "2", "--out", str(out), "--resume", "--rng", "host",
            data_dir=data_dir)  # fmt: skip
    assert r.returncode == 1 and "begun with --rng device, not --rng host" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run("train", "--rng", "gpu", data_dir=data_dir)
    assert r.returncode == 1 and "--rng wants host or device" in r.stderr
    r = run("parity", "--model", "m9", "--backends", "numpy,array-api-strict@device1",
            "--batch-size", "4", "--json", data_dir=data_dir)  # fmt: skip
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["ok"] is True
