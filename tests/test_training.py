"""Schedules, early stopping, checkpoints, resume, weights I/O."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.io import WeightsError, load_arrays, load_model, save_arrays, save_model
from arraynet.jobs import train_model
from arraynet.schedules import learning_rate
from arraynet.train.early_stopping import StoppingWindow
from arraynet.zoo import build_layout, recipe_for


def test_tunable_schedule_worked_values():
    lr = [learning_rate("tunable", 0.001, e) for e in range(25)]
    assert lr[0] == pytest.approx(0.001)
    assert lr[1] == pytest.approx(0.002)
    assert lr[4] == pytest.approx(0.005)
    assert lr[5] == pytest.approx(0.005)  # no halving at e == 5
    assert lr[9] == pytest.approx(0.005)
    assert lr[10] == pytest.approx(0.0025)
    assert lr[15] == pytest.approx(0.00125)
    assert lr[20] == pytest.approx(6.25e-4)  # the seed's log
    assert lr[21] == pytest.approx(3.125e-4)  # 3.13e-4 in the seed's log
    assert lr[22] == lr[21] and lr[24] == pytest.approx(lr[21] / 2)


def test_tunable5_keeps_halving_every_five():
    assert learning_rate("tunable5", 0.001, 21) == pytest.approx(6.25e-4)
    assert learning_rate("tunable5", 0.001, 25) == pytest.approx(3.125e-4)


def test_keras_and_cosine_and_const():
    k = [learning_rate("keras", 5e-4, e) for e in range(16)]
    assert k[0] == pytest.approx(1e-4) and k[4] == pytest.approx(5e-4)
    assert k[5] == pytest.approx(5e-4) and k[9] == pytest.approx(5e-4)
    assert k[10] == pytest.approx(2.5e-4) and k[15] == pytest.approx(1.25e-4)
    assert learning_rate("cosine", 0.1, 0, 10) == pytest.approx(0.1)
    assert learning_rate("cosine", 0.1, 5, 10) == pytest.approx(0.05)
    assert learning_rate("cosine", 0.1, 10, 10) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate("cosine", 0.1, 0, 10, warmup=2) == pytest.approx(0.05)
    assert learning_rate("const", 0.3, 99) == 0.3
    with pytest.raises(ValueError, match="unknown schedule"):
        learning_rate("linear", 0.1, 0)


def test_early_stopping_window_and_restore_best():
    es = StoppingWindow(min_delta=0.01, patience=3)
    losses = [1.0, 0.5, 0.3, 0.29, 0.295, 0.2951]
    stops = [es.update(e + 1, v, {"w": e}) for e, v in enumerate(losses)]
    # window [0.3, 0.29, 0.295]: oldest 0.3 vs best 0.29 is > 1 % -> go on;
    # window [0.29, 0.295, 0.2951]: oldest is the best -> stop
    assert stops == [False, False, False, False, False, True]
    epoch, value, weights = es.best()
    assert (epoch, value, weights) == (4, 0.29, {"w": 3})


def test_early_stopping_keeps_going_while_improving():
    es = StoppingWindow(min_delta=0.005, patience=2)
    assert not any(es.update(e, 1.0 / (e + 1), None) for e in range(20))


def test_m13_stops_like_keras_patience_20():
    """The seed's notebook (Keras EarlyStopping, patience 20) stopped at epoch 85 with its
    best at 65: m13's window must stop 20 epochs after the best, not 19."""
    delta, patience = recipe_for("m13").early_stopping
    es = StoppingWindow(delta, patience)
    losses = [1.0 / e for e in range(1, 66)] + [0.5] * 30  # best at epoch 65, then worse
    stop = next(e for e, v in enumerate(losses, 1) if es.update(e, v, None))
    assert stop == 85 and es.best()[0] == 65


def test_recipes_follow_the_spec():
    r12 = recipe_for("m12")
    assert (r12.optimizer, r12.lr, r12.schedule, r12.batch_size, r12.aug_p) == (
        "adam-seed",
        0.001,
        "tunable",
        16,
        0.8,
    )
    assert r12.early_stopping == [0.005, 15]
    assert recipe_for("m1").batch_size == 1 and recipe_for("m1").loss == "mse"
    assert recipe_for("m8").early_stopping == [0.005, 15]


