"""The command line as a user runs it: real subprocesses, one-line errors, JSON output."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import HAVE_TORCH, REPO


def run(
    *args: str, data_dir: Path | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if data_dir is not None:
        env["ARRAYNET_DATA"] = str(data_dir)
    p = subprocess.run(
        [sys.executable, "-m", "arraynet.cli", *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )  # fmt: skip
    if check:
        assert p.returncode == 0, p.stderr
    return p


def last_json(p: subprocess.CompletedProcess) -> dict:
    return json.loads(p.stdout.strip().splitlines()[-1])


def one_line_error(p: subprocess.CompletedProcess, text: str) -> None:
    assert p.returncode != 0
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr  # exactly one line: no blank line left by a progress bar
    assert "Traceback" not in p.stderr
    assert text in lines[0], lines[0]


@pytest.mark.parametrize("models", ["m12", "m8", "m14"])  # m14: strided convs, batch norm
def test_parity_numpy_vs_strict(models, data_dir):
    p = run("parity", "--model", models, "--backends", "numpy,array-api-strict", "--json",
            data_dir=data_dir, check=True)  # fmt: skip
    res = last_json(p)
    assert res["ok"] is True and res["max_abs_diff"] < 1e-4 and res["data"] == "mnist"


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_TORCH, reason="torch is an optional extra")
@pytest.mark.parametrize("models", ["m12", "m8", "m1", "m14"])
def test_parity_numpy_vs_torch(models, data_dir):
    p = run("parity", "--model", models, "--backends", "numpy,torch", "--json",
            data_dir=data_dir, check=True)  # fmt: skip
    assert last_json(p)["ok"] is True


@pytest.mark.slow
def test_parity_fails_loudly_when_tolerance_is_impossible(data_dir):
    if not HAVE_TORCH:
        pytest.skip("needs two backends that differ in rounding")
    p = run("parity", "--model", "m12", "--backends", "numpy,torch", "--tol", "1e-30",
            "--json", data_dir=data_dir)  # fmt: skip
    assert p.returncode == 1 and last_json(p)["ok"] is False


@pytest.mark.slow
def test_train_then_evaluate_agree(tmp_path, data_dir):
    """Issue 3's check: m4 (seed recipe), 3 epochs on 20,000 images, under 5 %."""
    out = tmp_path / "m4"
    p = run("train", "--model", "m4", "--backend", "numpy", "--epochs", "3",
            "--train-limit", "20000", "--seed", "0", "--out", str(out), "--json",
            data_dir=data_dir, check=True)  # fmt: skip
    res = last_json(p)
    assert res["epochs_run"] == 3 and res["total"] == 10000
    assert res["error_rate"] < 0.05 and "warning" not in p.stdout + p.stderr
    ev = last_json(run("evaluate", str(out / "model.safetensors"), "--json",
                       data_dir=data_dir, check=True))  # fmt: skip
    assert ev["error_rate"] == res["error_rate"] and ev["correct"] == res["correct"]
    if HAVE_TORCH:
        ev_t = last_json(run("evaluate", str(out / "model.safetensors"), "--backend", "torch",
                             "--json", data_dir=data_dir, check=True))  # fmt: skip
        assert abs(ev_t["correct"] - res["correct"]) <= 2
    ens = last_json(run("evaluate", str(out / "model.safetensors"), str(out / "model.safetensors"),
                        "--json", data_dir=data_dir, check=True))  # fmt: skip
    assert ens["correct"] == res["correct"]


def test_a_run_that_does_not_learn_is_flagged(tmp_path, data_dir):
    """A training loss no better than chance (a dead network) gets a warning line."""
    out = tmp_path / "dead"
    p = run("train", "--model", "m3", "--lr", "0", "--epochs", "1", "--train-limit", "256",
            "--out", str(out), "--json", data_dir=data_dir, check=True)  # fmt: skip
    assert "warning: the training loss is no better than chance" in p.stdout + p.stderr
    state = json.loads((out / "state.json").read_text())
    assert state["history"][0]["at_chance"] is True


