"""End to end in headless Chromium: `arraynet serve` with a shipped model, a 7 drawn on
the page's canvas with the mouse (pointer events), and the page showing 7."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


def test_drawing_a_seven_shows_seven(server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(server)
            expect(page.locator("#answer")).to_have_text("-")
            _draw(page, [(60, 60), (220, 60), (120, 240)])  # a 7 in one stroke
            expect(page.locator("#answer")).to_have_text("7", timeout=30_000)
            rows = page.locator("#top li")
            expect(rows).to_have_count(3)
            assert rows.first.get_attribute("data-digit") == "7"
            pcts = [float(t.split()[0]) for t in page.locator("#top .pct").all_inner_texts()]
            assert pcts == sorted(pcts, reverse=True) and pcts[0] > 50
            expect(page.locator("#status")).to_contain_text("server")
            page.click("#clear")
            expect(page.locator("#answer")).to_have_text("-")
            expect(rows).to_have_count(0)
            _draw(page, [(140, 40), (140, 240)])  # and again: a 1
            expect(page.locator("#answer")).to_have_text("1", timeout=30_000)
        finally:
            browser.close()
