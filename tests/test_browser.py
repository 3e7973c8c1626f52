"""End to end in headless Chromium: `arraynet serve` with a shipped model, a 7 drawn on
the page's canvas with the mouse (pointer events), and the page showing 7, the model's
name and test error, and the 28x28 picture the model saw; pictures opened with the file
button or dropped on the pad answered the same way; no failed request or console error."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from arraynet.serve.app import ORT_FILES, ORT_WEB
from tests.conftest import REPO

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WEIGHTS = REPO / "models" / "best.safetensors"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason="Chromium is not installed (Debian: apt-get install chromium)",
    ),
]


BUNDLED = all((ORT_WEB / f).is_file() for f in ORT_FILES)


def _launch(pw):
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """`arraynet serve models/best.safetensors` on a free port, until the module ends."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "arraynet.cli", "serve", str(WEIGHTS), "--port", str(port)],
        cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                _, err = proc.communicate()
                pytest.fail(f"the server did not start: {err.decode()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _draw(page, points: list[tuple[int, int]]) -> None:
    """One stroke through `points` (canvas pixels), with the mouse button held."""
    box = page.locator("#pad").bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x0 + x, y0 + y, steps=12)
    page.mouse.up()


class Watched:
    """A page's failed requests (status 400 and over, or no answer), console errors and
    uncaught exceptions, collected as they happen."""

    def __init__(self, page) -> None:
        self.problems: list[str] = []
        page.on("response", self._response)
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"exception: {e}"))

    def _response(self, r) -> None:
        if r.status >= 400:
            self.problems.append(f"{r.status}: {r.url}")

    def _console(self, m) -> None:
        if m.type == "error":
            self.problems.append(f"console: {m.text}")


def _record() -> dict:
    from arraynet.io.weights import read_header

    return read_header(WEIGHTS)[1]


SEEN_PIXELS = """() => {
  const d = document.getElementById("seen").getContext("2d").getImageData(0, 0, 28, 28).data;
  return Array.from({ length: 784 }, (_, i) => d[4 * i] / 255);
}"""


def _pad_png(page) -> bytes:
    data_url = page.evaluate("document.getElementById('pad').toDataURL('image/png')")
    return base64.b64decode(data_url.split(",", 1)[1])


def _shows_what_the_model_saw(page, body: bytes) -> None:
    """The small canvas shows the server's 28x28 input for `body`, which the page's
    lastAnswer holds too."""
    from arraynet.io.images import digit_from_bytes

    want = digit_from_bytes(body).ravel()
    # The page asks while the stroke is drawn too: wait (up to 10 s) for the answer to the
    # finished drawing, whose request may still be in flight when the digit first shows.
    deadline = time.monotonic() + 10
    while True:
        shown = page.evaluate("window.lastAnswer")
        seen = page.evaluate(SEEN_PIXELS)
        done = np.allclose(shown["input"], want, atol=1e-6) and np.allclose(seen, want, atol=1e-6)
        if done or time.monotonic() > deadline:
            break
        page.wait_for_timeout(100)
    np.testing.assert_allclose(shown["input"], want, atol=1e-6)
    np.testing.assert_allclose(seen, want, atol=1e-6)
    assert want.max() > 0.5 and want.sum() > 20  # white ink on black


