"""A Keras user feels at home: Keras's keyword names, `activation="softmax"` on the last
layer trained like a separate softmax, `summary()`, a `History`, `verbose` 0/1/2,
messages in the API's words and warnings through `warnings`."""

from __future__ import annotations

import inspect
import io
import json
import warnings

import numpy as np
import pytest

import arraynet as an
from arraynet.backends import get_backend
from arraynet.layers import Activation, Conv2D, Dense, Flatten, MaxPool2D
from arraynet.train.recipe import Recipe
from tests.test_api import blobs


def test_a_keras_users_script(data_dir, tmp_path, capsys):
    # -- the script, as a Keras user writes it (compile's arguments go to fit) --
    data = an.datasets.load("mnist", data_dir=str(data_dir))
    x_train, y_train = data.x_train[:1200], data.y_train[:1200]
    x_test, y_test = data.x_test[:300], data.y_test[:300]
    model = an.Sequential([
        Conv2D(8, 3, activation="relu"),
        MaxPool2D(2),
        Flatten(),
        Dense(10, activation="softmax"),
    ], input_shape=(28, 28, 1))  # fmt: skip
    model.summary()
    history = model.fit(x_train, y_train, epochs=2, batch_size=32, validation_split=0.1,
                        verbose=1, learning_rate=1e-3, metrics=["accuracy"],
                        loss="sparse_categorical_crossentropy", optimizer="Adam")  # fmt: skip
    print(history.history["loss"], history.history["val_accuracy"])
    score = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    probs = model.predict(x_test[:5], verbose=0)
    model.save(tmp_path / "keras.safetensors")
    again = an.load_model(tmp_path / "keras.safetensors")
    # -- what it gave --
    out = capsys.readouterr().out
    assert "Total params: 15,770" in out and "(None, 14, 14, 8)" in out  # summary, pre-build
    assert out.count("epoch   ") == 2  # verbose=1 off a terminal: a line an epoch
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 2 and history.epoch == [0, 1]
    assert history.history["loss"][1] < history.history["loss"][0]
    assert 0.5 < history.history["accuracy"][1] <= 1.0
    assert score["accuracy"] > 0.6 and score["accuracy"] == 1 - score["error_rate"]
    assert probs.shape == (5, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(again.predict(x_test[:5]), probs)
    assert again.fused_softmax and again.metadata is not None


# -- 1. a final Dense/Conv2D(activation="softmax") is the fused softmax ------------------
def _pair(final_activation: bool, init: str = "he_normal"):
    head = (
        [Dense(4, init=init, activation="softmax")]
        if final_activation
        else [Dense(4, init=init), Activation("softmax")]
    )
    return an.Sequential([Conv2D(3, 3, activation="relu"), Flatten(), *head], (6, 6, 1))


def test_a_final_softmax_activation_is_fused():
    assert _pair(True).fused_softmax and _pair(False).fused_softmax
    conv = an.Sequential([Conv2D(4, 3, activation="softmax")], (5, 5, 2))
    assert conv.fused_softmax
    assert not an.Sequential([Flatten(), Dense(4, activation="relu")], (6,)).fused_softmax
    assert not an.Sequential([Flatten(), Dense(4)], (6,)).fused_softmax

    class Doubled(Dense):  # a subclass with its own forward keeps it (not fused)
        def forward(self, x, training=False):
            return super().forward(2.0 * x, training)

    assert not an.Sequential([Doubled(4, activation="softmax")], (6,)).fused_softmax


def test_dense_softmax_gradients_in_float64():
    """Finite differences of the cross-entropy loss of a model ending in
    Dense(activation="softmax"), through the fused path, for every parameter."""
    m = _pair(True).build(get_backend("numpy"), seed=4, dtype="float64")
    g = np.random.default_rng(4)
    x = g.random((3, 6, 6, 1))
    y = np.eye(4)[[0, 3, 1]]
    _, z = m.loss_and_grads(x, y, "cross_entropy")
    assert z.shape == (3, 4) and not np.allclose(z.sum(axis=1), 1.0)  # logits, not probabilities
    grads = {k: np.array(v) for k, v in m.gradients().items()}
    for name, p in m.parameters().items():
        flat = p.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + 1e-6
            lp = float(m.loss_and_grads(x, y)[0])
            flat[i] = old - 1e-6
            lm = float(m.loss_and_grads(x, y)[0])
            flat[i] = old
            num = (lp - lm) / 2e-6
            assert abs(num - grads[name].reshape(-1)[i]) <= 1e-7 + 1e-6 * abs(num), name


def test_dense_softmax_trains_bit_for_bit_like_dense_then_activation():
    x, y = blobs(64, 6, 1, 4)
    a, b = _pair(True), _pair(False)
    for m in (a, b):
        m.fit(x, y, epochs=2, batch_size=16, seed=1, backend=get_backend("numpy", threads=1),
              validation_split=16, label_smoothing=0.1)  # fmt: skip
    pa, pb = a.state_dict(), b.state_dict()
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])
    assert a.evaluate(x, y) == b.evaluate(x, y)  # the same (cross-entropy) evaluation loss
    np.testing.assert_array_equal(a.predict(x), b.predict(x))


