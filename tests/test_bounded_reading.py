"""Bounded reading and data-path honesty: gzip bombs, implicit downloads, oversized or
unaccepted images, and the class-count check on MNIST. No network: downloads go to file://
mirrors, and CLI subprocesses get a `urlopen` and a `requests` transport that only log, or
serve a local folder (tests/test_cli.py's way of running the CLI, with a small
sitecustomize)."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from arraynet import datasets
from arraynet.data import FILES, DataError, find_file, load_mnist, sha256_file, verify
from arraynet.data import download as dl
from arraynet.data import mnist as mnist_mod
from arraynet.io.images import ImageError, load_digit
from tests.conftest import REPO, isolate_mnist

MiB = 1 << 20
BOMB_EXTRA = 1 << 30  # zeros beyond what the header declares
MEMORY_BOUND = 200 * MiB  # traced bytes a bomb may cost at most (in-process)
RSS_BOUND_KB = 400 * 1024  # peak RSS of a CLI run that meets a bomb (numpy and all)
TIME_BOUND_S = 10.0
SERVER_PIXELS = 4096 * 4096  # arraynet/serve/app.py MAX_PIXELS, which predict shares
PREDICT_FORMATS = ("PNG", "JPEG")  # arraynet.io.images.FORMATS, what `arraynet predict` reads

# -- helpers -----------------------------------------------------------------------------------
_SITE = """
import atexit, os, urllib.request
from pathlib import Path

_real = urllib.request.urlopen


def _log(url):
    with open(os.environ["ARRAYNET_TEST_NET_LOG"], "a") as f:
        f.write(url + "\\n")
    return os.environ.get("ARRAYNET_TEST_MIRROR")


def _urlopen(url, *args, **kwargs):
    url = getattr(url, "full_url", url)
    mirror = _log(url)
    if not mirror:
        raise OSError("the network is off in this test")
    return _real(Path(mirror, url.rsplit("/", 1)[-1]).as_uri(), *args, **kwargs)


urllib.request.urlopen = _urlopen


def _send(adapter, request, **kwargs):
    # every request `requests` makes (pooch's HTTPDownloader) goes through an adapter's send
    import requests

    mirror = _log(request.url)
    if not mirror:
        raise requests.ConnectionError("the network is off in this test")
    path = Path(mirror, request.url.rsplit("/", 1)[-1])
    response = requests.Response()
    response.url, response.request = request.url, request
    response.status_code = 200 if path.is_file() else 404
    response.raw = open(path, "rb") if path.is_file() else None
    if path.is_file():
        response.headers["Content-Length"] = str(path.stat().st_size)
    return response


class _PatchRequests:
    # replaces HTTPAdapter.send as `requests.adapters` is imported (not before: importing
    # requests takes about 0.4 s, and most commands never do)

    def find_spec(self, name, path, target=None):
        if name != "requests.adapters":
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                module.HTTPAdapter.send = _send

            spec.loader.exec_module = exec_module
        return spec


import sys

sys.meta_path.insert(0, _PatchRequests())


def _rss():
    # VmHWM: this program's own peak RSS (ru_maxrss would carry the parent's over from fork)
    try:
        with open("/proc/self/status") as f:
            kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kb = ""
    with open(os.environ["ARRAYNET_TEST_MAXRSS"], "w") as f:
        f.write(kb)