@pytest.mark.slow
def test_elastic_flag_reaches_the_recipe(tmp_path, data_dir):
    out = tmp_path / "el"
    p = run("train", "--model", "m9", "--epochs", "1", "--train-limit", "256", "--aug-p", "1",
            "--elastic", "20,4", "--out", str(out), "--json",
            data_dir=data_dir, check=True)  # fmt: skip
    assert last_json(p)["epochs_run"] == 1
    state = json.loads((out / "state.json").read_text())
    assert state["recipe"]["augment"]["elastic"] == [20.0, 4.0]
    assert state["recipe"]["augment"]["rotation"] == 25.0  # the rest of the recipe kept


@pytest.mark.slow
def test_predict_a_digit_image(tmp_path, data_dir):
    from PIL import Image

    from arraynet.data import load_mnist

    out = tmp_path / "m9"
    run("train", "--model", "m9", "--epochs", "1", "--train-limit", "4000", "--out", str(out),
        data_dir=data_dir, check=True)  # fmt: skip
    m = load_mnist(data_dir, quiet=True)
    # a dark-on-light, larger picture of a test digit
    img = 255 - np.kron(m.test_images[0], np.ones((4, 4), dtype=np.uint8))
    Image.fromarray(img).save(tmp_path / "digit.png")
    p = run("predict", str(out / "model.safetensors"), str(tmp_path / "digit.png"), "--json",
            check=True)  # fmt: skip
    pred = last_json(p)["predictions"][0]
    assert pred["digit"] == int(m.test_labels[0]) and 0 < pred["probability"] <= 1


@pytest.mark.slow
def test_zoo_and_backends_json():
    z = last_json(run("zoo", "--json", check=True))
    names = [r["model"] for r in z["models"]]
    assert names[:12] == [f"m{i}" for i in range(1, 13)]
    m12 = next(r for r in z["models"] if r["model"] == "m12")
    assert m12["parameters"] == 16 * 26 + 32 * 401 + 48 * 801 + 64 * 1201 + 3136 * 10 + 10
    b = last_json(run("backends", "--json", check=True))
    assert {r["backend"] for r in b["backends"]} >= {"numpy", "cupy", "torch", "array-api-strict"}


def test_bench_json(data_dir):
    p = run("bench", "--model", "m8", "--steps", "5", "--json", data_dir=data_dir, check=True)
    res = last_json(p)
    assert res["train_img_per_s"] > 0 and res["eval_img_per_s"] > 0