def _small_run(tmp_path, data_dir, name, epochs, resume=False, out="run"):
    b = get_backend("numpy")
    recipe = recipe_for(name).with_overrides(epochs=4, aug_p=0.5, batch_size=32)
    return train_model(
        name, b, recipe=recipe, seed=7, out_dir=tmp_path / out, resume=resume,
        data_dir=str(data_dir), train_limit=256, epochs=epochs, val_split=100,
    )  # fmt: skip


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tmp_path, data_dir):
    """2 epochs, then --resume to 4, ends exactly where 4 straight epochs end (m9: conv,
    dropout and augmentation all draw random numbers)."""
    straight = _small_run(tmp_path, data_dir, "m9", 4, out="straight")
    _small_run(tmp_path, data_dir, "m9", 2, out="resumed")
    state = json.loads((tmp_path / "resumed" / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2
    # a run killed between the checkpoint's rename and state.json's leaves a stale
    # state.json; the state inside the checkpoint wins
    _small_run(tmp_path, data_dir, "m9", 1, out="one")
    shutil.copy(tmp_path / "one" / "state.json", tmp_path / "resumed" / "state.json")
    resumed = _small_run(tmp_path, data_dir, "m9", 4, resume=True, out="resumed")
    assert resumed["epochs_run"] == straight["epochs_run"] == 4
    assert resumed["error_rate"] == straight["error_rate"]
    a, _ = load_arrays(tmp_path / "straight" / "model.safetensors")
    b, _ = load_arrays(tmp_path / "resumed" / "model.safetensors")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_epoch_only_checkpoint_is_checked_against_state(tmp_path, data_dir):
    """Checkpoints that hold only the epoch resume from state.json when both agree."""
    _small_run(tmp_path, data_dir, "m8", 1)
    ck = tmp_path / "run" / "checkpoint.safetensors"
    arrays, _ = load_arrays(ck)
    save_arrays(ck, arrays, {"epoch": 1})
    assert _small_run(tmp_path, data_dir, "m8", 2, resume=True)["epochs_run"] == 2
    arrays, _ = load_arrays(ck)
    save_arrays(ck, arrays, {"epoch": 3})
    with pytest.raises(WeightsError, match=r"\(epoch 3\) and state.json \(epoch 2\) disagree"):
        _small_run(tmp_path, data_dir, "m8", 4, resume=True)


def test_resume_with_another_seed_is_refused(tmp_path, data_dir):
    _small_run(tmp_path, data_dir, "m8", 1)
    b = get_backend("numpy")
    recipe = recipe_for("m8").with_overrides(epochs=4, aug_p=0.5, batch_size=32)
    with pytest.raises(WeightsError, match="trained with seed 7, not 3; resume with --seed 7"):
        train_model(
            "m8", b, recipe=recipe, seed=3, out_dir=tmp_path / "run", resume=True,
            data_dir=str(data_dir), train_limit=256, epochs=2, val_split=100,
        )  # fmt: skip


def test_resume_with_another_recipe_is_refused(tmp_path, data_dir):
    _small_run(tmp_path, data_dir, "m8", 1)
    b = get_backend("numpy")
    other = recipe_for("m8").with_overrides(epochs=4, aug_p=0.5, batch_size=32, optimizer="adam")
    with pytest.raises(WeightsError, match="optimizer='adam-seed', not 'adam'"):
        train_model(
            "m8", b, recipe=other, seed=7, out_dir=tmp_path / "run", resume=True,
            data_dir=str(data_dir), train_limit=256, epochs=2, val_split=100,
        )  # fmt: skip


def test_resume_may_lengthen_a_run_but_not_a_cosine_schedule(tmp_path, data_dir):
    """--epochs may grow on resume, except under cosine decay, whose rates are laid out
    over the whole run (a longer run would silently get other rates)."""
    b = get_backend("numpy")
    for schedule, ok in (("const", True), ("cosine", False)):
        r = recipe_for("m4").with_overrides(epochs=2, batch_size=32, schedule=schedule)
        kw = dict(seed=1, data_dir=str(data_dir), train_limit=64, quiet_data=True,
                  out_dir=tmp_path / schedule)  # fmt: skip
        train_model("m4", b, recipe=r, epochs=1, **kw)
        longer = r.with_overrides(epochs=3)
        if ok:
            assert train_model("m4", b, recipe=longer, resume=True, **kw)["epochs_run"] == 3
        else:
            with pytest.raises(WeightsError, match="epochs=2, not 3"):
                train_model("m4", b, recipe=longer, resume=True, **kw)


def test_checkpoint_files_and_history(tmp_path, data_dir):
    res = _small_run(tmp_path, data_dir, "m8", 2)
    run = tmp_path / "run"
    state = json.loads((run / "state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    for key in ("train_loss", "val_loss", "val_error", "lr", "seconds", "img_per_s"):
        assert key in state["history"][0]
    arrays, meta = load_arrays(run / "checkpoint.safetensors")
    assert any(k.startswith("opt.") for k in arrays) and meta["epoch"] == 2
    assert not list(run.glob("*.tmp"))
    _model, meta = load_model(run / "model.safetensors", get_backend("numpy"))
    assert meta["metrics"]["error_rate"] == res["error_rate"]
    assert meta["recipe"]["batch_size"] == 32 and meta["layout"]["layers"][0]["type"] == "flatten"


def test_model_round_trip_on_every_backend(tmp_path):
    from tests.conftest import CPU_BACKENDS

    src = get_backend("numpy")
    m = build_layout("m13").build(src, seed=1)
    path = tmp_path / "w.safetensors"
    save_model(path, m, {"note": "x"})
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    ref = m.forward(x, False)
    for name in CPU_BACKENDS:
        b = get_backend(name)
        m2, meta = load_model(path, b)
        assert meta["note"] == "x"
        np.testing.assert_allclose(b.to_host(m2.forward(b.from_host(x), False)), ref, atol=1e-5)


def test_weights_errors(tmp_path):
    b = get_backend("numpy")
    with pytest.raises(WeightsError, match="no such weights file"):
        load_model(tmp_path / "missing.safetensors", b)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_model(bad, b)
    m = build_layout("m8").build(b, seed=0)
    state = {k: b.to_host(v) for k, v in m.state_dict().items()}
    layout = m.config()
    missing = dict(state)
    missing.pop("1.kernel")
    save_arrays(tmp_path / "m.safetensors", missing, {"layout": layout})
    with pytest.raises(WeightsError, match="missing"):
        load_model(tmp_path / "m.safetensors", b)
    shaped = dict(state)
    shaped["1.kernel"] = shaped["1.kernel"][:10]
    save_arrays(tmp_path / "s.safetensors", shaped, {"layout": layout})
    with pytest.raises(WeightsError, match="has shape"):
        load_model(tmp_path / "s.safetensors", b)
    save_arrays(tmp_path / "u.safetensors", state, {"layout": {"layers": [{"type": "lstm"}]}})
    with pytest.raises(WeightsError, match="unknown layout"):
        load_model(tmp_path / "u.safetensors", b)
    save_arrays(tmp_path / "n.safetensors", state, {})
    with pytest.raises(WeightsError, match="no layout"):
        load_model(tmp_path / "n.safetensors", b)


def test_ema_resume_and_final_weights(tmp_path, data_dir):
    """With weight averaging on, the checkpoint keeps the average, resume is exact, and the
    final weights are the average."""
    b = get_backend("numpy")
    recipe = recipe_for("m8").with_overrides(epochs=2, ema=0.99, batch_size=64)
    kw = dict(recipe=recipe, seed=3, data_dir=str(data_dir), train_limit=640, val_split=200)
    straight = train_model("m8", b, out_dir=tmp_path / "a", **kw)
    train_model("m8", b, out_dir=tmp_path / "b", epochs=1, **kw)
    arrays, _ = load_arrays(tmp_path / "b" / "checkpoint.safetensors")
    assert any(k.startswith("ema.") for k in arrays)
    resumed = train_model("m8", b, out_dir=tmp_path / "b", resume=True, **kw)
    assert resumed["error_rate"] == straight["error_rate"]
    final, _ = load_arrays(tmp_path / "a" / "model.safetensors")
    ckpt, _ = load_arrays(tmp_path / "a" / "checkpoint.safetensors")
    np.testing.assert_array_equal(final["1.kernel"], ckpt["ema.1.kernel"])
    assert not np.array_equal(final["1.kernel"], ckpt["model.1.kernel"])


def test_tta_averages_shifted_views(tmp_path):
    from arraynet.jobs import TTA_SHIFTS, predict_probs

    b = get_backend("numpy")
    m = build_layout("m9").build(b, seed=0)
    x = np.random.default_rng(0).random((6, 28, 28, 1), dtype=np.float32)
    plain = m.predict(x)
    tta = predict_probs(m, x, tta=True)
    assert tta.shape == plain.shape and len(TTA_SHIFTS) == 5
    np.testing.assert_allclose(tta.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(tta, plain)
    manual = sum(m.predict(_shift(x, dx, dy)) for dx, dy in TTA_SHIFTS) / 5
    np.testing.assert_allclose(tta, manual, atol=1e-5)


def _shift(x, dx, dy):
    out = np.zeros_like(x)
    h, w = x.shape[1:3]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[:, yd, xd] = x[:, ys, xs]
    return out


def test_evaluate_reports_mse_for_models_without_softmax():
    from arraynet.losses import mse
    from arraynet.train.loop import Dataset, evaluate

    b = get_backend("numpy")
    m = build_layout("m2").build(b, seed=0)
    g = np.random.default_rng(0)
    x = g.random((7, 28, 28, 1), dtype=np.float32)
    labels = g.integers(0, 10, 7)
    y = np.eye(10, dtype=np.float32)[labels]
    res = evaluate(m, Dataset(x, y, labels), batch_size=3)
    ref = float(mse(m.forward(x, False), y)[0])
    assert res["loss"] == pytest.approx(ref, rel=1e-5) and res["loss"] > 0


@pytest.mark.slow
def test_training_evaluation_and_averaging_run_on_array_api_strict(tmp_path, data_dir):
    """The batch loops outside the training step (validation, test, weight averaging's
    batch-norm pass, test-time augmentation, bench) index only as the standard allows:
    no slice runs past the end of an axis, and every multi-axis array gets its `...`."""
    from arraynet.bench import run_bench
    from arraynet.data import load_mnist
    from arraynet.jobs import make_dataset, predict_probs
    from arraynet.train.callbacks import ModelCheckpoint
    from arraynet.train.loop import Training, evaluate, fit_loop

    b = get_backend("array-api-strict")
    mnist = load_mnist(str(data_dir), quiet=True)
    train = make_dataset(mnist.train_images[:96], mnist.train_labels[:96], b)
    val = make_dataset(mnist.train_images[96:160], mnist.train_labels[96:160], b)
    recipe = recipe_for("m14").with_overrides(epochs=1, batch_size=32, ema=0.0, swa_from=1)
    model = build_layout("m14").build(b, seed=3)
    run = Training(model, recipe, train, val, seed=3, callbacks=[ModelCheckpoint(tmp_path / "run")])
    summary = fit_loop(run, 1)
    assert (tmp_path / "run" / "checkpoint.safetensors").is_file()
    assert summary["epochs_run"] == 1
    ev = evaluate(model, val, batch_size=50)  # a last batch shorter than the others
    assert ev["total"] == 64 and 0.0 <= ev["error_rate"] <= 1.0
    probs = b.to_host(predict_probs(model, val.x[:5, ...], tta=True, batch_size=2))
    assert probs.shape == (5, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    bench = run_bench("m9", b, batch_size=4, steps=2, warmup=1, eval_batch_size=8,
                      data_dir=str(data_dir), augment=False)  # fmt: skip
    assert bench["train_img_per_s"] > 0 and bench["eval_img_per_s"] > 0


def test_recipe_validation_catches_what_training_would_trip_on(tmp_path, data_dir):
    """Settings that used to crash or silently do nothing are refused up front, and a run
    folder cut between its two checkpoint files gets a clear way out."""
    base = recipe_for("m4")
    for kw, text in (
        ({"augment": {}}, "augment wants zoom, rotation and shift"),
        ({"swa_from": 5, "epochs": 2}, "--swa-from wants an epoch up to --epochs (2)"),
        ({"swa_from": 1, "ema": 0.99}, "turn off --ema and early stopping"),
    ):
        with pytest.raises(ValueError, match=re.escape(text)):
            base.with_overrides(**kw).validate()
    out = tmp_path / "cut"
    out.mkdir()
    (out / "checkpoint.safetensors").write_bytes(b"x")
    with pytest.raises(ValueError, match="interrupted save"):
        train_model("m4", get_backend("numpy"), out_dir=out, data_dir=str(data_dir),
                    train_limit=64, epochs=1, quiet_data=True)  # fmt: skip


@pytest.mark.parametrize("backend", ["numpy", "array-api-strict", "torch"])
def test_a_float64_model_takes_float32_images(backend):
    """The model casts its input to its own dtype (float64 weights, float32 test images)."""
    if backend == "torch":
        pytest.importorskip("torch")
    b = get_backend(backend)
    m = build_layout("m9").build(b, seed=0, dtype="float64")
    x = b.from_host(np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32))
    assert str(m.forward(x, False).dtype).endswith("float64")
