"""Adam's bias correction as each named optimizer counts it: 'adam' in steps, 'adam-seed'
in epochs (the seed library's own Adam), 'adam-seed-const' fixed at step 1."""

from __future__ import annotations

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.optimizers import OPTIMIZERS, Adam, make_optimizer
from arraynet.train.callbacks import ModelCheckpoint
from arraynet.train.loop import Dataset, Training, fit_loop
from arraynet.train.runfolder import RunFolder
from arraynet.zoo import build_layout, recipe_for

B1, B2, EPS = 0.9, 0.999, 1e-8

# The table: the factor sqrt(1 - b2^e) / (1 - b1^e) on lr * m / sqrt(v) in epoch e,
# with the tolerance its rounding allows.
TABLE = [(1, 0.316, 5e-4), (2, 0.235, 5e-4), (3, 0.20, 5e-3), (5, 0.17, 5e-3),
         (30, 0.18, 5e-3), (40, 0.20, 5e-3), (50, 0.22, 5e-3), (100, 0.31, 5e-3)]  # fmt: skip


def measured_factor(opt, epoch: int, fast: bool) -> float:
    """start_epoch(epoch), then one step with zero gradient from m = v = 1 (float64): the
    step divided by lr * m / sqrt(v) with the step's own m = b1, v = b2."""
    b = get_backend("numpy", fast=fast)
    opt.start_epoch(epoch)
    one = np.ones((3,), np.float64)
    opt.load_state({"w.m": one.copy(), "w.v": one.copy()}, t=7)
    lr = 1e-3
    p = opt.step({"w": np.zeros((3,), np.float64)}, {"w": np.zeros((3,), np.float64)}, lr, b)
    step = -p["w"]
    assert np.all(step == step[0])
    return float(step[0]) / (lr * B1 / np.sqrt(B2))


@pytest.mark.parametrize("fast", [False, True])
def test_adam_seed_factor_per_epoch_matches_the_table(fast):
    opt = make_optimizer("adam-seed")
    for epoch, want, tol in TABLE:
        assert measured_factor(opt, epoch, fast) == pytest.approx(want, abs=tol), epoch
    for epoch in range(10, 21):  # "10 to 20: about 0.15-0.16 (the lowest)"
        assert 0.15 <= measured_factor(opt, epoch, fast) <= 0.1605, epoch
    factors = {e: measured_factor(opt, e, fast) for e in range(1, 151)}
    assert 10 <= min(factors, key=factors.get) <= 20
    for e in (1, 7, 64):  # and exactly the formula
        want = np.sqrt(1 - B2**e) / (1 - B1**e)
        assert factors[e] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("fast", [False, True])
def test_other_adams_ignore_the_epoch(fast):
    """'adam-seed-const' keeps step 1's factor in every epoch; 'adam' counts its steps (its
    t is set to 7 by load_state, so the step is the 8th)."""
    const = make_optimizer("adam-seed-const")
    text = make_optimizer("adam")
    for epoch in (1, 2, 15, 100):
        assert measured_factor(const, epoch, fast) == pytest.approx(0.316, abs=5e-4)
        want = np.sqrt(1 - B2**8) / (1 - B1**8)
        assert measured_factor(text, epoch, fast) == pytest.approx(want, rel=1e-6)


def oracle(name: str, p0, grads_by_epoch, lr: float):
    """The formula, written out: per-step m and v; t = the step (adam), the epoch
    (adam-seed) or 1 (adam-seed-const); eps after the square root."""
    p, m, v, step = p0.copy(), np.zeros_like(p0), np.zeros_like(p0), 0
    for e, grads in enumerate(grads_by_epoch, 1):
        for g in grads:
            step += 1
            t = {"adam": step, "adam-seed": e, "adam-seed-const": 1}[name]
            m = B1 * m + (1 - B1) * g
            v = B2 * v + (1 - B2) * g * g
            p = p - lr * (m / (1 - B1**t)) / (np.sqrt(v / (1 - B2**t)) + EPS)
    return p