def test_bench_and_parity_take_a_layout_file_and_own_data(tmp_path, data_dir):
    """A user's layout (8x8x3 inputs, 5 classes) is benchmarked on its own .npz and
    compared across backends; an unknown name is one line."""
    layout = {
        "input_shape": [8, 8, 3],
        "layers": [
            {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same"},
            {"type": "activation", "fn": "relu"}, {"type": "maxpool2d", "pool_size": 2},
            {"type": "flatten"}, {"type": "dense", "units": 5},
            {"type": "activation", "fn": "softmax"},
        ],
        "recipe": {"lr": 0.003, "batch_size": 8},
    }  # fmt: skip
    (tmp_path / "mine.json").write_text(json.dumps(layout))
    g = np.random.default_rng(0)
    x = (g.random((64, 8, 8, 3)) * 255).astype(np.uint8)
    y = g.integers(0, 5, 64)
    np.savez(tmp_path / "mine.npz", x_train=x[:48], y_train=y[:48], x_test=x[48:],
             y_test=y[48:])  # fmt: skip
    p = run("bench", "--model", str(tmp_path / "mine.json"), "--data", str(tmp_path / "mine.npz"),
            "--batch-size", "8", "--steps", "3", "--eval-batch-size", "16", "--json",
            check=True)  # fmt: skip
    res = last_json(p)
    assert res["model"] == "mine" and res["parameters"] == 4 * 28 + 5 * 65
    assert res["train_img_per_s"] > 0 and res["eval_batch_size"] == 16
    p = run("parity", "--model", str(tmp_path / "mine.json"), "--json", check=True)
    res = last_json(p)
    assert res["ok"] is True and res["data"] == "random" and res["model"] == "mine"
    one_line_error(run("bench", "--model", "m99", data_dir=data_dir),
                   "unknown model 'm99'; choose from m1")  # fmt: skip


BAD_INPUT = [
    (["train", "--model", "m99", "--epochs", "1"], "unknown model 'm99'"),
    (["train", "--model", "m4", "--backend", "tensorflow"], "unknown backend 'tensorflow'"),
    (["evaluate", "no/such/file.safetensors"], "no such weights file"),
    (["predict", "no/such.safetensors", "x.png"], "no such weights file"),
    (["parity", "--model", "m12", "--backends", "numpy"], "at least two"),
    (["train", "--model", "m4", "--out", "/nonexistent-run", "--resume"], "nothing to resume"),
    (["plot", "/nonexistent-run"], "not a run folder"),
    (["train", "--model", "m4", "--elastic", "34"], "--elastic wants 'ALPHA,SIGMA'"),
    (["train", "--model", "m14-swa", "--init", "no/such.safetensors"], "no such weights"),
    (["train", "--model", "m14-distill", "--distill", "1.5"], "--distill wants a number"),
    (
        ["train", "--model", "m14-distill", "--teacher", "no/such.safetensors"],
        "no such weights",
    ),
    (["bench", "--model", "m9", "--steps", "1", "--threads", "0"], "--threads wants"),
    (["bench", "--model", "m9", "--steps", "0"], "--steps wants at least 1"),
    (["bench", "--model", "m9", "--batch-size", "-4"], "--batch-size wants at least 1"),
    (["parity", "--backends", "numpy,numpy"], "lists a backend twice"),
    (["parity", "--batch-size", "0"], "--batch-size wants at least 1"),
    (["parity", "--dtype", "float16"], "--dtype wants float32 or float64"),
    (["train", "--model", "m4", "--epochs", "0"], "--epochs wants a whole number >= 1"),
    (["train", "--model", "m4", "--batch-size", "0"], "--batch-size wants a whole number"),
    (["train", "--model", "m4", "--lr", "nan"], "--lr wants a number in [0, inf)"),
    (["train", "--model", "m4", "--aug-p", "2"], "--aug-p wants a number in [0, 1]"),
    (["train", "--model", "m4", "--label-smoothing", "1"], "--label-smoothing wants"),
    (["train", "--model", "m4", "--ema", "nan"], "--ema wants"),
    (["train", "--model", "m4", "--warmup", "-3"], "--warmup wants"),
    (["train", "--model", "m4", "--min-delta", "nan"], "--min-delta wants"),
    (["train", "--model", "m4", "--elastic", "nan,4"], "--elastic alpha wants"),
    (["train", "--model", "m4", "--monitor", "bogus"], "--monitor wants one of"),
    (["train", "--model", "m4", "--schedule", "bogus"], "--schedule wants one of"),
    # raised while the progress bar is up: still one line (no bar on a pipe)
    (["train", "--model", "m4", "--val-split", "70000"], "--val-split must be between"),
]
# one case of each kind of check in the quick run; the other cases are marked slow
QUICK = {0, 1, 2, 4, 5, 6, 17, 19, 28}


@pytest.mark.parametrize(
    "args,text",
    [c if i in QUICK else pytest.param(*c, marks=pytest.mark.slow)
     for i, c in enumerate(BAD_INPUT)],
)  # fmt: skip
def test_bad_input_is_one_line(args, text, data_dir):
    one_line_error(run(*args, data_dir=data_dir), text)


@pytest.mark.parametrize(
    "args,text",
    [
        (["train", "--model", "m4", "--swa-from", "-1"], "--swa-from wants a whole number >= 0"),
        (["train", "--model", "m8", "--monitor", "val_loss"], "needs a validation split"),
        pytest.param(["train", "--model", "m4", "--elastic", "-1,4"], "--elastic alpha wants",
                     marks=pytest.mark.slow),
        pytest.param(["train", "--model", "m4", "--elastic", "3,0"], "--elastic sigma wants",
                     marks=pytest.mark.slow),
        (["train", "--model", "no/such.json"], "no such layout file"),
        pytest.param(["zoo", "--export", "m99"], "unknown model 'm99'", marks=pytest.mark.slow),
    ],
)  # fmt: skip
def test_recipe_and_layout_input_is_one_line(args, text, data_dir):
    """Checked once, in Recipe.validate or the layout reader, before anything starts."""
    one_line_error(run(*args, data_dir=data_dir), text)


def test_bad_thread_variable_is_one_line(data_dir, monkeypatch):
    monkeypatch.setenv("ARRAYNET_THREADS", "two")
    p = run("evaluate", "models/m9.safetensors", data_dir=data_dir)
    one_line_error(p, "ARRAYNET_THREADS must be a whole number")


@pytest.mark.slow
def test_bench_reports_threads(data_dir):
    p = run("bench", "-m", "m9", "--steps", "3", "--no-augment", "--threads", "3", "--json",
            data_dir=data_dir, check=True)  # fmt: skip
    assert last_json(p)["threads"] == 3
    assert "numpy (cpu, 3 threads)" in p.stderr


@pytest.mark.slow
def test_missing_cupy_is_one_line():
    p = run("train", "--model", "m4", "--backend", "cupy", "--epochs", "1")
    try:
        import cupy  # noqa: F401

        pytest.skip("cupy is installed here")
    except ImportError:
        one_line_error(p, "uv sync --extra cuda12")


@pytest.mark.slow
def test_corrupt_weights_and_images(tmp_path, data_dir):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage" * 10)
    one_line_error(run("evaluate", str(bad), data_dir=data_dir), "not a readable safetensors")
    img = tmp_path / "not-an-image.png"
    img.write_text("hello")
    weights = REPO / "models" / "m4.safetensors"
    if not weights.exists():
        from arraynet.backends import get_backend
        from arraynet.io import save_model
        from arraynet.zoo import build_layout

        weights = tmp_path / "w.safetensors"
        save_model(weights, build_layout("m4").build(get_backend("numpy")), {})
    one_line_error(run("predict", str(weights), str(img)), "not a readable image")


@pytest.mark.slow
def test_truncated_idx_makes_verify_fail(tmp_path, data_dir):
    from arraynet.data import FILES, find_file

    for name in FILES:  # raw or gzip'd, as the source folder holds them
        src = find_file(Path(data_dir), name)
        shutil.copy(src, tmp_path / src.name)
    src = find_file(tmp_path, "t10k-labels-idx1-ubyte")
    data = src.read_bytes()
    raw = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)[:5000]
    src.unlink()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw))
    p = run("data", "verify", "--data-dir", str(tmp_path))
    one_line_error(p, "t10k-labels-idx1-ubyte")
    ok = run("data", "verify", "--data-dir", str(data_dir), "--json", check=True)
    assert last_json(ok)["ok"] is True