atexit.register(_rss)
"""


class Cli:
    """`python -m arraynet.cli` in a subprocess with no network (downloads are logged,
    or served from a local mirror folder), no npm, and its own peak RSS recorded."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        site = tmp / "site"
        site.mkdir(parents=True)
        (site / "sitecustomize.py").write_text(_SITE)
        (tmp / "empty-bin").mkdir()
        self.net_log = tmp / "net.log"
        self.rss_file = tmp / "maxrss"

    def __call__(
        self, *args: str, data: Path | None = None, mirror: Path | None = None
    ) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("ARRAYNET_DATA", "PYTHONPATH")}
        env.update(
            PYTHONPATH=str(self.tmp / "site"),
            PATH=str(self.tmp / "empty-bin"),  # no npm: nothing to fall back on
            XDG_CACHE_HOME=str(self.tmp / "xdg-cache"),
            ARRAYNET_TEST_NET_LOG=str(self.net_log),
            ARRAYNET_TEST_MAXRSS=str(self.rss_file),
        )
        if data is not None:
            env["ARRAYNET_DATA"] = str(data)
        if mirror is not None:
            env["ARRAYNET_TEST_MIRROR"] = str(mirror)
        self.net_log.unlink(missing_ok=True)
        return subprocess.run(
            [sys.executable, "-m", "arraynet.cli", *args],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
        )  # fmt: skip

    def downloads(self) -> list[str]:
        return self.net_log.read_text().split() if self.net_log.exists() else []

    def max_rss_kb(self) -> int:
        """The last run's peak RSS in KiB (Linux's VmHWM; the test skips where there is none)."""
        text = self.rss_file.read_text()
        if not text:
            pytest.skip("no /proc/self/status here to read a peak RSS from")
        return int(text)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "cli")


def one_line_error(p: subprocess.CompletedProcess, *texts: str) -> str:
    assert p.returncode != 0, p.stdout + p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    for text in texts:
        assert text in lines[0], lines[0]
    return lines[0]


def _zeros_members(total: int, chunk: int = 16 * MiB) -> bytes:
    """gzip members that decompress to `total` zero bytes (one 16 MiB member, repeated)."""
    block = gzip.compress(b"\0" * chunk, compresslevel=9)
    full, rest = divmod(total, chunk)
    return block * full + (gzip.compress(b"\0" * rest, compresslevel=9) if rest else b"")


def write_bomb(path: Path, header: bytes, payload: int, extra: int = BOMB_EXTRA) -> Path:
    """A .gz whose stream is `header`, `payload` zero bytes (what the header declares), then
    `extra` more zero bytes: about 1 MB on disk per GiB; built member by member, cheaply."""
    with open(path, "wb") as f:
        f.write(gzip.compress(header))
        f.write(_zeros_members(payload + extra))
    return path


def _header(images: bool, *dims: int) -> bytes:
    magic = 2051 if images else 2049
    return b"".join(d.to_bytes(4, "big") for d in (magic, *dims))


def mnist_copy(folder: Path, source: Path, leave_out: str | None = None) -> Path:
    """`folder` with the source's MNIST files (raw or .gz, as held) but `leave_out`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if name != leave_out:
            src = find_file(source, name)
            assert src is not None, f"{name} missing from {source}"
            shutil.copy(src, folder / src.name)
    return folder


def gz_mirror(folder: Path, source: Path) -> Path:
    """A folder of `<name>.gz` files, as a mirror serves them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        src = find_file(source, name)
        if src.name.endswith(".gz"):
            shutil.copy(src, folder / f"{name}.gz")
        else:
            (folder / f"{name}.gz").write_bytes(gzip.compress(src.read_bytes(), compresslevel=1))
    return folder