@pytest.mark.parametrize("name", ["adam", "adam-seed", "adam-seed-const"])
@pytest.mark.parametrize("fast", [False, True])
def test_multi_step_oracle(name, fast):
    g = np.random.default_rng(3)
    p0 = g.standard_normal((5, 4))
    grads_by_epoch = [[g.standard_normal((5, 4)) for _ in range(4)] for _ in range(3)]
    b = get_backend("numpy", fast=fast)
    opt = make_optimizer(name)
    assert opt.config()["type"] == name
    p = {"w": p0.copy()}
    for e, grads in enumerate(grads_by_epoch, 1):
        opt.start_epoch(e)
        for gr in grads:
            p = opt.step(p, {"w": gr}, 0.01, b)
    np.testing.assert_allclose(p["w"], oracle(name, p0, grads_by_epoch, 0.01), rtol=1e-12)
    assert opt.t == 12


def test_adam_seed_float32_fast_and_portable_agree():
    g = np.random.default_rng(4)
    p0 = g.standard_normal((30, 20)).astype(np.float32)
    grads = [g.standard_normal(p0.shape).astype(np.float32) for _ in range(9)]
    out = {}
    for fast in (True, False):
        b, opt, p = get_backend("numpy", fast=fast), make_optimizer("adam-seed"), {"w": p0.copy()}
        for i, gr in enumerate(grads):
            if i % 3 == 0:
                opt.start_epoch(i // 3 + 1)
            p = opt.step(p, {"w": gr}, 1e-3, b)
        out[fast] = p["w"]
    assert out[True].dtype == np.float32 and out[False].dtype == np.float32
    np.testing.assert_allclose(out[True], out[False], rtol=1e-6, atol=1e-7)


def test_start_epoch_wants_a_1_based_epoch():
    assert set(OPTIMIZERS) >= {"sgd", "adam", "adam-seed", "adam-seed-const"}
    make_optimizer("sgd").start_epoch(3)  # a no-op
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="1-based epoch"):
            make_optimizer("adam-seed").start_epoch(bad)
    with pytest.raises(ValueError, match="bias_count wants one of"):
        Adam(bias_count="epochs")


def _trainer(out_dir, seen: list[int]) -> Training:
    """m4 with 'adam-seed' on 96 random images, batches of 32 (3 steps an epoch); every
    step's bias-correction t is appended to `seen`."""
    b = get_backend("numpy")
    g = np.random.default_rng(0)
    x = b.from_host(g.random((96, 28, 28, 1), dtype=np.float32))
    labels = g.integers(0, 10, 96)
    y = b.from_host(np.eye(10, dtype=np.float32)[labels])
    recipe = recipe_for("m4").with_overrides(epochs=3, batch_size=32)
    assert recipe.optimizer == "adam-seed"
    tr = Training(build_layout("m4").build(b, seed=0), recipe, Dataset(x, y, labels),
                  seed=0, callbacks=[ModelCheckpoint(out_dir)])  # fmt: skip
    prepare = tr.opt.prepare  # (each step's numbers are prepared once, before its update)

    def spy(*args, **kw):
        seen.append(tr.opt.bias_t())
        return prepare(*args, **kw)

    tr.opt.prepare = spy
    return tr


def test_the_loop_counts_epochs_and_a_resume_continues_them(tmp_path):
    straight_t: list[int] = []
    straight = _trainer(tmp_path / "straight", straight_t)
    fit_loop(straight)
    assert straight_t == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    first_t: list[int] = []
    fit_loop(_trainer(tmp_path / "resumed", first_t), 1)
    assert first_t == [1, 1, 1]
    resumed_t: list[int] = []
    resumed = _trainer(tmp_path / "resumed", resumed_t)
    RunFolder(tmp_path / "resumed").resume(resumed)
    fit_loop(resumed)
    assert resumed_t == [2, 2, 2, 3, 3, 3]  # the epoch comes from the loop: no extra state
    a, b = straight.model.parameters(), resumed.model.parameters()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
