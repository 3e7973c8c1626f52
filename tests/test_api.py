"""The public Python API: `import arraynet as an`, Sequential.fit / evaluate / predict /
save, an.load_model, callbacks, run folders and resume from Python."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import arraynet as an
from arraynet.io import load_arrays

L = an.layers


def blobs(n: int, side: int, channels: int, classes: int, seed: int = 0):
    """Images whose class is where a bright square sits (a CNN learns it in a few epochs),
    with uint8 noise elsewhere; each class also tints one channel."""
    g = np.random.default_rng(seed)
    y = g.integers(0, classes, n)
    x = (g.random((n, side, side, channels)) * 80).astype(np.uint8)
    cells = int(np.ceil(np.sqrt(classes)))
    s = side // cells
    for i, c in enumerate(y):
        r, q = divmod(int(c), cells)
        x[i, r * s : (r + 1) * s, q * s : (q + 1) * s, int(c) % channels] = 250
    return x, y


def small_cnn(input_shape, classes):
    return an.Sequential(
        [
            L.Conv2D(8, 3, padding="same"), L.Activation("relu"), L.MaxPool2D(2),
            L.Flatten(), L.Dense(classes), L.Activation("softmax"),
        ],
        input_shape=input_shape,
    )  # fmt: skip


def test_a_cnn_for_8x8_grey_images_with_10_classes():
    x, y = blobs(700, 8, 1, 10)
    model = small_cnn((8, 8, 1), 10)
    history = model.fit(x[:600], y[:600], epochs=6, batch_size=32)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    res = model.evaluate(x[600:], y[600:])
    assert set(res) >= {"error_rate", "loss", "correct", "total"} and res["total"] == 100
    assert res["error_rate"] < 0.3  # chance is 0.9
    assert res["correct"] == round((1 - res["error_rate"]) * 100)


def test_a_cnn_for_32x32_colour_images_with_5_classes():
    x, y = blobs(300, 32, 3, 5, seed=1)
    model = small_cnn((32, 32, 3), 5)
    model.fit(x[:250], y[:250], epochs=4, batch_size=25, lr=3e-3)
    res = model.evaluate(x[250:], y[250:])
    assert res["total"] == 50 and res["error_rate"] < 0.4  # chance is 0.8
    probs = model.predict(x[250:])
    assert probs.shape == (50, 5) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    pred = probs.argmax(axis=1)
    assert int((pred == y[250:]).sum()) == res["correct"]


def test_vectors_one_hot_labels_and_an_inferred_input_shape():
    g = np.random.default_rng(0)
    x = g.standard_normal((200, 6)).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
    onehot = np.eye(4, dtype=np.float32)[labels]
    model = an.Sequential([L.Dense(16), L.Activation("relu"), L.Dense(4), L.Activation("softmax")])
    model.fit(x[:150], onehot[:150], epochs=20, batch_size=16, lr=1e-2)
    assert model.input_shape == (6,)
    assert model.evaluate(x[150:], labels[150:])["error_rate"] < 0.3


def test_a_model_that_does_not_fit_the_data_is_one_line():
    x, y = blobs(20, 8, 1, 10)
    model = small_cnn((28, 28, 1), 10)
    with pytest.raises(ValueError) as e:
        model.fit(x, y, epochs=1)
    msg = str(e.value)
    assert "\n" not in msg and "(28, 28, 1)" in msg and "(8, 8, 1)" in msg
    model = small_cnn((8, 8, 1), 5)
    with pytest.raises(ValueError, match="labels run from 0 to 9, but the model has 5 outputs"):
        model.fit(x, y, epochs=1)
    with pytest.raises(ValueError, match="one-hot labels have 10 columns, but the model has 5"):
        model.fit(x, np.eye(10, dtype=np.float32)[y], epochs=1)


def test_validation_split_history_and_callbacks(tmp_path):
    x, y = blobs(200, 8, 1, 4)
    model = small_cnn((8, 8, 1), 4)
    stop = an.callbacks.EarlyStopping(patience=1, monitor="val_loss")  # a window of one stops
    history = model.fit(
        x, y, epochs=5, batch_size=20, validation_split=0.25,
        callbacks=[stop, an.callbacks.CSVLogger(tmp_path / "h.csv")],
    )  # fmt: skip
    assert len(history) == 1 and history[0]["early_stop"] is True
    assert 0.0 <= history[0]["val_error"] <= 1.0
    rows = list(csv.DictReader((tmp_path / "h.csv").open()))
    assert len(rows) == 1 and float(rows[0]["val_loss"]) == pytest.approx(history[0]["val_loss"])
    with pytest.raises(ValueError, match="validation_split wants"):
        model.fit(x, y, epochs=1, validation_split=1.5)


def test_fit_resume_continues_exactly(tmp_path):
    """A run folder from Python: 3 epochs straight equal 1 epoch then resume=True to 3
    (dropout and augmentation draw random numbers)."""
    x, y = blobs(96, 8, 1, 4)

    def model():
        return an.Sequential(
            [L.Conv2D(4, 3), L.Activation("relu"), L.Dropout(0.3), L.Flatten(), L.Dense(4),
             L.Activation("softmax")],
            input_shape=(8, 8, 1),
        )  # fmt: skip

    kw = dict(batch_size=16, augment=0.5, seed=5)
    model().fit(x, y, epochs=3, out_dir=tmp_path / "a", **kw)
    model().fit(x, y, epochs=1, out_dir=tmp_path / "b", **kw)
    history = model().fit(x, y, epochs=3, out_dir=tmp_path / "b", resume=True, **kw)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    a, _ = load_arrays(tmp_path / "a" / "model.safetensors")
    b, meta = load_arrays(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and meta["layout"]["input_shape"] == [8, 8, 1]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(ValueError, match="already holds"):
        model().fit(x, y, epochs=1, out_dir=tmp_path / "a", **kw)
    with pytest.raises(ValueError, match="begun with another data"):
        model().fit(x[:50], y[:50], epochs=4, out_dir=tmp_path / "b", resume=True, **kw)


def test_save_and_load_model(tmp_path):
    x, y = blobs(64, 8, 1, 3)
    model = small_cnn((8, 8, 1), 3)
    model.fit(x, y, epochs=1, batch_size=16)
    model.save(tmp_path / "m.safetensors", {"note": "mine"})
    again = an.load_model(tmp_path / "m.safetensors")
    assert again.metadata["note"] == "mine"
    np.testing.assert_array_equal(model.predict(x), again.predict(x))
    assert again.evaluate(x, y) == model.evaluate(x, y)


def test_fit_on_array_api_strict_arrays():
    """Arrays of another library: the model is built on the backend that holds them."""
    import array_api_strict as xps

    x, y = blobs(40, 8, 1, 3)
    xs = xps.asarray(x.astype(np.float32) / 255.0)
    model = small_cnn((8, 8, 1), 3)
    model.fit(xs, y, epochs=1, batch_size=20)
    assert model.backend.name == "array-api-strict"
    assert model.evaluate(xs, y)["total"] == 40


def test_grad_hook_runs_between_backward_and_the_update():
    """The training step's seam (e.g. for an all-reduce): the optimizer applies what the
    hook returns."""
    from arraynet.optimizers import make_optimizer
    from arraynet.train.step import train_step

    x, y = blobs(8, 8, 1, 3)
    xf = x.astype(np.float32) / 255.0
    yf = np.eye(3, dtype=np.float32)[y]
    model = small_cnn((8, 8, 1), 3).build("numpy", seed=0)
    before = {k: np.array(v) for k, v in model.parameters().items()}
    seen = []

    def zero(grads):
        seen.append(sorted(grads))
        return {k: g * 0.0 for k, g in grads.items()}

    train_step(model, make_optimizer("sgd"), xf, yf, lr=0.1, grad_hook=zero)
    assert seen == [sorted(before)]
    for k, v in model.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    train_step(model, make_optimizer("sgd"), xf, yf, lr=0.1)
    assert any(not np.array_equal(v, before[k]) for k, v in model.parameters().items())


def test_tensorboard_callback_writes_per_epoch_scalars(tmp_path):
    from tests.test_cli import _scalars

    x, y = blobs(60, 8, 1, 3)
    model = small_cnn((8, 8, 1), 3)
    history = model.fit(x, y, epochs=2, batch_size=20, validation_split=20,
                        callbacks=[an.callbacks.TensorBoard(tmp_path / "tb")])  # fmt: skip
    (run,) = (tmp_path / "tb").iterdir()  # the run's own subfolder
    assert run.name.startswith("run-")
    tb = _scalars(run)
    assert {"train/loss", "val/error", "val/loss", "lr", "img_per_s"} <= set(tb)
    assert [s for s, _ in tb["train/loss"]] == [1, 2]
    assert tb["train/loss"][1][1] == pytest.approx(history[1]["train_loss"])
    assert tb["val/error"][0][1] == pytest.approx(history[0]["val_error"])


def test_runs_sharing_a_logdir_get_their_own_subfolders(tmp_path):
    x, y = blobs(40, 8, 1, 3)
    first = an.callbacks.TensorBoard(tmp_path / "tb")
    small_cnn((8, 8, 1), 3).fit(x, y, epochs=1, batch_size=20, callbacks=[first])
    second = an.callbacks.TensorBoard(tmp_path / "tb")
    small_cnn((8, 8, 1), 3).fit(x, y, epochs=1, batch_size=20, callbacks=[second])
    named = an.callbacks.TensorBoard(tmp_path / "tb", run_name="mine")
    small_cnn((8, 8, 1), 3).fit(x, y, epochs=2, batch_size=20, callbacks=[named],
                                out_dir=tmp_path / "run")  # fmt: skip
    in_folder = an.callbacks.TensorBoard(tmp_path / "tb")
    small_cnn((8, 8, 1), 3).fit(x, y, epochs=1, batch_size=20, callbacks=[in_folder],
                                out_dir=tmp_path / "my-run")  # fmt: skip
    runs = {first.run_dir, second.run_dir, named.run_dir, in_folder.run_dir}
    assert len(runs) == 4 and all(r.parent == tmp_path / "tb" for r in runs)
    assert named.run_dir.name == "mine" and in_folder.run_dir.name == "my-run"
    for run in runs:
        assert list(run.glob("events.out.tfevents.*"))
    with pytest.raises(ValueError, match="run_name wants a folder name"):
        an.callbacks.TensorBoard(tmp_path / "tb", run_name="../x")


def test_a_bad_setting_is_refused_before_a_run_folder_is_made(tmp_path):
    x, y = blobs(20, 8, 1, 3)
    with pytest.raises(ValueError, match="lr= wants a number"):  # (fit speaks its keywords)
        small_cnn((8, 8, 1), 3).fit(x, y, lr=float("nan"), out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="resume=True needs the out_dir"):
        small_cnn((8, 8, 1), 3).fit(x, y, epochs=1, resume=True)