def test_dense_softmax_exports_and_serves_as_probabilities():
    onnx = pytest.importorskip("onnx")
    from arraynet.io.onnx_export import to_onnx
    from arraynet.serve.app import Predictor

    m = _pair(True).build("numpy", seed=0)
    assert [o.name for o in to_onnx(m).graph.output] == ["probabilities"]
    assert onnx is not None
    probs = Predictor(m)(np.random.default_rng(0).random((1, 6, 6, 1), dtype=np.float32))
    assert len(probs) == 4 and sum(probs) == pytest.approx(1.0, abs=1e-5)


# -- 2. summary() and count_params() ------------------------------------------------------
def test_summary_prints_shapes_and_counts_before_build(capsys):
    m = an.Sequential([Conv2D(8, 3, activation="relu"), MaxPool2D(2), an.layers.BatchNorm(),
                       Flatten(), Dense(10, activation="softmax")], (28, 28, 1))  # fmt: skip
    assert m.summary() is None
    out = capsys.readouterr().out
    assert m.backend is None  # nothing was built (shapes from a shape-only build)
    assert "(None, 28, 28, 8)" in out and "(None, 1568)" in out
    assert "Total params: 15,802" in out and "Non-trainable params: 16" in out
    lines: list[str] = []
    m.summary(print_fn=lines.append)
    assert "\n".join(lines) == m.summary_text() == out.rstrip("\n")
    assert m.count_params() == 15_802  # parameters and batch-norm statistics, as Keras counts
    m.build("numpy")
    assert m.count_params() == 15_802 == m.num_parameters() + 16
    assert m.summary_text() == out.rstrip("\n")


def test_summary_of_a_model_without_an_input_shape(capsys):
    m = an.Sequential([Flatten(), Dense(3)])
    m.summary()
    out = capsys.readouterr().out
    assert "unknown until the input shape is" in out and "Dense(units=3)" in out
    with pytest.raises(ValueError, match="no input_shape yet"):
        m.count_params()


# -- 3. fit returns a History ----------------------------------------------------------------
def test_history_keeps_the_rows_and_adds_keras_views():
    x, y = blobs(80, 6, 1, 4)
    h = _pair(True).fit(x, y, epochs=3, batch_size=16, validation_split=0.25,
                        metrics=["acc"])  # fmt: skip
    assert isinstance(h, list) and isinstance(h, an.History) and len(h) == 3
    assert h[-1]["epoch"] == 3 and h.rows == list(h) and h.epoch == [0, 1, 2]
    assert h.history["loss"] == [r["train_loss"] for r in h]
    assert h.history["val_loss"] == [r["val_loss"] for r in h]
    assert h.history["val_acc"] == [1 - r["val_error"] for r in h]
    assert h.history["acc"] == [r["accuracy"] for r in h]
    assert h.params == {"epochs": 3, "batch_size": 16, "steps": 4, "verbose": 0}
    assert json.loads(json.dumps(h)) == h.rows  # (serialises as the list it is)
    plain = _pair(True).fit(x, y, epochs=1, batch_size=16)
    assert set(plain.history) == {"loss"} and "accuracy" not in plain[0]


def test_training_accuracy_is_counted_exactly():
    """With the weights held still (lr 0, no dropout), the epoch's training accuracy is
    the evaluated accuracy on the same images."""
    x, y = blobs(90, 6, 1, 4, seed=2)
    m = _pair(True)
    h = m.fit(x, y, epochs=1, batch_size=16, optimizer="sgd", learning_rate=0.0,
              metrics=["accuracy"])  # fmt: skip
    assert h.history["accuracy"] == [m.evaluate(x, y)["accuracy"]]
    assert m.train_hits is None  # counting is off again


