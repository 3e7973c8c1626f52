"""ONNX export: every zoo layout, user layouts and the shipped weights against onnxruntime."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnx", reason="ONNX export is the optional `onnx` extra")
pytest.importorskip("onnxruntime", reason="the export check needs onnxruntime")

import onnx

from arraynet.backends import get_backend
from arraynet.data import load_mnist
from arraynet.io import load_model
from arraynet.io.onnx_export import (
    OPSET,
    ExportError,
    compare,
    export_bytes,
    onnx_outputs,
    onnx_session,
    to_onnx,
)
from arraynet.layers import Layer
from arraynet.model import Sequential
from arraynet.zoo import LAYOUTS
from tests.conftest import REPO

TOL = 1e-5
SHIPPED = sorted((REPO / "models").glob("*.safetensors"))


def _randomise_batchnorm(model: Sequential, seed: int) -> None:
    """Batch-norm statistics and scales away from their identity init, so the export of
    every one of the four is exercised."""
    rng = np.random.default_rng(seed)
    b = model.backend
    for layer in model.layers:
        if layer.config()["type"] != "batchnorm":
            continue
        c = layer.params["gamma"].shape[0]
        f32 = b.dtype("float32")
        layer.params["gamma"] = b.from_host(rng.uniform(0.5, 1.5, c), f32)
        layer.params["beta"] = b.from_host(rng.normal(0, 0.2, c), f32)
        layer.buffers["running_mean"] = b.from_host(rng.normal(0, 0.3, c), f32)
        layer.buffers["running_var"] = b.from_host(rng.uniform(0.3, 2.0, c), f32)


def _check_random(model: Sequential, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """arraynet against onnxruntime on a few random images; returns onnxruntime's output."""
    x = np.random.default_rng(seed).random((5, *shape), dtype=np.float32)
    session = onnx_session(export_bytes(model))
    b = model.backend
    ours = b.to_host(model.predict(b.from_host(x, b.dtype("float32"))))
    theirs = onnx_outputs(session, x)
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=TOL)
    # the same class wherever the top two are not a near tie
    flat_o, flat_t = ours.reshape(len(x), -1), theirs.reshape(len(x), -1)
    top2 = np.sort(flat_o, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4
    assert (flat_o.argmax(1) == flat_t.argmax(1))[clear].all()
    return theirs


def _distinct_layouts() -> list[str]:
    """One zoo name for each layout function (m12-fast is m12's layout, ...)."""
    first: dict[str, str] = {}
    for name, fn in LAYOUTS.items():
        first.setdefault(fn.__name__, name)
    return list(first.values())


@pytest.mark.parametrize("name", _distinct_layouts())
def test_every_zoo_layout_exports(name):
    model = LAYOUTS[name]().build(get_backend("numpy"), seed=3)
    _randomise_batchnorm(model, 3)
    out = _check_random(model, model.input_shape)
    if model.fused_softmax:
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_graph_is_native_onnx_with_a_free_batch_axis():
    model = LAYOUTS["m14"]().build(get_backend("numpy"), seed=0)
    proto = to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= {"Conv", "BatchNormalization", "Relu", "Transpose", "Flatten", "Gemm",
                   "Softmax", "Identity"}  # fmt: skip
    assert sum(n.op_type == "Transpose" for n in proto.graph.node) == 2  # in, and before Flatten
    (inp,) = proto.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [28, 28, 1]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in proto.graph.output] == ["probabilities"]
    assert json.loads(proto.metadata_props[0].value) == model.config()
    # any batch size runs
    s = onnx_session(proto.SerializeToString())
    for n in (1, 3):
        assert onnx_outputs(s, np.zeros((n, 28, 28, 1), np.float32)).shape == (n, 10)


USER_LAYOUT = {
    "input_shape": [15, 13, 3],
    "layers": [
        {"type": "conv2d", "filters": 6, "kernel_size": 3, "stride": 2, "padding": 1},
        {"type": "batchnorm", "eps": 1e-3},
        {"type": "activation", "fn": "sigmoid"},
        {"type": "conv2d", "filters": 5, "kernel_size": 2, "padding": "valid"},
        {"type": "activation", "fn": "softmax"},  # over the channels of an image
        {"type": "maxpool2d", "pool_size": 2},  # 6x6 -> 3x3; a 7-wide input drops a column
        {"type": "dropout", "rate": 0.3},
        {"type": "flatten"},
        {"type": "dense", "units": 7},
        {"type": "batchnorm"},
        {"type": "activation", "fn": "tanh"},
        {"type": "dense", "units": 4},
    ],
}


def test_a_user_layout_from_a_layout_file_exports(tmp_path):
    """A layout read from a JSON file: odd sizes, int padding, stride 2, spatial softmax,
    dense batch norm, no softmax at the end (the graph gives what the model outputs)."""
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(USER_LAYOUT))
    model = Sequential.from_config(json.loads(path.read_text()))
    model.build(get_backend("numpy"), seed=5)
    _randomise_batchnorm(model, 5)
    _check_random(model, (15, 13, 3), seed=1)
    assert [o.name for o in to_onnx(model).graph.output] == ["output"]


