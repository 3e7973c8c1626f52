"""Stochastic weight averaging: the uniform mean, batch-norm recalibration, fine-tunes."""

from __future__ import annotations

import numpy as np
import pytest

from arraynet.backends import get_backend
from arraynet.io import WeightsError, load_arrays
from arraynet.jobs import make_dataset, train_model
from arraynet.layers import Activation, BatchNorm, Dense, Dropout, Flatten
from arraynet.model import Sequential
from arraynet.train.averaging import WeightAverage, recalibrate_batchnorm
from arraynet.train.callbacks import Callback
from arraynet.train.loop import Training, fit_loop
from arraynet.zoo import recipe_for


def _bn_model(b):
    layers = [Flatten(), Dense(6), Dropout(0.5), BatchNorm(), Activation("relu"), Dense(3)]
    return Sequential(layers, input_shape=(4, 4, 1)).build(b, seed=0, dtype="float64")


def test_weight_average_is_the_plain_mean():
    b = get_backend("numpy")
    snaps = [{"w": b.from_host(np.full((2, 2), v))} for v in (1.0, 2.0, 6.0)]
    avg = WeightAverage()
    for s in snaps:
        avg.add(s)
    assert avg.count == 3
    np.testing.assert_allclose(b.to_host(avg.mean["w"]), np.full((2, 2), 3.0))
    snaps[0]["w"][...] = 100.0  # the first snapshot was copied, not aliased
    np.testing.assert_allclose(b.to_host(avg.mean["w"]), np.full((2, 2), 3.0))


def test_recalibrated_statistics_are_those_of_the_inference_inputs():
    """Running mean/variance become the mean over batches of each batch's mean and unbiased
    variance of what BatchNorm sees with dropout off; momentum is left as it was."""
    b = get_backend("numpy")
    model = _bn_model(b)
    x = np.random.default_rng(1).normal(size=(30, 4, 4, 1))
    recalibrate_batchnorm(model, b.from_host(x), batch_size=10)
    dense = model.layers[1]
    h = x.reshape(30, 16) @ b.to_host(dense.params["kernel"]) + b.to_host(dense.params["bias"])
    batches = [h[i : i + 10] for i in (0, 10, 20)]
    bn = model.layers[3]
    want_mean = np.mean([hb.mean(axis=0) for hb in batches], axis=0)
    want_var = np.mean([hb.var(axis=0, ddof=1) for hb in batches], axis=0)
    np.testing.assert_allclose(b.to_host(bn.buffers["running_mean"]), want_mean, rtol=1e-12)
    np.testing.assert_allclose(b.to_host(bn.buffers["running_var"]), want_var, rtol=1e-12)
    assert bn.momentum == 0.9


def test_swa_run_ends_with_the_mean_of_epoch_ends(tmp_path, data_dir):
    """Final parameters = mean of the weights at the end of each averaged epoch, and the
    batch-norm statistics are recomputed for them."""
    b = get_backend("numpy")
    from arraynet.data import load_mnist

    mnist = load_mnist(str(data_dir), quiet=True)
    train = make_dataset(mnist.train_images[:192], mnist.train_labels[:192], b)
    model = Sequential(
        [Flatten(), Dense(16), BatchNorm(), Activation("relu"), Dense(10), Activation("softmax")],
        input_shape=(28, 28, 1),
    ).build(b, seed=0)
    recipe = recipe_for("m14-swa").with_overrides(epochs=4, swa_from=2, aug_p=0.0, lr=0.01)
    ends = []

    class EpochEnds(Callback):
        def on_epoch_end(self, t, row):
            ends.append({k: b.to_host(v).copy() for k, v in model.parameters().items()})

    trainer = Training(model, recipe, train, seed=0, callbacks=[EpochEnds()])
    fit_loop(trainer)
    final = {k: b.to_host(v) for k, v in model.parameters().items()}
    for k in final:  # (atol: float32 rounding of the running mean, about the weights' ulp)
        mean_of_ends = np.mean([e[k] for e in ends[1:]], axis=0)
        np.testing.assert_allclose(final[k], mean_of_ends, rtol=1e-5, atol=1e-8)
        assert not np.allclose(final[k], ends[-1][k])
    assert [r.get("swa_count") for r in trainer.history] == [None, 1, 2, 3]
    x = b.to_host(train.x).reshape(192, 784)
    h = x @ final["1.kernel"] + final["1.bias"]
    mean = np.mean([h[i : i + 500].mean(axis=0) for i in range(0, 192, 500)], axis=0)
    np.testing.assert_allclose(b.to_host(model.layers[2].buffers["running_mean"]), mean, atol=1e-5)


def test_swa_refuses_to_stack_on_ema_or_early_stopping():
    b = get_backend("numpy")
    model = _bn_model(b)
    with pytest.raises(ValueError, match="turn off --ema"):
        Training(model, recipe_for("m14-swa").with_overrides(ema=0.99), None)


def test_init_starts_from_the_given_weights(tmp_path, data_dir):
    """--init: zero epochs of a fine-tune leave exactly the starting weights; its record
    names them; weights of another layout are refused with one line."""
    b = get_backend("numpy")
    kw = dict(data_dir=str(data_dir), train_limit=128, quiet_data=True)
    train_model("m8", b, out_dir=tmp_path / "base", epochs=1, **kw)
    start = tmp_path / "base" / "model.safetensors"
    train_model("m8", b, out_dir=tmp_path / "ft", epochs=0, init=start, **kw)
    a, _ = load_arrays(start)
    c, meta = load_arrays(tmp_path / "ft" / "model.safetensors")
    for k in a:
        np.testing.assert_array_equal(a[k], c[k])
    assert meta["init"]["weights"] == str(start) and meta["init"]["epochs_run"] == 1
    assert len(meta["init"]["sha256"]) == 64
    with pytest.raises(WeightsError, match="does not fit the layout"):
        train_model("m9", b, out_dir=tmp_path / "bad", epochs=0, init=start, **kw)


def test_a_resumed_fine_tune_keeps_its_init_record(tmp_path, data_dir):
    """--resume needs no --init (the checkpoint holds the weights) yet keeps the record of
    where the run began; other --init weights on resume are refused."""
    b = get_backend("numpy")
    kw = dict(data_dir=str(data_dir), train_limit=128, quiet_data=True)
    recipe = recipe_for("m4").with_overrides(swa_from=1, epochs=2)
    train_model("m4", b, out_dir=tmp_path / "base", epochs=1, **kw)
    train_model("m4", b, out_dir=tmp_path / "other", epochs=1, seed=1, **kw)
    start = tmp_path / "base" / "model.safetensors"
    train_model("m4", b, recipe=recipe, out_dir=tmp_path / "ft", epochs=1, init=start, **kw)
    train_model("m4", b, recipe=recipe, out_dir=tmp_path / "ft", resume=True, **kw)
    _, meta = load_arrays(tmp_path / "ft" / "model.safetensors")
    assert meta["init"]["weights"] == str(start) and len(meta["history"]) == 2
    with pytest.raises(ValueError, match="other --init weights"):
        train_model(
            "m4", b, recipe=recipe, out_dir=tmp_path / "ft", resume=True,
            init=tmp_path / "other" / "model.safetensors", **kw,
        )  # fmt: skip