@pytest.mark.slow
def test_plot_writes_pngs(tmp_path, data_dir):
    out = tmp_path / "run"
    run("train", "--model", "m8", "--epochs", "1", "--train-limit", "500", "--out", str(out),
        "--val-split", "500", data_dir=data_dir, check=True)  # fmt: skip
    p = run("plot", str(out), data_dir=data_dir, check=True)
    names = {Path(line).name for line in p.stdout.split()}
    assert names == {"curves.png", "confusion.png", "misclassified.png", "augmented.png"}
    for n in names:
        assert (out / n).read_bytes()[:4] == b"\x89PNG"
    # the matrix the picture shows: its diagonal is the run's recorded correct count
    from arraynet.backends import get_backend
    from arraynet.data import load_mnist, to_float
    from arraynet.io import load_model
    from arraynet.io.plots import confusion_matrix

    b = get_backend("numpy")
    model, meta = load_model(out / "model.safetensors", b)
    m = load_mnist(data_dir, quiet=True)
    pred = np.asarray(model.predict(to_float(m.test_images, b), 500)).argmax(1)
    cm = confusion_matrix(m.test_labels, pred)
    assert int(np.trace(cm)) == meta["metrics"]["correct"] and cm.sum() == 10000
    np.testing.assert_array_equal(cm.sum(1), np.bincount(m.test_labels, minlength=10))
    np.testing.assert_array_equal(cm.sum(0), np.bincount(pred, minlength=10))