def test_drawing_a_seven_shows_seven(server):
    from playwright.sync_api import expect, sync_playwright

    record = _record()
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page()
            watched = Watched(page)
            page.goto(server)
            expect(page.locator("#model-name")).to_have_text(record["model"])
            error = record["metrics"]["error_rate"]
            expect(page.locator("#test-error")).to_have_text(f"{100 * error:.2f} %")
            expect(page.locator("#answer")).to_have_text("-")
            assert max(page.evaluate(SEEN_PIXELS)) == 0  # nothing seen yet
            _draw(page, [(60, 60), (220, 60), (120, 240)])  # a 7 in one stroke
            expect(page.locator("#answer")).to_have_text("7", timeout=30_000)
            expect(page.locator("#status")).to_contain_text("server")
            _shows_what_the_model_saw(page, _pad_png(page))
            rows = page.locator("#top li")
            expect(rows).to_have_count(3)
            assert rows.first.get_attribute("data-digit") == "7"
            pcts = [float(t.split()[0]) for t in page.locator("#top .pct").all_inner_texts()]
            assert pcts == sorted(pcts, reverse=True) and pcts[0] > 50
            expect(page.locator("#status")).to_contain_text("server")
            page.click("#clear")
            expect(page.locator("#answer")).to_have_text("-")
            expect(rows).to_have_count(0)
            assert max(page.evaluate(SEEN_PIXELS)) == 0
            _draw(page, [(140, 40), (140, 240)])  # and again: a 1
            expect(page.locator("#answer")).to_have_text("1", timeout=30_000)
            expect(page.locator("#status")).to_contain_text("server")
            _shows_what_the_model_saw(page, _pad_png(page))
            icon = page.locator('link[rel="icon"]').get_attribute("href")
            for url in (icon, "/favicon.ico"):  # (headless Chromium may fetch neither)
                r = page.request.get(server + url)
                assert r.status == 200 and r.headers["content-type"].startswith("image/")
            assert page.locator("#pad").get_attribute("role") == "img"
            assert page.locator("#pad").get_attribute("aria-label")
            assert watched.problems == []
        finally:
            browser.close()