def traced_peak(fn) -> tuple[BaseException | None, int, float]:
    """(the exception `fn` raised or None, peak traced bytes, seconds)."""
    tracemalloc.start()
    t = time.perf_counter()
    error = None
    try:
        fn()
    except Exception as e:  # returned to the test
        error = e
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, peak, seconds


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No env data dir, a private empty cache, no checkout fallback, no mirrors and no npm.
    Returns the cache folder."""
    return isolate_mnist(monkeypatch, tmp_path)


# -- 1. gzip bombs in IDX files ----------------------------------------------------------------
def test_mnist_gzip_bomb_is_refused_in_bounded_memory(tmp_path: Path, data_dir: Path) -> None:
    """train-images whose stream runs 1 GiB past its declared 60000x28x28: one-line
    DataError, memory about the declared 47 MB, not the gigabyte."""
    folder = mnist_copy(tmp_path / "bomb", data_dir, leave_out=FILES[0])
    bomb = write_bomb(folder / f"{FILES[0]}.gz", _header(True, 60000, 28, 28), 60000 * 784)
    assert bomb.stat().st_size < 4 * MiB
    error, peak, seconds = traced_peak(lambda: load_mnist(folder, download=False))
    assert isinstance(error, DataError), error
    msg = str(error)
    assert "\n" not in msg and msg.startswith(f"{bomb.name}: ") and "trailing bytes" in msg
    assert peak < MEMORY_BOUND, f"{peak / MiB:.0f} MiB traced"
    assert seconds < TIME_BOUND_S


def test_verify_gzip_bomb_is_bounded(tmp_path: Path, data_dir: Path) -> None:
    name = "t10k-labels-idx1-ubyte"
    folder = mnist_copy(tmp_path / "bomb", data_dir, leave_out=name)
    write_bomb(folder / f"{name}.gz", _header(False, 10000), 10000)
    rows, peak, _ = None, 0, 0.0

    def run() -> None:
        nonlocal rows
        rows = verify(folder)

    error, peak, seconds = traced_peak(run)
    assert error is None, error
    bad = {r["file"]: r for r in rows if not r["ok"]}
    assert list(bad) == [name] and "trailing bytes" in bad[name]["error"]
    assert peak < MEMORY_BOUND, f"{peak / MiB:.0f} MiB traced"
    assert seconds < TIME_BOUND_S


def test_idx_folder_gzip_bomb_is_bounded(tmp_path: Path) -> None:
    """Any IDX folder (`--data FOLDER`, `datasets.load(FOLDER)`): sizes from the header."""
    folder = tmp_path / "fashion"
    folder.mkdir()
    idx = {
        "train-images-idx3-ubyte": _header(True, 3, 4, 4) + bytes(48),
        "train-labels-idx1-ubyte": _header(False, 3) + bytes(3),
        "t10k-images-idx3-ubyte": _header(True, 2, 4, 4) + bytes(32),
    }
    for name, data in idx.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    write_bomb(folder / "t10k-labels-idx1-ubyte.gz", _header(False, 2), 2)
    error, peak, seconds = traced_peak(lambda: datasets.load(folder))
    assert isinstance(error, DataError), error
    msg = str(error)
    assert "\n" not in msg and "t10k-labels-idx1-ubyte.gz" in msg and "trailing bytes" in msg
    assert peak < MEMORY_BOUND, f"{peak / MiB:.0f} MiB traced"
    assert seconds < TIME_BOUND_S


def test_absurd_declared_size_is_refused_before_allocating(tmp_path: Path) -> None:
    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(_header(True, 4_000_000_000, 4096, 4096) + bytes(100))
    )
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / name).write_bytes(_header(False, 1) + bytes(1))
    (folder / "t10k-images-idx3-ubyte").write_bytes(_header(True, 1, 1, 1) + bytes(1))
    error, peak, _ = traced_peak(lambda: datasets.load(folder))
    assert isinstance(error, DataError), error
    msg = str(error)
    assert "\n" not in msg and "train-images-idx3-ubyte.gz" in msg
    assert "declares" in msg and "more than" in msg
    assert peak < MEMORY_BOUND


def test_small_trailing_bytes_keep_their_exact_count(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(_header(False, 3) + bytes(3) + b"xyz12"))
    with pytest.raises(DataError, match=r"^labels\.gz: 5 trailing bytes after the IDX data$"):
        mnist_mod.read_idx(path, images=False)


def test_sha256_file_streams_a_bomb(tmp_path: Path) -> None:
    bomb = write_bomb(tmp_path / "x.gz", b"", 0, extra=256 * MiB)
    error, peak, _ = traced_peak(lambda: sha256_file(bomb))
    assert error is None and peak < 16 * MiB


def test_a_mirror_serving_a_bomb_is_refused_early(
    tmp_path: Path, offline: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download is checked against the file's known size, and nothing is left behind."""
    name = "t10k-labels-idx1-ubyte"
    mirror = gz_mirror(tmp_path / "mirror", data_dir)
    write_bomb(mirror / f"{name}.gz", _header(False, 10000), 10000)
    monkeypatch.setattr(dl, "MIRRORS", [mirror.as_uri() + "/"])
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as exc:
        dl.fetch(dest, quiet=True)
    msg = str(exc.value)
    assert "\n" not in msg and name in msg and "more than" in msg
    assert find_file(dest, name) is None
    finals = {f"{n}.gz" for n in FILES}
    assert not [p for p in dest.iterdir() if p.name not in finals]  # no temporary file left