def test_confusion_matrix_by_hand():
    from arraynet.io.plots import confusion_matrix

    cm = confusion_matrix(np.array([0, 1, 1, 2, 2, 2]), np.array([0, 1, 2, 2, 2, 0]), classes=3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 2]]  # rows: true, columns: predicted
    assert confusion_matrix(np.array([], int), np.array([], int), 2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match=r"must lie in 0\.\.2"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), classes=3)
    with pytest.raises(ValueError, match="1-D alike"):
        confusion_matrix(np.array([0, 1]), np.array([0]), classes=3)


@pytest.mark.slow
def test_ctrl_c_during_training_says_interrupted(tmp_path, data_dir):
    import signal

    env = {**os.environ, "ARRAYNET_DATA": str(data_dir)}
    # A suite started in the background (`nohup ... &`) inherits SIGINT as ignored, and so
    # would the child: give it the default disposition, as a terminal's Ctrl-C finds it.
    p = subprocess.Popen(
        [sys.executable, "-m", "arraynet.cli", "train", "--model", "m4", "--epochs", "500",
         "--out", str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    p.stdout.readline()  # the header: the command is running
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 130
    assert stderr.strip().splitlines()[-1] == "interrupted" and "Traceback" not in stderr


@pytest.mark.slow
def test_a_run_folder_is_never_overwritten_or_mixed(tmp_path, data_dir, mnist_sample):
    """A fresh run refuses a folder that holds a run or weights (nothing is touched), a
    resume refuses other data or another model, and an unwritable folder is refused before
    any training."""
    out = tmp_path / "run"
    run("train", "--model", "m4", "--epochs", "1", "--train-limit", "64", "--out", str(out),
        data_dir=data_dir, check=True)  # fmt: skip
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    for args in (["--model", "m5"], ["--model", "m4"]):
        p = run("train", *args, "--epochs", "1", "--train-limit", "64", "--out", str(out),
                data_dir=data_dir)  # fmt: skip
        one_line_error(p, "already holds state.json: continue that run with --resume")
    user = tmp_path / "mine"
    user.mkdir()
    (user / "model.safetensors").write_bytes(b"a user's file")
    p = run("train", "--epochs", "1", "--train-limit", "64", "--out", str(user), data_dir=data_dir)
    one_line_error(p, "already holds model.safetensors")
    assert (user / "model.safetensors").read_bytes() == b"a user's file"
    for args, text in (
        (["--model", "m4", "--train-limit", "32"], "begun with --train-limit 64, not 32"),
        (["--model", "m4", "--train-limit", "64", "--val-split", "16"], "--val-split 0, not 16"),
        (["--model", "m3", "--train-limit", "64"], "begun with --model m4, not m3"),
        (
            ["--model", "m4", "--train-limit", "64", "--data", str(mnist_sample)],
            "the training data differ from the run's",
        ),
    ):
        p = run("train", *args, "--epochs", "2", "--out", str(out), "--resume", data_dir=data_dir)
        one_line_error(p, text)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    p = run("train", "--epochs", "1", "--out", str(blocker / "run"), data_dir=data_dir)
    one_line_error(p, "cannot write the run there")
    assert re.search(r"^epoch +1 ", p.stdout, re.M) is None  # refused before training


def test_weights_of_other_dtypes(tmp_path, data_dir):
    """Integer tensors are refused; float16 weights load as float32."""
    from arraynet.backends import get_backend
    from arraynet.io import WeightsError, load_arrays, load_model, save_arrays

    src = REPO / "models" / "m4.safetensors"
    arrays, meta = load_arrays(src)
    save_arrays(tmp_path / "int.safetensors", {k: v.astype(np.int32) for k, v in arrays.items()},
                meta)  # fmt: skip
    with pytest.raises(WeightsError, match="is int32, not floating point"):
        load_model(tmp_path / "int.safetensors", get_backend("numpy"))
    one_line_error(run("evaluate", str(tmp_path / "int.safetensors"), data_dir=data_dir),
                   "not floating point")  # fmt: skip
    save_arrays(tmp_path / "half.safetensors",
                {k: v.astype(np.float16) for k, v in arrays.items()}, meta)  # fmt: skip
    for name in ("numpy", "array-api-strict"):
        model, _ = load_model(tmp_path / "half.safetensors", get_backend(name))
        assert all(str(v.dtype).endswith("float32") for v in model.parameters().values())


def test_json_output_has_no_nan():
    from arraynet.cli import _finite

    obj = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": 2}
    assert json.loads(json.dumps(_finite(obj), allow_nan=False)) == {
        "a": None, "b": [1.0, None, {"c": None}], "d": 2,
    }  # fmt: skip


def test_zoo_table_survives_unreadable_records(tmp_path):
    (tmp_path / "m4.json").write_text("[1, 2]")
    (tmp_path / "m5.json").write_bytes(b"\xff\xfe")
    (tmp_path / "m6.json").write_text('{"error_rate": "abc"}')
    (tmp_path / "m7.json").write_text('{"error_rate": 0.0194}')
    (tmp_path / "m8.json").write_text('{"error_rate": 0.0138, "recipe": [1]}')
    (tmp_path / "m9.json").write_text('{"error_rate": 0.007, "recipe": {"optimizer": "adam"}}')
    env = {**os.environ, "ARRAYNET_MODELS": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "arraynet.cli", "zoo", "--json"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr
    shipped = {r["model"]: r["shipped_error"] for r in last_json(p)["models"]}
    assert shipped["m4"] is shipped["m5"] is shipped["m6"] is None
    assert shipped["m7"] == 0.0194 and shipped["m8"] == 0.0138
    opts = {r["model"]: r["shipped_optimizer"] for r in last_json(p)["models"]}
    assert opts["m7"] is opts["m8"] is None and opts["m9"] == "adam"


def test_digit_images_with_transparency_or_float_pixels(tmp_path, data_dir):
    """Dark ink on a transparent background, and a float (mode F) picture, read as the
    same digit as the plain greyscale picture."""
    from PIL import Image

    from arraynet.data import load_mnist
    from arraynet.io.images import load_digit

    d = load_mnist(data_dir, quiet=True).test_images[0]
    Image.fromarray(d).save(tmp_path / "plain.png")
    rgba = np.zeros((*d.shape, 4), dtype=np.uint8)
    rgba[..., 3] = d  # black ink, opaque where the digit is, transparent elsewhere
    Image.fromarray(rgba, "RGBA").save(tmp_path / "transparent.png")
    Image.fromarray(d.astype(np.float32) / 255.0, "F").save(tmp_path / "float.tiff")
    ref = load_digit(tmp_path / "plain.png")
    assert ref.max() > 0.9
    half = rgba.copy()
    half[..., 3] = d // 2  # ink at most half opaque
    Image.fromarray(half, "RGBA").save(tmp_path / "faint.png")
    assert load_digit(tmp_path / "faint.png").max() > 0.4  # found, as faint as it is drawn
    for name in ("transparent.png", "float.tiff"):
        np.testing.assert_allclose(load_digit(tmp_path / name), ref, atol=0.02)


def test_parity_compares_one_library_on_two_devices(data_dir):
    """'name@device' entries are kept apart: numpy@cpu against numpy, each computed."""
    p = run("parity", "--model", "m9", "--backends", "numpy@cpu,numpy,array-api-strict@cpu",
            "--json", data_dir=data_dir, check=True)  # fmt: skip
    res = last_json(p)
    assert res["backends"] == ["numpy@cpu", "numpy", "array-api-strict@cpu"]
    assert res["ok"] is True


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of TensorBoard event files (TFRecord frames of Event protos)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(logdir.rglob("events.out.tfevents.*")):
        data, pos = f.read_bytes(), 0
        while pos < len(data):
            n = int.from_bytes(data[pos : pos + 8], "little")
            ev = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n])
            pos += 12 + n + 4
            for v in ev.summary.value:
                out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


@pytest.mark.slow
def test_a_layout_file_trains_like_its_zoo_entry_and_logs(tmp_path, data_dir):
    """`zoo --export m9` gives a layout file that trains to exactly the zoo run's numbers;
    --history writes the CSV, --logdir the TensorBoard scalars."""
    layout = tmp_path / "m9.json"
    layout.write_text(run("zoo", "--export", "m9", check=True).stdout)
    doc = json.loads(layout.read_text())
    assert doc["input_shape"] == [28, 28, 1] and doc["recipe"]["batch_size"] == 16
    args = ("--epochs", "2", "--train-limit", "256", "--val-split", "100", "--json")
    zoo = last_json(run("train", "--model", "m9", "--out", str(tmp_path / "zoo"), *args,
                        data_dir=data_dir, check=True))  # fmt: skip
    p = run("train", "--model", str(layout), "--out", str(tmp_path / "file"), *args,
            "--history", str(tmp_path / "h.csv"), "--logdir", str(tmp_path / "tb"),
            data_dir=data_dir, check=True)  # fmt: skip
    res = last_json(p)
    assert (res["error_rate"], res["test_loss"]) == (zoo["error_rate"], zoo["test_loss"])
    rows = (tmp_path / "h.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,lr,train_loss") and len(rows) == 3
    tb = _scalars(tmp_path / "tb")
    assert {"train/loss", "val/error", "val/loss", "lr", "img_per_s"} <= set(tb)
    state = json.loads((tmp_path / "file" / "state.json").read_text())
    assert [s for s, _ in tb["val/error"]] == [1, 2]
    assert tb["val/error"][1][1] == pytest.approx(state["history"][1]["val_error"])


BAD_LAYOUTS = [
    ("{not json", "not a readable JSON layout"),
    ('{"layers": []}', "a list of 'layers'"),
    ('{"layers": [{"type": "lstm"}]}', "unknown layer type 'lstm'"),
    ('{"layers": [{"type": "dense", "width": 3}]}', "bad layer"),
    ('{"layers": [{"type": "flatten"}], "recipe": {"learning_rate": 1}}',
     "unknown recipe setting 'learning_rate'"),
    ('{"layers": [{"type": "flatten"}], "recipe": {"lr": -1}}', "--lr wants"),
    ('{"layers": [{"type": "flatten"}], "input_shape": [28, 0]}', "input_shape wants"),
    ('{"layers": [{"type": "flatten"}], "inputs": [28, 28, 1]}', "unknown key 'inputs'"),
    ('{"layers": [{"type": "flatten"}, {"type": "dense", "units": 10}], '
     '"input_shape": [8, 8, 1]}', "the model takes inputs of shape (8, 8, 1)"),
    ('{"layers": [{"type": "flatten"}, {"type": "dense", "units": 5}]}',
     "labels run from 0 to 9, but the model has 5 outputs"),
]  # fmt: skip


@pytest.mark.parametrize("doc,text", BAD_LAYOUTS)
def test_bad_layout_files_are_refused_before_a_run(tmp_path, doc, text, data_dir):
    """In process (quick): every bad layout is one ValueError line, and no run starts."""
    from arraynet.backends import get_backend
    from arraynet.jobs import train_model
    from arraynet.zoo.layouts import read_layout

    path = tmp_path / "bad.json"
    path.write_text(doc)
    with pytest.raises(ValueError) as e:
        name, layout, recipe = read_layout(path)
        train_model(name, get_backend("numpy"), recipe=recipe, layout=layout, epochs=1,
                    out_dir=tmp_path / "r", data_dir=str(data_dir), train_limit=32,
                    quiet_data=True)  # fmt: skip
    assert text in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "r" / "state.json").exists()