def _picture(digit: np.ndarray, fmt: str) -> bytes:
    """An MNIST digit as a person photographs one: dark ink on light paper, 4x larger."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(255 - np.kron(digit, np.ones((4, 4), np.uint8))).save(buf, fmt)
    return buf.getvalue()


DROP = """([b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type }));
  return dt;
}"""


def test_an_opened_or_dropped_picture_is_answered(server, data_dir):
    """A PNG from the file button goes to the server as it is; a GIF (which the server
    does not take) goes as the browser decodes it, as PNG; a PNG dropped on the pad goes
    as it is. Each is answered, with the 28x28 picture the model saw."""
    from playwright.sync_api import expect, sync_playwright

    from arraynet.data import load_mnist

    mnist = load_mnist(data_dir, quiet=True)
    digits, labels = mnist.test_images[:3], [str(int(v)) for v in mnist.test_labels[:3]]
    png0, gif1 = _picture(digits[0], "PNG"), _picture(digits[1], "GIF")
    png2 = _picture(digits[2], "PNG")
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page()
            watched = Watched(page)
            page.goto(server)
            answer, status = page.locator("#answer"), page.locator("#status")
            files = page.locator("#file")
            files.set_input_files([{"name": "zero.png", "mimeType": "image/png", "buffer": png0}])
            expect(status).to_contain_text("Picture: zero.png", timeout=30_000)
            expect(answer).to_have_text(labels[0])
            _shows_what_the_model_saw(page, png0)
            assert page.evaluate("window.lastAnswer.picture") == "zero.png"
            files.set_input_files([{"name": "one.gif", "mimeType": "image/gif", "buffer": gif1}])
            expect(status).to_contain_text("Picture: one.gif", timeout=30_000)
            expect(answer).to_have_text(labels[1])
            shown = page.evaluate("window.lastAnswer")
            assert shown["by"] == "server" and max(shown["input"]) > 0.5
            dropped = page.evaluate_handle(
                DROP, [base64.b64encode(png2).decode(), "two.png", "image/png"]
            )
            page.dispatch_event("#pad", "drop", {"dataTransfer": dropped})
            expect(status).to_contain_text("Picture: two.png", timeout=30_000)
            expect(answer).to_have_text(labels[2])
            _shows_what_the_model_saw(page, png2)
            page.click("#clear")
            expect(answer).to_have_text("-")
            assert max(page.evaluate(SEEN_PIXELS)) == 0
            assert watched.problems == []
            refused = b"not a picture at all"
            files.set_input_files([{"name": "x.png", "mimeType": "image/png", "buffer": refused}])
            expect(status).to_contain_text("The server refused x.png: ", timeout=30_000)
            expect(status).to_contain_text("not a readable image")
            # the refused picture's 415 (and the console's line about it), nothing else
            assert watched.problems and all("415" in p for p in watched.problems)
        finally:
            browser.close()


def _post(url: str, body: bytes) -> dict:
    req = urllib.request.Request(f"{url}/predict", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def _png_url(a: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


PREPROCESS_IN_PAGE = """async (urls) => {
  const out = [];
  for (const url of urls) {
    const img = new Image();
    img.src = url;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width;
    c.height = img.height;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    out.push(Array.from(arraynetPreprocess(g.getImageData(0, 0, c.width, c.height))));
  }
  return out;
}"""


@pytest.mark.skipif(
    not BUNDLED,
    reason="onnxruntime-web is not bundled (uv run python scripts/vendor_ort_web.py needs npm)",
)
def test_the_browser_mode_answers_with_onnxruntime_web(server, data_dir):
    """The page's own preprocessing gives the server's 28x28 input, and onnxruntime-web
    in the page gives the server's probabilities, for a drawn 7 and for test digits
    drawn dark on light, on grey and small (which Pillow's Lanczos scales up)."""
    from playwright.sync_api import expect, sync_playwright

    from arraynet.data import load_mnist
    from arraynet.io.images import digit_from_bytes

    digits = load_mnist(data_dir, quiet=True).test_images[:3]
    pictures = [
        255 - np.kron(digits[0], np.ones((4, 4), np.uint8)),  # black on white, 112x112
        (60 + digits[1] // 2).astype(np.uint8),  # light ink on grey
        digits[2][4:24, 4:24].copy(),  # cropped: the ink is small, scaled up
    ]
    with sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page()
            page.goto(server)
            expect(page.locator("#modes")).to_be_visible()
            page.check('input[value="browser"]')
            _draw(page, [(60, 60), (220, 60), (120, 240)])
            expect(page.locator("#status")).to_have_text(
                "Answered in this browser (onnxruntime-web).", timeout=60_000
            )
            expect(page.locator("#answer")).to_have_text("7")
            shown = page.evaluate("window.lastAnswer")
            assert shown["by"] == "browser"
            data_url = page.evaluate("document.getElementById('pad').toDataURL('image/png')")
            png = base64.b64decode(data_url.split(",", 1)[1])
            np.testing.assert_allclose(shown["input"], digit_from_bytes(png).ravel(), atol=1e-6)
            np.testing.assert_allclose(page.evaluate(SEEN_PIXELS), shown["input"], atol=1e-6)
            served = _post(server, png)
            assert served["digit"] == 7
            np.testing.assert_allclose(shown["probabilities"], served["probabilities"], atol=1e-5)
            # a picture opened in this mode is answered here too, with the server's input
            body = _picture(digits[0], "PNG")
            page.locator("#file").set_input_files(
                [{"name": "zero.png", "mimeType": "image/png", "buffer": body}]
            )
            expect(page.locator("#status")).to_have_text(
                "Answered in this browser (onnxruntime-web). Picture: zero.png.", timeout=60_000
            )
            shown = page.evaluate("window.lastAnswer")
            assert shown["by"] == "browser" and shown["picture"] == "zero.png"
            np.testing.assert_allclose(shown["input"], digit_from_bytes(body).ravel(), atol=1e-6)
            np.testing.assert_allclose(page.evaluate(SEEN_PIXELS), shown["input"], atol=1e-6)
            served = _post(server, body)
            np.testing.assert_allclose(shown["probabilities"], served["probabilities"], atol=1e-5)
            urls = [_png_url(a) for a in pictures]
            got = page.evaluate(PREPROCESS_IN_PAGE, urls)
            for url, x in zip(urls, got, strict=True):
                ref = digit_from_bytes(base64.b64decode(url.split(",", 1)[1])).ravel()
                np.testing.assert_allclose(x, ref, atol=1e-6)
        finally:
            browser.close()
