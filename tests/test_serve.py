"""The HTTP API of `arraynet serve` through Starlette's test client, bad inputs included."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("starlette", reason="serving is the optional `serve` extra")
pytest.importorskip("httpx2", reason="the test client needs httpx2")

from PIL import Image, ImageDraw
from starlette.testclient import TestClient

from arraynet.backends import get_backend
from arraynet.data import load_mnist
from arraynet.io import load_model
from arraynet.io.images import digit_from_bytes, load_digit
from arraynet.serve import MAX_BYTES, create_app
from tests.conftest import REPO

WEIGHTS = REPO / "models" / "best.safetensors"


@pytest.fixture(scope="module")
def model():
    return load_model(WEIGHTS, get_backend("numpy"))[0]


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(model, "best.safetensors")) as c:
        yield c


def png(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def drawn_seven() -> Image.Image:
    """A 7 as a person draws it: a thick white stroke on black, 280x280 like the page."""
    im = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(im).line([(60, 60), (220, 60), (120, 240)], fill=255, width=22, joint="curve")
    return im


def test_predict_answers_the_digit_of_mnist_pngs(client, model, data_dir):
    mnist = load_mnist(data_dir, quiet=True)
    b = model.backend
    for i in range(6):
        body = png(Image.fromarray(mnist.test_images[i]))
        r = client.post("/predict", content=body, headers={"content-type": "image/png"})
        assert r.status_code == 200
        res = r.json()
        assert set(res) == {"digit", "probabilities"}
        assert res["digit"] == int(mnist.test_labels[i])
        assert len(res["probabilities"]) == 10 and abs(sum(res["probabilities"]) - 1) < 1e-4
        # the same preprocessing and model as `arraynet predict`
        x = b.from_host(digit_from_bytes(body), b.dtype("float32"))
        ref = b.to_host(model.forward(x, False))[0]
        np.testing.assert_allclose(res["probabilities"], ref, atol=1e-6)


def test_predict_reads_a_drawn_seven_as_png_and_jpeg(client):
    for fmt in ("PNG", "JPEG"):
        r = client.post("/predict", content=png(drawn_seven(), fmt))
        assert r.status_code == 200 and r.json()["digit"] == 7


def test_bytes_and_file_preprocessing_agree(tmp_path):
    drawn_seven().save(tmp_path / "seven.png")
    data = (tmp_path / "seven.png").read_bytes()
    np.testing.assert_array_equal(load_digit(tmp_path / "seven.png"), digit_from_bytes(data))


def test_bad_input_is_a_4xx_with_a_json_error(client):
    good = png(drawn_seven())
    cases = [
        (b"", 400, "empty"),
        (b"hello, not an image", 415, "not a PNG or JPEG"),
        (png(drawn_seven(), "GIF"), 415, "not a PNG or JPEG"),
        (good[: len(good) // 2], 400, "not a readable image"),  # a truncated PNG
        (png(Image.new("L", (64, 64), 0)), 422, "blank"),
        (png(Image.new("L", (64, 64), 255)), 422, "blank"),
        (b"\x89PNG" + b"\0" * MAX_BYTES, 413, "at most"),
        (png(Image.new("1", (5000, 5000), 0)), 413, "pixels"),  # small file, huge picture
    ]
    for body, status, text in cases:
        r = client.post("/predict", content=body)
        assert r.status_code == status, (status, r.text)
        assert r.headers["content-type"] == "application/json"
        assert text in r.json()["error"]


def test_a_body_over_the_limit_is_refused_without_a_length(client):
    """Chunked upload (no Content-Length): the stream is cut at the limit."""

    def chunks():
        for _ in range(MAX_BYTES // 65536 + 2):
            yield b"\0" * 65536

    r = client.post("/predict", content=chunks())
    assert r.status_code == 413 and "at most" in r.json()["error"]


def test_healthz_page_and_unknown_routes(client):
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "model": "best.safetensors", "browser": health["browser"]}
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/nowhere").status_code == 404
    r = client.get("/predict")
    assert r.status_code == 405 and "error" in r.json()


def test_a_model_without_softmax_output_is_refused():
    m1 = load_model(REPO / "models" / "m1.safetensors", get_backend("numpy"))[0]
    with pytest.raises(ValueError, match="ends in tanh"):
        create_app(m1)


@pytest.mark.slow  # subprocesses
def test_cli_serve_errors_are_one_line():
    env = dict(os.environ)
    for args, text in [
        ((str(REPO / "models" / "m1.safetensors"),), "ends in tanh"),
        ((str(WEIGHTS), "--port", "70000"), "--port"),
    ]:
        p = subprocess.run([sys.executable, "-m", "arraynet.cli", "serve", *args], env=env,
                           capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
        assert p.returncode == 1, p.stderr
        assert len(p.stderr.splitlines()) == 1 and text in p.stderr


def test_a_port_in_use_is_a_one_line_error():
    from arraynet.serve.app import listen

    with listen("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}"):
            listen("127.0.0.1", port)


def test_model_onnx_is_the_export_when_the_browser_mode_is_on(client, model, data_dir):
    """GET /model.onnx (what onnxruntime-web runs) is the model's export; without the
    bundled onnxruntime-web, or with the mode off, it is a 404 with a JSON error."""
    from arraynet.serve.app import ORT_FILES, ORT_WEB

    bundled = all((ORT_WEB / f).is_file() for f in ORT_FILES)
    assert client.get("/healthz").json()["browser"] is bundled
    r = client.get("/model.onnx")
    if bundled:
        pytest.importorskip("onnxruntime")
        from arraynet.io.onnx_export import compare, onnx_session

        assert r.status_code == 200
        x = load_mnist(data_dir, quiet=True).test_images[:20, ..., None] / np.float32(255.0)
        res = compare(model, onnx_session(r.content), x.astype(np.float32))
        assert res["class_mismatches"] == 0 and res["max_abs_diff"] <= 1e-5
    else:
        assert r.status_code == 404 and "error" in r.json()
    with TestClient(create_app(model, browser=False)) as off:
        assert off.get("/healthz").json()["browser"] is False
        r = off.get("/model.onnx")
        assert r.status_code == 404 and "in-browser mode is off" in r.json()["error"]


def test_vendored_wants_every_file_of_the_pinned_version(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "vendor_ort_web", REPO / "scripts" / "vendor_ort_web.py"
    )
    vendor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vendor)
    assert not vendor.vendored(tmp_path)
    for name in vendor.FILES:
        (tmp_path / name).write_bytes(b"x")
    assert not vendor.vendored(tmp_path)  # no NOTICE.json
    (tmp_path / "NOTICE.json").write_text(json.dumps({"version": "0.0.1"}))
    assert not vendor.vendored(tmp_path)
    (tmp_path / "NOTICE.json").write_text(json.dumps({"version": vendor.VERSION}))
    assert vendor.vendored(tmp_path)
