"""The HTTP API of `arraynet serve` through Starlette's test client, bad inputs included."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("starlette", reason="serving is the optional `serve` extra")
pytest.importorskip("httpx2", reason="the test client needs httpx2")

from PIL import Image, ImageDraw
from starlette.testclient import TestClient

from arraynet.backends import get_backend
from arraynet.data import load_mnist
from arraynet.data.arrays import uint8_to_float32
from arraynet.io import load_model
from arraynet.io.images import digit_from_bytes, load_digit
from arraynet.serve import MAX_BYTES, create_app
from tests.conftest import REPO

WEIGHTS = REPO / "models" / "best.safetensors"
LOCAL = "http://127.0.0.1:8000"  # the Host header the server answers by default


@pytest.fixture(scope="module")
def loaded():
    return load_model(WEIGHTS, get_backend("numpy"))


@pytest.fixture(scope="module")
def model(loaded):
    return loaded[0]


@pytest.fixture(scope="module")
def meta(loaded):
    return loaded[1]


@pytest.fixture(scope="module")
def client(model, meta):
    with TestClient(create_app(model, "best.safetensors", meta=meta), base_url=LOCAL) as c:
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
        assert set(res) == {"digit", "probabilities", "input_png"}
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


def seen_by_the_model(data_url: str) -> np.ndarray:
    """A predict answer's input_png as the model's float input (1, 28, 28, 1)."""
    head, _, data = data_url.partition(",")
    assert head == "data:image/png;base64"
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        assert im.format == "PNG" and im.size == (28, 28) and im.mode == "L"
        return uint8_to_float32(np.asarray(im))[None, :, :, None]


def test_predict_answers_with_the_28x28_input_the_model_saw(client, data_dir):
    """input_png is exactly the preprocessed picture (`arraynet predict`'s), for a drawing,
    a JPEG and an MNIST digit drawn dark on light."""
    digit = load_mnist(data_dir, quiet=True).test_images[0]
    bodies = [png(drawn_seven()), png(drawn_seven(), "JPEG"), png(Image.fromarray(255 - digit))]
    for body in bodies:
        r = client.post("/predict", content=body)
        assert r.status_code == 200
        seen = seen_by_the_model(r.json()["input_png"])
        np.testing.assert_array_equal(seen, digit_from_bytes(body))
        assert seen.max() > 0.5 and seen.sum() > 20  # white ink on black


def test_info_names_the_model_and_its_test_error(client, model, meta):
    """GET /info and the page's header: the weights' record names the model and its
    test error; without a record, the file's name and no error."""
    error = meta["metrics"]["error_rate"]
    assert client.get("/info").json() == {
        "model": meta["model"], "weights": "best.safetensors", "test_error": error,
        "sha256": None,
    }  # fmt: skip
    page = client.get("/").text
    assert f'<strong id="model-name">{meta["model"]}</strong>' in page
    assert f'<strong id="test-error">{100 * error:.2f} %</strong>' in page
    bare = TestClient(create_app(model, "mine.safetensors", browser=False), base_url=LOCAL)
    assert bare.get("/info").json() == {
        "model": "mine.safetensors", "weights": "mine.safetensors", "test_error": None,
        "sha256": None,
    }  # fmt: skip
    assert '<strong id="test-error">not recorded</strong>' in bare.get("/").text
    odd = {"model": "<b>m&1</b>", "metrics": {"error_rate": "high"}}  # escaped, not trusted
    app = create_app(model, "x.safetensors", browser=False, meta=odd)
    with TestClient(app, base_url=LOCAL) as c:
        assert c.get("/info").json()["test_error"] is None
        text = c.get("/").text
        assert "&lt;b&gt;m&amp;1&lt;/b&gt;" in text and "<b>m&1" not in text


def test_the_favicon_and_the_pads_role(client):
    page = client.get("/").text
    icon = re.search(r'<link rel="icon"[^>]*href="([^"]+)"', page)
    assert icon, "the page names no icon"
    for url in (icon.group(1), "/favicon.ico"):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
        assert r.content.startswith(b"<svg")
    pad = re.search(r"<canvas id=\"pad\"[^>]*>", page).group(0)
    assert 'role="img"' in pad and re.search(r'aria-label="[^"]*draw[^"]*"', pad)
    assert re.search(r'<input id="file" type="file" accept="image/\*">', page)
    assert re.search(r'<canvas id="seen" width="28" height="28" role="img"', page)


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
    with TestClient(create_app(model, browser=False), base_url=LOCAL) as off:
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


# -- under load and abuse ---------------------------------------------------------------
class Gated:
    """The model behind a gate: each forward pass records its batch size, then waits until
    the test opens `gate` (so that requests pile up deterministically)."""

    def __init__(self, model) -> None:
        self.model, self.backend = model, model.backend
        self.layers, self.fused_softmax = model.layers, model.fused_softmax
        self.gate, self.entered = threading.Event(), threading.Event()
        self.sizes: list[int] = []

    def forward(self, x, training: bool):
        self.sizes.append(int(x.shape[0]))
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.model.forward(x, training)


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def mnist_pngs(data_dir, n: int) -> list[bytes]:
    images = load_mnist(data_dir, quiet=True).test_images[:n]
    return [png(Image.fromarray(a)) for a in images]


def test_batched_answers_equal_one_at_a_time_answers(model, data_dir):
    """Pictures that arrive while a forward pass runs go into the next one, together; each
    request gets its own picture's answer, as a forward pass of that picture alone gives."""
    gated = Gated(model)
    bodies = mnist_pngs(data_dir, 64)
    app = create_app(gated, "best", browser=False, max_batch=64)
    pipeline = app.state.pipeline
    with TestClient(app, base_url=LOCAL) as c, ThreadPoolExecutor(len(bodies)) as pool:
        first = pool.submit(c.post, "/predict", content=bodies[0])
        assert gated.entered.wait(30)  # the first forward pass runs (and waits)
        rest = [pool.submit(c.post, "/predict", content=b) for b in bodies[1:]]
        wait_until(lambda: pipeline.batcher.queue.qsize() == len(bodies) - 1, "the queue")
        gated.gate.set()
        answers = [f.result().json() for f in [first, *rest]]
    assert gated.sizes == [1, len(bodies) - 1]
    b = model.backend
    for body, got in zip(bodies, answers, strict=True):
        x = b.from_host(digit_from_bytes(body), b.dtype("float32"))
        alone = b.to_host(model.forward(x, False))[0]
        assert got["digit"] == int(np.argmax(alone))
        np.testing.assert_allclose(got["probabilities"], alone, atol=1e-6)
    assert len({a["digit"] for a in answers}) == 10  # the pictures' own answers, not one


def test_the_batcher_bounds_batches_and_answers_each_caller():
    from arraynet.serve.app import Batcher

    gate, sizes = threading.Event(), []

    def double(xs):
        sizes.append(len(xs))
        gate.wait(30)
        if "boom" in xs:
            raise RuntimeError("boom")
        return [2 * x for x in xs]

    batcher = Batcher(double, max_batch=4)
    try:
        futures = [batcher.submit(1)]
        wait_until(lambda: sizes == [1], "the first batch")
        futures += [batcher.submit(k) for k in range(2, 11)]
        gate.set()
        assert [f.result(30) for f in futures] == [2 * k for k in range(1, 11)]
        assert sizes == [1, 4, 4, 1]
        bad = [batcher.submit("boom"), batcher.submit(3)]
        for f in bad:
            with pytest.raises(RuntimeError, match="boom"):
                f.result(30)
        assert batcher.submit(5).result(30) == 10  # the thread goes on
    finally:
        gate.set()
        batcher.close()


def test_a_model_that_fails_is_a_json_500(model):
    broken = Gated(model)
    broken.forward = lambda x, training: 1 / 0
    with TestClient(create_app(broken, browser=False), base_url=LOCAL) as c:
        r = c.post("/predict", content=png(drawn_seven()))
        assert r.status_code == 500 and "ZeroDivisionError" in r.json()["error"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert c.get("/healthz").status_code == 200


def test_requests_beyond_the_bound_get_503_and_healthz_still_answers(model):
    gated = Gated(model)
    app = create_app(gated, "best", browser=False, max_in_flight=2)
    pipeline = app.state.pipeline
    seven = png(drawn_seven())
    with TestClient(app, base_url=LOCAL) as c, ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(c.post, "/predict", content=seven) for _ in range(2)]
        wait_until(lambda: pipeline.in_flight == 2 and gated.entered.is_set(), "2 in flight")
        r = c.post("/predict", content=seven)
        assert r.status_code == 503 and "busy" in r.json()["error"]
        assert r.headers["retry-after"] == "1"
        # the event loop is free while predictions wait: these answer with the gate closed
        assert c.get("/healthz").json()["status"] == "ok"
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        assert not gated.gate.is_set()
        gated.gate.set()
        assert [f.result().json()["digit"] for f in waiting] == [7, 7]
        assert pipeline.in_flight == 0
        assert c.post("/predict", content=seven).json()["digit"] == 7  # the places are free
        assert c.post("/predict", content=b"").status_code == 400  # an error frees its place
        assert pipeline.in_flight == 0


def big_seven(side: int = 1200) -> bytes:
    """A drawn 7 of side x side pixels (over LARGE_PIXELS), as a PNG."""
    im = drawn_seven().resize((side, side), Image.Resampling.NEAREST)
    return png(im)


def test_large_pictures_have_a_lane_of_their_own(model, monkeypatch):
    """Pictures over LARGE_PIXELS decode one at a time beside the others: while one is
    decoding, small pictures are answered, and large ones beyond `max_large` get a 503."""
    import arraynet.io.images as images
    from arraynet.serve.app import LARGE_PIXELS, picture_pixels

    big = big_seven()
    assert picture_pixels(big) > LARGE_PIXELS
    gate, decode = threading.Event(), images.digit_from_bytes

    def held(data, *args):
        if picture_pixels(data) > LARGE_PIXELS:
            assert gate.wait(60), "the test never opened the gate"
        return decode(data, *args)

    monkeypatch.setattr(images, "digit_from_bytes", held)
    app = create_app(model, browser=False, max_large=1)
    pipeline = app.state.pipeline
    with TestClient(app, base_url=LOCAL) as c, ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(c.post, "/predict", content=big)
        wait_until(lambda: pipeline.large_in_flight == 1, "a large picture decoding")
        r = c.post("/predict", content=big)
        assert r.status_code == 503 and "large pictures" in r.json()["error"]
        assert r.headers["retry-after"] == "1"
        assert c.post("/predict", content=png(drawn_seven())).json()["digit"] == 7
        assert not gate.is_set()
        gate.set()
        assert waiting.result().json()["digit"] == 7
    assert pipeline.large_in_flight == 0 and pipeline.in_flight == 0


def test_picture_pixels_reads_headers_only():
    from arraynet.serve.app import MAX_PIXELS, picture_pixels

    for fmt in ("PNG", "JPEG"):
        for size in [(28, 28), (280, 200), (4096, 3000)]:
            assert picture_pixels(png(Image.new("L", size), fmt)) == size[0] * size[1]
    progressive = io.BytesIO()
    Image.new("RGB", (640, 480)).save(progressive, "JPEG", progressive=True)
    assert picture_pixels(progressive.getvalue()) == 640 * 480
    assert picture_pixels(b"") == picture_pixels(b"not an image") == 0
    # a JPEG whose frame header hides behind many segments counts as the largest
    assert picture_pixels(b"\xff\xd8" + b"\xff\xe0\x00\x02" * 100) == MAX_PIXELS


REFUSED = ["evil.example", "evil.example:8000", "127.0.0.1.nip.io", "localhost.evil.example",
           "127.0.0.2", "[::2]:8000", "localhost:80:80", "[::1]x"]  # fmt: skip
ACCEPTED = ["127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:1234", "localhost.",
            "[::1]", "[::1]:8000"]  # fmt: skip


def test_the_host_header_must_name_this_server(model):
    """DNS rebinding: a page of another site that resolves its name to 127.0.0.1 sends its
    own name as Host; only loopback names and those allowed are answered."""
    with TestClient(create_app(model, browser=False), base_url=LOCAL) as c:
        for host in REFUSED:
            r = c.get("/healthz", headers={"host": host})
            assert r.status_code == 400, host
            assert (
                "is not served here" in r.json()["error"] and "--allowed-host" in r.json()["error"]
            )
            assert r.headers["x-frame-options"] == "DENY"
        for host in ACCEPTED:
            assert c.get("/healthz", headers={"host": host}).status_code == 200, host
        seven = png(drawn_seven())
        assert (
            c.post("/predict", content=seven, headers={"host": "evil.example"}).status_code == 400
        )
    app = create_app(model, browser=False, allowed_hosts=["Digits.Example", "10.0.0.5", "fe80::1"])
    with TestClient(app, base_url=LOCAL) as c:
        for host in ["digits.example:443", "10.0.0.5:8000", "[fe80::1]:8000", "localhost"]:
            assert c.get("/healthz", headers={"host": host}).status_code == 200, host
        assert c.get("/healthz", headers={"host": "evil.example"}).status_code == 400
    with TestClient(create_app(model, browser=False, allowed_hosts=["*"])) as c:
        assert c.get("/healthz", headers={"host": "anything.example"}).status_code == 200
    with pytest.raises(ValueError, match="not a host name"):
        create_app(model, browser=False, allowed_hosts=["http://x.example/"])


def test_host_names():
    from arraynet.serve.app import allowed_host_names, host_name

    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:8000") == host_name("::1") == "[::1]"
    assert host_name("[0:0::1]") == "[0:0::1]"  # as sent; compared as written
    for bad in ["", ":80", "a b", "[::1", "[nothost]", "host:", "host:x", "a/b", "é.example"]:
        assert host_name(bad) is None, bad
    assert allowed_host_names(None) == {"127.0.0.1", "localhost", "[::1]"}
    assert allowed_host_names(["x.example", "*"]) is None


SECURITY = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
            "referrer-policy": "no-referrer"}  # fmt: skip