@pytest.mark.parametrize(
    "doc,text",
    [c if i in (0, 5, 8) else pytest.param(*c, marks=pytest.mark.slow)
     for i, c in enumerate(BAD_LAYOUTS)],
)  # fmt: skip
def test_bad_layout_files_are_one_line(tmp_path, doc, text, data_dir):
    path = tmp_path / "bad.json"
    path.write_text(doc)
    p = run("train", "--model", str(path), "--epochs", "1", "--out", str(tmp_path / "r"),
            "--train-limit", "32", data_dir=data_dir)  # fmt: skip
    one_line_error(p, text)
    assert not (tmp_path / "r" / "state.json").exists()


@pytest.mark.slow
def test_own_layout_on_own_npz_trains_resumes_and_evaluates(tmp_path, data_dir):
    """The issue's check: `train --model my.json --data my.npz --out runs/x`, then
    `--resume`, equals a straight run; `evaluate --data my.npz` agrees with train."""
    from safetensors.numpy import load_file

    g = np.random.default_rng(0)
    y = g.integers(0, 4, 240)
    x = (g.random((240, 8, 8, 1)) * 90).astype(np.uint8)
    for i, c in enumerate(y):
        x[i, 4 * (c // 2) : 4 * (c // 2) + 4, 4 * (c % 2) : 4 * (c % 2) + 4, 0] = 255
    np.savez(tmp_path / "my.npz", x_train=x[:200], y_train=y[:200], x_test=x[200:],
             y_test=y[200:])  # fmt: skip
    layout = {
        "input_shape": [8, 8, 1],
        "layers": [
            {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same"},
            {"type": "activation", "fn": "relu"}, {"type": "dropout", "rate": 0.2},
            {"type": "flatten"}, {"type": "dense", "units": 4},
            {"type": "activation", "fn": "softmax"},
        ],
        "recipe": {"lr": 0.003, "batch_size": 20, "epochs": 3, "aug_p": 0.5},
    }  # fmt: skip
    (tmp_path / "my.json").write_text(json.dumps(layout))
    base = ("train", "--model", str(tmp_path / "my.json"), "--data", str(tmp_path / "my.npz"),
            "--json")  # fmt: skip
    straight = last_json(run(*base, "--out", str(tmp_path / "a"), check=True))
    run(*base, "--out", str(tmp_path / "x"), "--epochs", "1", check=True)  # (a stop after 1)
    res = last_json(run(*base, "--out", str(tmp_path / "x"), "--resume", "--epochs", "3",
                        check=True))  # fmt: skip
    assert res["epochs_run"] == 3 and res["total"] == 40 and res["data"].endswith("my.npz")
    assert res["error_rate"] < 0.5  # chance is 0.75
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "x" / "model.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a) and a.keys() == b.keys()
    assert (res["error_rate"], res["correct"]) == (straight["error_rate"], straight["correct"])
    ev = last_json(run("evaluate", str(tmp_path / "x" / "model.safetensors"), "--data",
                       str(tmp_path / "my.npz"), "--json", check=True))  # fmt: skip
    assert (ev["error_rate"], ev["correct"], ev["total"]) == (
        res["error_rate"], res["correct"], res["total"],
    )  # fmt: skip
    # the model does not fit MNIST: one line naming both shapes
    one_line_error(run("evaluate", str(tmp_path / "x" / "model.safetensors"), data_dir=data_dir),
                   "the model takes inputs of shape (8, 8, 1), but the data's samples are "
                   "(28, 28, 1)")  # fmt: skip
    # the run's plots use its own data (grey 8x8 images, 4 classes)
    run("plot", str(tmp_path / "x"), check=True)
    pngs = {p.name for p in (tmp_path / "x").glob("*.png")}
    assert pngs == {"curves.png", "confusion.png", "misclassified.png", "augmented.png"}
    # the data are checked by their contents: the same arrays under another path resume...
    shutil.copy(tmp_path / "my.npz", tmp_path / "moved.npz")
    more = last_json(run("train", "--model", str(tmp_path / "my.json"), "--data",
                         str(tmp_path / "moved.npz"), "--out", str(tmp_path / "x"), "--resume",
                         "--epochs", "4", "--json", check=True))  # fmt: skip
    assert more["epochs_run"] == 4
    # ... and other arrays are refused, even under the run's own path
    np.savez(tmp_path / "my.npz", x_train=x[:100], y_train=y[:100], x_test=x[200:],
             y_test=y[200:])  # fmt: skip
    p = run("train", "--model", str(tmp_path / "my.json"), "--data", str(tmp_path / "my.npz"),
            "--out", str(tmp_path / "x"), "--resume", "--epochs", "5")  # fmt: skip
    one_line_error(p, "the training data differ from the run's")