# -- 4. verbose ----------------------------------------------------------------------------
def test_verbose_levels(capsys):
    x, y = blobs(40, 6, 1, 4)
    _pair(True).fit(x, y, epochs=2, batch_size=20)
    assert capsys.readouterr().out == ""  # default 0: silent
    _pair(True).fit(x, y, epochs=2, batch_size=20, verbose=2)
    out = capsys.readouterr().out
    assert out.count("\n") == 2 and out.startswith("epoch   1")
    with pytest.raises(ValueError, match="verbose= wants 0"):
        _pair(True).fit(x, y, epochs=1, verbose=3)
    m = _pair(True)
    m.fit(x, y, epochs=1, verbose="auto")
    assert capsys.readouterr().out.count("epoch   1") == 1
    m.evaluate(x, y, verbose=1)
    assert capsys.readouterr().out.startswith("loss ")
    m.predict(x, verbose=1)
    assert capsys.readouterr().out == ""
    loss, acc = m.evaluate(x, y, return_dict=False)
    assert (loss, acc) == (m.evaluate(x, y)["loss"], m.evaluate(x, y)["accuracy"])


def test_the_progress_bar_draws_batches_on_a_terminal():
    from rich.console import Console

    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=100)
    lines: list[str] = []
    bar = an.callbacks.ProgressBar(print_fn=lines.append, console=con)
    x, y = blobs(60, 6, 1, 4)
    _pair(True).fit(x, y, epochs=2, batch_size=20, callbacks=[bar])
    drawn = buf.getvalue()
    assert "epoch 1/2" in drawn and "3/3" in drawn and "batches" in drawn
    assert len(lines) == 2 and lines[1].startswith("epoch   2")
    assert bar.bar is None  # stopped


# -- 5. Keras's names ----------------------------------------------------------------------
def _weights(m):
    return {k: np.array(v) for k, v in m.state_dict().items()}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.filterwarnings("ignore::arraynet.train.callbacks.TrainingWarning")
def test_keras_names_train_as_arraynets_and_record_arraynets(tmp_path):
    x, y = blobs(48, 6, 1, 4)
    kw = dict(epochs=1, batch_size=16, seed=2)
    ours = _pair(True)
    ours.fit(x, y, lr=3e-3, optimizer="adam", loss="cross_entropy", **kw)
    keras = _pair(True)
    keras.fit(x, y, learning_rate=3e-3, optimizer="Adam", loss="sparse_categorical_crossentropy",
              out_dir=tmp_path / "run", **kw)  # fmt: skip
    _same(_weights(ours), _weights(keras))
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["recipe"]["optimizer"] == "adam" and state["recipe"]["loss"] == "cross_entropy"
    assert state["recipe"]["lr"] == 3e-3
    onehot = np.eye(4, dtype=np.float32)[y]
    a, b = _pair(True), _pair(True)
    a.fit(x, onehot, optimizer="SGD", loss="categorical_crossentropy", **kw)
    b.fit(x, y, optimizer="sgd", **kw)
    _same(_weights(a), _weights(b))
    a, b = _pair(False), _pair(False)
    a.fit(x, y, loss="mean_squared_error", **kw)
    b.fit(x, y, loss="mse", **kw)
    _same(_weights(a), _weights(b))


def test_keras_names_are_checked():
    x, y = blobs(20, 6, 1, 4)
    with pytest.raises(ValueError, match="takes integer labels, but y holds rows of shape"):
        _pair(True).fit(x, np.eye(4)[y], loss="sparse_categorical_crossentropy", epochs=1)
    with pytest.raises(ValueError, match="takes one-hot labels, but y holds integer labels"):
        _pair(True).fit(x, y, loss="categorical_crossentropy", epochs=1)
    with pytest.raises(ValueError, match=r"metrics= knows accuracy, acc.*not 'f1'"):
        _pair(True).fit(x, y, metrics=["accuracy", "f1"], epochs=1)
    with pytest.raises(ValueError, match="metrics= wants a list"):
        _pair(True).fit(x, y, metrics="accuracy", epochs=1)
    with pytest.raises(ValueError, match="lr= and learning_rate= are one setting"):
        _pair(True).fit(x, y, lr=1e-3, learning_rate=1e-2, epochs=1)
    with pytest.raises(ValueError, match="shuffle= wants True or False"):
        _pair(True).fit(x, y, shuffle="batch", epochs=1)