def test_every_answer_carries_the_security_headers(client):
    answers = [
        client.get("/"),
        client.get("/healthz"),
        client.get("/info"),
        client.get("/favicon.ico"),
        client.get("/static/app.js"),
        client.get("/static/style.css"),
        client.get("/model.onnx"),
        client.get("/nowhere"),
        client.get("/predict"),
        client.post("/predict", content=png(drawn_seven())),
        client.post("/predict", content=b"not an image"),
        client.get("/healthz", headers={"host": "evil.example"}),
    ]
    for r in answers:
        for k, v in SECURITY.items():
            assert r.headers[k] == v, (r.url, k)
        csp = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
        assert csp["frame-ancestors"] == "'none'" and csp["default-src"] == "'self'"
        assert csp["script-src"] == "'self' 'wasm-unsafe-eval'"  # no inline script, no eval
        assert "unsafe-inline" not in r.headers["content-security-policy"]
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")


def test_the_page_runs_under_the_content_security_policy():
    """No inline script, style or event handler: everything comes from /static."""
    page = (REPO / "arraynet" / "serve" / "static" / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert "<style" not in page and not re.search(r"\s(style|on\w+)=", page)


def test_the_weights_sha256_is_at_healthz_and_on_the_page(model):
    from arraynet.io import file_sha256

    digest = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert file_sha256(WEIGHTS) == digest
    app = create_app(model, "best.safetensors", browser=False, sha256=digest)
    with TestClient(app, base_url=LOCAL) as c:
        assert c.get("/healthz").json()["sha256"] == digest
        assert c.get("/info").json()["sha256"] == digest
        assert f"Weights: best.safetensors, SHA-256 {digest}" in c.get("/").text
        assert (
            "sha256"
            not in TestClient(create_app(model, browser=False), base_url=LOCAL)
            .get("/healthz")
            .json()
        )


def test_binding_beyond_loopback_is_a_one_line_warning():
    from arraynet.serve.app import exposure_warning

    for address in ["127.0.0.1", "127.0.0.53", "::1"]:
        assert exposure_warning(address, 8000) is None
    wild = exposure_warning("0.0.0.0", 8000)
    assert wild.startswith("warning: listening on 0.0.0.0:8000, every network interface")
    assert "\n" not in wild and "--allowed-host" in wild
    assert "192.168.1.5:80, not a loopback address:" in exposure_warning("192.168.1.5", 80)
    assert exposure_warning("::", 80).startswith("warning: listening on [::]:80")


def _serve(*args: str) -> tuple[subprocess.Popen, int, str]:
    """`arraynet serve WEIGHTS ARGS --port 0`, its port and what it printed on stderr first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "arraynet.cli", "serve", str(WEIGHTS), "--port", "0", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()
    m = re.search(r"http://\S+:(\d+)/", line)
    if m is None:
        proc.kill()
        pytest.fail(f"the server did not start: {line}{proc.communicate()[1][-2000:]}")
    return proc, int(m.group(1)), line


def _get(port: int, path: str, host: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


@pytest.mark.slow  # a subprocess
def test_cli_serve_on_every_interface_warns_and_answers_its_address():
    proc, port, _ = _serve("--host", "0.0.0.0", "--allowed-host", "digits.example")
    try:
        status, health = _get(port, "/healthz", f"127.0.0.1:{port}")
        assert status == 200
        assert health["sha256"] == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
        assert _get(port, "/healthz", f"0.0.0.0:{port}")[0] == 200  # the bound address
        assert _get(port, "/healthz", "digits.example")[0] == 200
        status, body = _get(port, "/healthz", "evil.example")
        assert status == 400 and "not served here" in body["error"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = err.splitlines()
    assert lines and lines[0].startswith("warning: listening on 0.0.0.0:")
    assert sum("warning" in x for x in lines) == 1


@pytest.mark.slow  # a subprocess
def test_cli_serve_refuses_a_bad_allowed_host_in_one_line():
    p = subprocess.run(
        [sys.executable, "-m", "arraynet.cli", "serve", str(WEIGHTS), "--allowed-host", "a b"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1
    assert "--allowed-host" in p.stderr and "not a host name" in p.stderr


@pytest.mark.slow  # a server under a few seconds of load
def test_the_load_test_script_sees_no_error_and_no_wrong_answer(tmp_path, data_dir):
    out = tmp_path / "load.json"
    p = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "load_test_serve.py"), "--clients", "16",
         "--seconds", "3", "--big-clients", "1", "--json", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "ARRAYNET_DATA": str(data_dir)},
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads(out.read_text())["results"]
    assert res["answers"] > 0 and res["healthz_polls"] > 0
    assert res["errors"] == 0 and res["wrong_answers"] == 0
    assert "requests/s" in p.stdout