@contextlib.contextmanager
def http_server(root: Path) -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server of `root`'s files: (its base URL, the paths asked for)."""
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", asked
    finally:
        server.shutdown()
        server.server_close()


def test_an_http_mirror_is_read_through_pooch_with_the_same_bounds(
    tmp_path: Path, offline: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP (pooch's HTTPDownloader, requests): a dead mirror is skipped after its
    first failure, a mirror serving a bomb is cut off at the file's bound, and nothing but
    the good files is left."""
    name = "t10k-labels-idx1-ubyte"
    root = tmp_path / "www"
    bomb = gz_mirror(root / "mnist", data_dir) / f"{name}.gz"
    write_bomb(bomb, _header(False, 10000), 10000, extra=2 * BOMB_EXTRA)
    assert bomb.stat().st_size > dl._max_served(name)  # cut off by the bound on bytes served
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    dest = tmp_path / "dest"
    with http_server(root) as (base, asked):
        monkeypatch.setattr(dl, "MIRRORS", [f"{base}gone/", f"{base}mnist/"])
        with pytest.raises(DataError) as exc:
            dl.fetch(dest, quiet=True)
    msg = str(exc.value)
    assert "\n" not in msg and f"{base}mnist/{name}.gz" in msg and "bytes served" in msg
    assert [a for a in asked if a.startswith("/gone/")] == [f"/gone/{FILES[0]}.gz"]
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in FILES if n != name)


def test_cli_verify_of_a_gzip_bomb_is_one_line_and_bounded(
    cli: Cli, tmp_path: Path, data_dir: Path
) -> None:
    name = "t10k-labels-idx1-ubyte"
    folder = mnist_copy(tmp_path / "bomb", data_dir, leave_out=name)
    write_bomb(folder / f"{name}.gz", _header(False, 10000), 10000)
    t = time.perf_counter()
    p = cli("data", "verify", "--data-dir", str(folder))
    assert time.perf_counter() - t < 30
    one_line_error(p, f"{name}.gz", "trailing bytes")
    assert cli.max_rss_kb() < RSS_BOUND_KB, f"{cli.max_rss_kb() / 1024:.0f} MiB peak RSS"


# -- 2. no implicit downloads ------------------------------------------------------------------
def test_load_mnist_does_not_download_by_default(
    tmp_path: Path, offline: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dl, "MIRRORS", [gz_mirror(tmp_path / "mirror", data_dir).as_uri() + "/"])
    typo = tmp_path / "typo"
    with pytest.raises(DataError) as exc:
        load_mnist(typo, quiet=True)
    msg = str(exc.value)
    assert "\n" not in msg and str(typo) in msg and "arraynet data fetch" in msg
    assert not typo.exists()
    with pytest.raises(DataError):
        load_mnist(quiet=True)  # the empty cache: not filled either
    assert not offline.exists()


def test_datasets_load_never_downloads_into_a_named_folder(
    tmp_path: Path, offline: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dl, "MIRRORS", [gz_mirror(tmp_path / "mirror", data_dir).as_uri() + "/"])
    typo = tmp_path / "typo"
    with pytest.raises(DataError) as exc:
        datasets.load("mnist", data_dir=typo)
    msg = str(exc.value)
    assert "\n" not in msg and str(typo) in msg and "arraynet data fetch" in msg
    assert not typo.exists()
    monkeypatch.setenv("ARRAYNET_DATA", str(typo))  # a folder named by the environment
    with pytest.raises(DataError):
        datasets.load("mnist")
    assert not typo.exists()
    monkeypatch.delenv("ARRAYNET_DATA")
    with pytest.raises(DataError, match="download=True"):
        datasets.load("mnist", download=False)  # not even into the cache
    assert not offline.exists()


def test_datasets_load_mnist_downloads_into_the_cache_saying_so(
    tmp_path: Path,
    offline: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """The library call, like Keras's: the first `load("mnist")` fills the cache, after one
    line on stderr that says what it fetches and where."""
    monkeypatch.setattr(dl, "MIRRORS", [gz_mirror(tmp_path / "mirror", data_dir).as_uri() + "/"])
    d = datasets.load("mnist")
    assert d.x_test.shape == (10000, 28, 28, 1)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "downloading" in err[0] and str(offline) in err[0]
    assert "arraynet data fetch" in err[0]
    assert sorted(p.name for p in offline.iterdir()) == sorted(f"{n}.gz" for n in FILES)
    datasets.load("mnist")  # second time: nothing to fetch, nothing said
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "models/m9.safetensors"],
        ["train", "--model", "m8", "--epochs", "1", "--out", "{tmp}/run"],
        ["bench", "--model", "m8", "--steps", "1", "--no-augment"],
        ["evaluate", "models/m9.safetensors", "--data", "MNIST"],
    ],
    ids=["evaluate", "train", "bench", "evaluate-data-MNIST"],
)
def test_cli_missing_data_dir_is_one_line_and_no_download(
    cli: Cli, tmp_path: Path, command: list[str]
) -> None:
    typo = tmp_path / "typo" / "mnist"
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    p = cli(*args, "--data-dir", str(typo))
    line = one_line_error(p, str(typo), "arraynet data fetch")
    assert "--data-dir" in line
    assert cli.downloads() == []
    assert not typo.parent.exists()


def test_cli_missing_env_data_folder_is_one_line_and_no_download(cli: Cli, tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    p = cli("evaluate", "models/m9.safetensors", data=typo)
    one_line_error(p, str(typo), "arraynet data fetch", "ARRAYNET_DATA")
    assert cli.downloads() == [] and not typo.exists()


def test_run_load_data_never_downloads(
    tmp_path: Path, offline: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What train, evaluate, bench, plot and sweep load through: not even into the cache."""
    from arraynet.jobs import load_data

    monkeypatch.setattr(dl, "MIRRORS", [gz_mirror(tmp_path / "mirror", data_dir).as_uri() + "/"])
    for data in (None, "mnist", "MNIST"):
        with pytest.raises(DataError, match="arraynet data fetch"):
            load_data(data)
    assert not offline.exists()


def test_cli_data_fetch_still_downloads(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    mirror = gz_mirror(tmp_path / "mirror", data_dir)
    dest = tmp_path / "new" / "mnist"
    p = cli("data", "fetch", "--data-dir", str(dest), mirror=mirror)
    assert p.returncode == 0, p.stderr
    assert str(dest) in p.stdout
    assert len(cli.downloads()) == 4
    assert all(row["ok"] for row in verify(dest))
    p = cli("data", "fetch", "--data-dir", str(dest))  # all there: nothing fetched
    assert p.returncode == 0 and cli.downloads() == []


# -- 3 and 4. images: size from the header, PNG and JPEG only ----------------------------------
def _pil():
    return pytest.importorskip("PIL.Image")


def _digit(size: int = 28):
    a = np.zeros((size, size), np.uint8)
    a[size // 4 : 3 * size // 4, size // 2 - 1 : size // 2 + 1] = 255
    return _pil().fromarray(a)


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small PNG file of just over the server's 4096 x 4096 pixels (one blank plane)."""
    side = 4096 + 1
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    _pil().new("L", (side, side), 255).save(path, compress_level=1)
    assert path.stat().st_size < 1 * MiB
    return path


def test_max_pixels_is_the_servers() -> None:
    from arraynet.io.images import FORMATS, MAX_PIXELS
    from arraynet.serve.app import MAX_PIXELS as SERVE_MAX_PIXELS

    assert MAX_PIXELS == SERVE_MAX_PIXELS == SERVER_PIXELS
    assert FORMATS == PREDICT_FORMATS


def test_load_digit_checks_the_size_before_decoding(huge_png: Path) -> None:
    with pytest.raises(ImageError) as exc:
        load_digit(huge_png)
    assert exc.value.reason == "size"
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{huge_png}: ") and f"{SERVER_PIXELS:,}" in msg


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "BMP"])
def test_load_digit_for_predict_takes_png_and_jpeg_only(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"digit.{fmt.lower()}"
    _digit().save(path, format=fmt)
    with pytest.raises(ImageError) as exc:
        load_digit(path, PREDICT_FORMATS)  # as `arraynet predict` reads
    assert exc.value.reason == "format"
    assert str(exc.value) == f"{path}: not a PNG or JPEG image (a {fmt} image)"
    for ok in ("PNG", "JPEG"):
        good = tmp_path / f"digit.{ok.lower()}"
        _digit().save(good, format=ok)
        assert load_digit(good, PREDICT_FORMATS).shape == (1, 28, 28, 1)


def test_cli_predict_refuses_oversized_and_other_formats(
    cli: Cli, tmp_path: Path, huge_png: Path
) -> None:
    p = cli("predict", "models/m9.safetensors", str(huge_png))
    one_line_error(p, str(huge_png), "pixels")
    gif = tmp_path / "digit.gif"
    _digit().save(gif, format="GIF")
    one_line_error(cli("predict", "models/m9.safetensors", str(gif)), str(gif), "PNG or JPEG")
    tif = tmp_path / "digit.tif"
    _digit().save(tif, format="TIFF")
    one_line_error(cli("predict", "models/m9.safetensors", str(tif)), str(tif), "PNG or JPEG")


def _image_folder(root: Path) -> None:
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            _digit(8).save(root / split / cls / "0.png")


def _folder_error(root: Path) -> str:
    with pytest.raises(DataError) as exc:
        datasets.load(root)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_image_folder_checks_size_before_decoding(tmp_path: Path, huge_png: Path) -> None:
    root = tmp_path / "set"
    _image_folder(root)
    big = root / "train" / "b" / "1.png"
    shutil.copy(huge_png, big)
    msg = _folder_error(root)
    assert msg.startswith(f"{big}: ") and f"{SERVER_PIXELS:,}" in msg


def test_image_folder_takes_png_and_jpeg_only(tmp_path: Path) -> None:
    root = tmp_path / "disguised"
    _image_folder(root)
    fake = root / "test" / "a" / "1.png"
    _digit(8).save(fake, format="GIF")  # a GIF named .png
    assert _folder_error(root) == f"{fake}: a GIF image; image folders take PNG and JPEG only"

    root = tmp_path / "gif"
    _image_folder(root)
    gif = root / "train" / "a" / "1.gif"
    _digit(8).save(gif, format="GIF")  # refused, not silently left out
    msg = _folder_error(root)
    assert msg.startswith(f"{gif}: ") and "PNG and JPEG" in msg


# -- 5. the class-count check on MNIST ---------------------------------------------------------
def _saved_model(path: Path, outputs: int) -> Path:
    import arraynet as an
    from arraynet.backends import get_backend
    from arraynet.layers import Activation, Dense, Flatten

    model = an.Sequential(
        [Flatten(), Dense(outputs), Activation("softmax")], input_shape=(28, 28, 1)
    )
    model.build(get_backend("numpy"), seed=0)
    model.save(path)
    return path


def test_cli_evaluate_on_mnist_checks_the_classes(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    """More outputs than MNIST's 10 classes: refused as `.npz` data refuses it (fewer were,
    and stay, refused by the label check, whose wording tests/test_cli.py pins)."""
    weights = _saved_model(tmp_path / "out12.safetensors", 12)
    p = cli("evaluate", str(weights), data=data_dir)
    one_line_error(
        p, "model takes (28, 28, 1) images with 12 classes; data 'mnist' has "
        "(28, 28, 1) images with 10 classes"
    )  # fmt: skip
    weights = _saved_model(tmp_path / "out5.safetensors", 5)
    p = cli("evaluate", str(weights), data=data_dir)
    one_line_error(p, "labels run from 0 to 9, but the model has 5 outputs")