def test_shuffle_false_trains_in_the_datas_order():
    from arraynet.optimizers import make_optimizer
    from arraynet.train.step import train_step

    x, y = blobs(40, 6, 1, 4)
    fitted = _pair(True)
    fitted.fit(x, y, epochs=1, batch_size=10, optimizer="sgd", learning_rate=0.1,
               shuffle=False, backend="numpy")  # fmt: skip
    by_hand = _pair(True).build("numpy", seed=0)
    opt = make_optimizer("sgd")
    xf = x.astype(np.float32) / 255.0
    yf = np.eye(4, dtype=np.float32)[y]
    for i in range(0, 40, 10):
        train_step(by_hand, opt, xf[i : i + 10], yf[i : i + 10], lr=0.1)
    _same(_weights(fitted), _weights(by_hand))
    shuffled = _pair(True)
    shuffled.fit(x, y, epochs=1, batch_size=10, optimizer="sgd", learning_rate=0.1)
    assert any(not np.array_equal(v, _weights(by_hand)[k]) for k, v in _weights(shuffled).items())


# -- 6. explicit keywords ------------------------------------------------------------------
def test_fit_shows_every_keyword():
    sig = inspect.signature(an.Sequential.fit)
    kinds = {p.kind for p in sig.parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds
    names = ("epochs", "batch_size", "learning_rate", "lr", "optimizer", "loss", "metrics",
             "validation_split", "validation_data", "shuffle", "verbose", "callbacks")  # fmt: skip
    for name in names:
        assert sig.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    assert "learning_rate" in an.Sequential.fit.__doc__
    ev = inspect.signature(an.Sequential.evaluate).parameters
    assert {"verbose", "return_dict"} <= set(ev)
    assert "verbose" in inspect.signature(an.Sequential.predict).parameters


# -- 7. errors in the API's words ------------------------------------------------------------
def test_errors_name_fits_keywords_and_the_cli_keeps_its_flags():
    x, y = blobs(20, 6, 1, 4)
    with pytest.raises(ValueError) as e:
        _pair(True).fit(x, y, optimizer="bogus")
    assert str(e.value).startswith("optimizer= wants one of") and "--" not in str(e.value)
    with pytest.raises(ValueError, match=r"^batch_size= wants a whole number"):
        _pair(True).fit(x, y, batch_size=0)
    with pytest.raises(ValueError, match=r"^augment= wants a number in \[0, 1\]"):
        _pair(True).fit(x, y, augment=1.5)
    with pytest.raises(ValueError, match=r"^recipe.monitor 'val_loss' needs validation data"):
        _pair(True).fit(x, y, recipe=Recipe(monitor="val_loss"))
    with pytest.raises(ValueError, match=r"^rng= wants one of host, device"):
        _pair(True).fit(x, y, rng="gpu")
    with pytest.raises(ValueError, match=r"^--optimizer wants one of"):
        Recipe(optimizer="bogus").validate()
    with pytest.raises(ValueError, match=r"^--monitor val_loss needs a validation split"):
        Recipe(monitor="val_loss").validate(validation=False)
    with pytest.raises(ValueError, match=r"^recipe.swa_from averages"):
        Recipe(swa_from=2, ema=0.9).validate(words="api")


# -- 8. warnings -------------------------------------------------------------------------------
def test_a_loss_at_chance_is_a_training_warning_not_a_print(capsys):
    x, y = blobs(40, 6, 1, 4)
    for verbose in (0, 2):
        m = _pair(True, init="zeros")  # uniform outputs, held still: the loss is log(4)
        with pytest.warns(an.TrainingWarning, match="no better than chance") as seen:
            m.fit(x, y, epochs=2, batch_size=20, learning_rate=0.0, verbose=verbose)
        assert len(seen) == 2  # once an epoch, however many callbacks notice
        assert "chance" not in capsys.readouterr().out
    assert issubclass(an.TrainingWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _pair(True).fit(x, y, epochs=1, batch_size=20)  # a healthy run: no warning


# -- 9. Conv2D keeps its defaults; layouts record them --------------------------------------
def test_conv2d_records_its_sizes_and_an_old_layout_keeps_its_meaning():
    cfg = Conv2D(4).config()
    assert cfg["kernel_size"] == 5 and cfg["padding"] == "same" and cfg["stride"] == 1
    old = {"input_shape": [8, 8, 1], "layers": [{"type": "conv2d", "filters": 4}]}
    m = an.Sequential.from_config(old)
    assert m.layers[0].k == 5 and m.layers[0].padding == "same"
    assert m.state_shapes()["0.kernel"] == (5, 5, 1, 4)
    assert "(None, 8, 8, 4)" in m.summary_text()