def test_conv_output_without_flatten_comes_back_nhwc():
    model = Sequential.from_config({"input_shape": [8, 8, 2], "layers": [
        {"type": "conv2d", "filters": 3, "kernel_size": 3}, {"type": "activation", "fn": "relu"},
    ]}).build(get_backend("numpy"), seed=1)  # fmt: skip
    assert _check_random(model, (8, 8, 2)).shape == (5, 8, 8, 3)


def test_flat_input_model_exports():
    model = Sequential.from_config({"input_shape": [20], "layers": [
        {"type": "dense", "units": 6}, {"type": "batchnorm"}, {"type": "activation", "fn": "relu"},
        {"type": "dense", "units": 3}, {"type": "activation", "fn": "softmax"},
    ]}).build(get_backend("numpy"), seed=2)  # fmt: skip
    _randomise_batchnorm(model, 2)
    _check_random(model, (20,))


class Mystery(Layer):
    kind = "mystery"

    def forward(self, x, training=False):
        return x


def test_a_layer_without_an_export_rule_is_a_clear_error():
    model = Sequential([Mystery()], (4,)).build(get_backend("numpy"))
    with pytest.raises(ExportError, match=r"^layer 0 \(mystery\): no ONNX export rule"):
        to_onnx(model)
    with pytest.raises(ExportError, match="not built"):
        to_onnx(LAYOUTS["m1"]())


def test_model_export_onnx_writes_a_file(tmp_path):
    model = LAYOUTS["m9"]().build(get_backend("numpy"), seed=0)
    out = tmp_path / "m9.onnx"
    model.export_onnx(out)
    onnx.checker.check_model(str(out))
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    res = compare(model, onnx_session(out), x)
    assert res["max_abs_diff"] <= TOL and res["class_mismatches"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["m9.onnx"]  # no temporary file left


@pytest.mark.parametrize("weights", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_models_match_onnxruntime_on_test_images(weights, data_dir):
    """The parity test: every class the same and outputs within 1e-5 on real test images
    (the full 10,000 are `arraynet export W OUT --check`)."""
    mnist = load_mnist(data_dir, quiet=True)
    n = 200
    x = mnist.test_images[:n, ..., None].astype(np.float32) / np.float32(255.0)
    model, _ = load_model(weights, get_backend("numpy"))
    res = compare(model, onnx_session(export_bytes(model)), x, mnist.test_labels[:n])
    assert res["class_mismatches"] == 0
    assert res["max_abs_diff"] <= TOL
    assert res["onnx_errors"] == res["arraynet_errors"]


def _cli(*args: str, data_dir=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if data_dir is not None:
        env["ARRAYNET_DATA"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "arraynet.cli", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=600)  # fmt: skip


@pytest.mark.slow
def test_cli_export_with_full_check_agrees_with_evaluate(tmp_path, data_dir):
    """`arraynet export W OUT --check`: all 10,000 test images, both test errors printed
    and equal to `arraynet evaluate`'s."""
    weights = REPO / "models" / "m8.safetensors"
    out = tmp_path / "m8.onnx"
    p = _cli("export", str(weights), str(out), "--check", "--json", data_dir=data_dir)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])["check"]
    assert res["images"] == 10000 and res["class_mismatches"] == 0
    assert res["max_abs_diff"] <= TOL
    assert "arraynet test error" in p.stderr and "onnxruntime test error" in p.stderr
    ev = _cli("evaluate", str(weights), "--json", data_dir=data_dir)
    correct = json.loads(ev.stdout.strip().splitlines()[-1])["correct"]
    assert res["onnx_errors"] == res["arraynet_errors"] == 10000 - correct
    onnx.checker.check_model(str(out))


@pytest.mark.slow  # subprocesses
def test_cli_export_errors_are_one_line(tmp_path):
    for args, text in [
        ((str(tmp_path / "none.safetensors"), str(tmp_path / "a.onnx")), "no such weights file"),
        ((str(REPO / "models" / "m1.safetensors"), str(tmp_path)), "is a folder"),
    ]:
        p = _cli("export", *args)
        assert p.returncode == 1
        assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr
        assert text in p.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_failed_check_writes_nothing(tmp_path, data_dir, monkeypatch):
    """--check refuses to write a file whose outputs disagree (here: a faked mismatch)."""
    from typer.testing import CliRunner

    from arraynet import cli
    from arraynet.io import onnx_export

    def disagree(model, session, x, labels=None):
        return {"images": len(x), "max_abs_diff": 0.5, "class_mismatches": 3,
                "arraynet_errors": 1, "onnx_errors": 4, "arraynet_error_rate": 1e-4,
                "onnx_error_rate": 4e-4}  # fmt: skip

    monkeypatch.setattr(onnx_export, "compare", disagree)
    out = tmp_path / "m8.onnx"
    args = ["export", str(REPO / "models" / "m8.safetensors"), str(out), "--check",
            "--data-dir", str(data_dir)]  # fmt: skip
    res = CliRunner().invoke(cli.app, args)
    assert isinstance(res.exception, cli.CliError)
    assert "export check failed" in str(res.exception) and "not written" in str(res.exception)
    assert list(tmp_path.iterdir()) == []
