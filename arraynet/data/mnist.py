"""MNIST: locate, verify and parse the four original IDX files (raw or gzip'd).

`load_mnist` (in `arraynet.data.download`) reads them into a `Data`."""

from __future__ import annotations

import gzip
import hashlib
import os
import shlex
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from arraynet.data.container import Data, DataError
from arraynet.files import one_line

__all__ = [
    "FILES",
    "MAX_IDX_BYTES",
    "MNIST",
    "SHA256",
    "SIZES",
    "DataError",
    "cache_dir",
    "checkout_data_dir",
    "find_file",
    "locate",
    "missing_files",
    "missing_message",
    "read_idx",
    "resolve_data_dir",
    "sha256_file",
    "stream_idx",
    "verify",
    "verify_or_raise",
]

ENV_VAR = "ARRAYNET_DATA"

#: SHA-256 of the *decompressed* IDX files (the canonical hashes other loaders pin).
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FILES: tuple[str, ...] = tuple(SHA256)

_COUNTS = {"train": 60000, "t10k": 10000}
_ROWS = _COLS = 28
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_READ_ERRORS = (OSError, EOFError, zlib.error)


def _role(name: str) -> tuple[bool, int]:
    """(images?, item count) of the MNIST file `name`."""
    return "images" in name, _COUNTS[name.split("-", 1)[0]]


def _size(name: str) -> int:
    """Decompressed bytes of the MNIST file `name`: its header and its items."""
    images, count = _role(name)
    return 16 + count * _ROWS * _COLS if images else 8 + count


#: Decompressed size of each MNIST file.
SIZES: dict[str, int] = {name: _size(name) for name in FILES}
#: The most bytes any IDX file may declare in its header (refused before reading on).
MAX_IDX_BYTES = 1 << 31


#: The former MNIST container: MNIST loads as a `Data` (`train_images` is `x_train` ...).
MNIST = Data
# (`DataError` is re-exported from `arraynet.data.container`; `one_hot` and `to_float`, whose
# home is `arraynet.data.arrays`, are found by `__getattr__` below.)


# -- locating files ----------------------------------------------------------------------------
def cache_dir() -> Path:
    """The user cache folder's `mnist/`, the platform's own (platformdirs): on Linux
    `$XDG_CACHE_HOME/arraynet/mnist`, else `~/.cache/arraynet/mnist`; on macOS
    `~/Library/Caches/arraynet/mnist` (`$XDG_CACHE_HOME` is honoured there too); on
    Windows `%LOCALAPPDATA%\\arraynet\\Cache\\mnist`."""
    from platformdirs import user_cache_dir  # (imported on first use: a quick CLI start)

    return Path(user_cache_dir("arraynet", appauthor=False)) / "mnist"


def checkout_data_dir() -> Path | None:
    """`../shared/data/mnist` beside a source checkout of arraynet (where CI keeps the files),
    or None when arraynet is not running from a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        return None
    return root.parent / "shared" / "data" / "mnist"


def _holds_any(folder: Path) -> bool:
    return any(find_file(folder, name) is not None for name in FILES)


def missing_files(folder: Path) -> list[str]:
    """The IDX names of which `folder` holds neither the raw nor the gzip'd file."""
    return [name for name in FILES if find_file(folder, name) is None]


def _pick(folder: Path) -> Path:
    """`folder`, or `folder/mnist` when only the latter holds MNIST files."""
    if not _holds_any(folder) and _holds_any(folder / "mnist"):
        return folder / "mnist"
    return folder


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds (or will hold) the files. Never downloads.

    In order: `data_dir`; else $ARRAYNET_DATA; else the cache folder (`cache_dir()`, which
    `arraynet data fetch` fills) when it holds any of the files; else `../shared/data/mnist`
    beside a source checkout when it holds all four; else the cache folder. A folder whose
    `mnist/` subfolder holds the files resolves to that subfolder.
    """
    if data_dir is not None:
        return _pick(Path(data_dir).expanduser())
    env = os.environ.get(ENV_VAR)
    if env:
        return _pick(Path(env).expanduser())
    cache = cache_dir()
    if _holds_any(cache):
        return cache
    shared = checkout_data_dir()
    if shared is not None and not missing_files(_pick(shared)):
        return _pick(shared)
    return cache


def missing_message(
    folder: Path,
    missing: list[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    api: bool = False,
) -> str:
    """The one message for MNIST files that are not there (CLI, library and tests): how to
    fetch them, into the folder the user named (`data_dir`) when there is one; `api` adds the
    library's `download=True`."""
    fetch = "arraynet data fetch"
    if data_dir is not None:
        fetch += f" --data-dir {shlex.quote(os.fspath(data_dir))}"
    ways = [f"run `{fetch}`" + (" to download them there" if data_dir is not None else "")]
    if api:
        ways.append("pass download=True")
    if data_dir is None:
        ways.append(f"set {ENV_VAR} to a folder that holds them")
    how = ways[0] if len(ways) == 1 else f"{', '.join(ways[:-1])}, or {ways[-1]}"
    return f"MNIST files not found in {folder}: {', '.join(missing)} ({how})"


def locate(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The resolved folder, checked to hold all four files (raw or gzip'd); DataError if not
    (saying how to fetch them). Never downloads, never creates a folder."""
    folder = resolve_data_dir(data_dir)
    missing = missing_files(folder)
    if missing:
        raise DataError(missing_message(folder, missing, data_dir))
    return folder


def find_file(folder: Path, name: str) -> Path | None:
    """The raw `name` or the gzip'd `name.gz` inside `folder` (raw preferred), else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


# -- hashing -----------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of the file's decompressed bytes, read as a stream (gzip is detected by
    its magic bytes)."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with _open(path) as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except _READ_ERRORS as e:
        raise DataError(f"{path.name}: unreadable file ({one_line(e)})") from e
    return digest.hexdigest()


def _mismatch(name: str, got: str) -> str:
    return f"SHA-256 mismatch (expected {SHA256[name][:16]}…, got {got[:16]}…)"


def verify(data_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Hash each of the four files; one row per file: file, path, sha256, ok, error.

    Each file is read as a stream and checked against its IDX header (a file longer than its
    header declares stops there). Missing or unreadable files get `ok=False` and an `error`
    (and `sha256` None unless the file was read to its end); nothing is raised or downloaded.
    """
    folder = resolve_data_dir(data_dir)
    rows: list[dict[str, Any]] = []
    for name in FILES:
        path = find_file(folder, name)
        digest, error = None, None
        if path is None:
            error = f"not found in {folder} (neither {name} nor {name}.gz)"
        else:
            images, count = _role(name)
            h = hashlib.sha256()
            try:
                stream_idx(path, images, count=count, size=(_ROWS, _COLS), digest=h, keep=False)
            except DataError as e:
                error = str(e).removeprefix(f"{path.name}: ")
            else:
                digest = h.hexdigest()
                error = None if digest == SHA256[name] else _mismatch(name, digest)
        where = str(path or folder / name)
        rows.append(
            {"file": name, "path": where, "sha256": digest, "ok": error is None, "error": error}
        )
    return rows


def verify_or_raise(data_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Like `verify`, but raise DataError naming the first missing or bad file."""
    rows = verify(data_dir)
    for row in rows:
        if not row["ok"]:
            raise DataError(f"{Path(row['path']).name}: {row['error']}")
    return rows


# -- parsing: a stream, bounded by the header --------------------------------------------------
def _open(path: Path) -> IO[bytes]:
    """The file's decompressed bytes as a stream (gzip detected by its magic bytes)."""
    if _is_gzip(path):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _read_upto(f: IO[bytes], n: int) -> bytes:
    """`n` bytes, or fewer only where the stream ends."""
    parts: list[bytes] = []
    got = 0
    while got < n and (chunk := f.read(n - got)):
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _truncated(label: str, expected: str | int, got: int) -> DataError:
    return DataError(f"{label}: truncated IDX file (expected {expected} bytes, got {got})")


def _parse_header(
    label: str, head: bytes, images: bool, count: int | None, size: tuple[int, int] | None
) -> tuple[int, int, int]:
    """(items, rows, cols) from an IDX header, checked against `count` and `size` when given
    and against MAX_IDX_BYTES; raises DataError."""
    magic, header = (_IMAGE_MAGIC, 16) if images else (_LABEL_MAGIC, 8)
    if count is not None and (size is not None or not images):
        expected: str | int = header + count * (size[0] * size[1] if images else 1)
    else:
        expected = f"at least {header}"  # the header gives the rest
    if len(head) < 4:
        raise _truncated(label, expected, len(head))
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        kind = "image" if images else "label"
        raise DataError(f"{label}: bad IDX magic {found} (expected {magic} for a {kind} file)")
    if len(head) < header:
        raise _truncated(label, expected, len(head))
    dims = [int.from_bytes(head[i : i + 4], "big") for i in range(4, header, 4)]
    rows, cols = (dims[1], dims[2]) if images else (1, 1)
    if images and size is not None and (rows, cols) != size:
        raise DataError(f"{label}: bad image size {rows}x{cols} (expected {size[0]}x{size[1]})")
    if count is not None and dims[0] != count:
        raise DataError(f"{label}: header says {dims[0]} items (expected {count})")
    total = header + dims[0] * rows * cols
    if total > MAX_IDX_BYTES:
        raise DataError(
            f"{label}: the header declares {total:,} bytes ({dims[0]:,} items of {rows}x{cols}), "
            f"more than the {MAX_IDX_BYTES:,} allowed"
        )
    return dims[0], rows, cols


def _read_payload(
    f: IO[bytes], label: str, header: int, nbytes: int, digest: Any, keep: bool
) -> np.ndarray | None:
    """Exactly `nbytes` from the stream, into one array (or a reused chunk when not `keep`)."""
    try:
        out = np.empty(nbytes if keep else min(nbytes, _CHUNK), dtype=np.uint8)
    except MemoryError:
        raise DataError(f"{label}: the header declares {header + nbytes:,} bytes, "
                        "more than this machine can hold") from None  # fmt: skip
    view = memoryview(out)
    pos = 0
    while pos < nbytes:
        k = min(_CHUNK, nbytes - pos)
        dst = view[pos : pos + k] if keep else view[:k]
        got = f.readinto(dst)
        if not got:
            raise _truncated(label, header + nbytes, header + pos)
        if digest is not None:
            digest.update(dst[:got])
        pos += got
    return out if keep else None


def _check_end(f: IO[bytes], label: str, total: int) -> None:
    """Refuse bytes after the declared data (at most two chunks of them are read)."""
    extra = 0
    while extra <= _CHUNK and (chunk := f.read(_CHUNK)):
        extra += len(chunk)
    if extra > _CHUNK:
        raise DataError(
            f"{label}: more than {_CHUNK:,} trailing bytes after the IDX data "
            f"(its header declares {total:,} bytes)"
        )
    if extra:
        raise DataError(f"{label}: {extra} trailing bytes after the IDX data")


def stream_idx(
    path: Path,
    images: bool,
    *,
    count: int | None = None,
    size: tuple[int, int] | None = None,
    digest: Any = None,
    keep: bool = True,
    label: str | None = None,
) -> np.ndarray | None:
    """Read an IDX file of unsigned bytes (raw or gzip'd) as a stream, bounded by its header.

    The 16-byte (images) or 8-byte (labels) header is read first and checked (magic,
    `count` and `size` when given, at most MAX_IDX_BYTES in all); then exactly the declared
    bytes are read, and a stream that goes on past them stops with DataError: a gzip bomb
    costs its declared size, never what it expands to. `digest` (a hashlib object) is fed
    every byte. Returns images (N, rows, cols) or labels (N,), writable, or None when not
    `keep`. Errors are one line naming `label` (default: the file name).
    """
    label = label or path.name
    header = 16 if images else 8
    try:
        with _open(path) as f:
            head = _read_upto(f, header)
            n, rows, cols = _parse_header(label, head, images, count, size)
            if digest is not None:
                digest.update(head)
            out = _read_payload(f, label, header, n * rows * cols, digest, keep)
            _check_end(f, label, header + n * rows * cols)
    except _READ_ERRORS as e:
        raise DataError(f"{label}: unreadable file ({one_line(e)})") from e
    if out is None:
        return None
    return out.reshape(n, rows, cols) if images else out


def read_idx(path: Path, images: bool) -> np.ndarray:
    """Any IDX file of unsigned bytes (raw or gzip'd): images (N, rows, cols) or labels (N,).

    Sizes come from the header, and the file is read as a stream up to them; a short, long
    or corrupt file raises DataError naming it. Returns a writable array.
    """
    out = stream_idx(path, images)
    assert out is not None
    return out


def _load_file(folder: Path, name: str, check_hash: bool) -> np.ndarray:
    path = find_file(folder, name)
    if path is None:
        raise DataError(f"{name}: not found in {folder} (neither {name} nor {name}.gz)")
    images, count = _role(name)
    digest = hashlib.sha256() if check_hash else None
    arr = stream_idx(path, images, count=count, size=(_ROWS, _COLS), digest=digest)
    assert arr is not None
    if digest is not None:
        got = digest.hexdigest()
        if got != SHA256[name]:
            raise DataError(f"{path.name}: {_mismatch(name, got)}")
    if "labels" in name:
        if arr.max(initial=0) > 9:
            raise DataError(f"{path.name}: label {int(arr.max())} out of range 0..9")
        return arr.astype(np.int64)
    return arr  # writable; nothing else refers to its memory


def __getattr__(name: str) -> Any:
    """`one_hot` and `to_float`, moved to `arraynet.data.arrays`: imported on first use, so
    that reading MNIST does not load the backends."""
    if name in _MOVED:
        from arraynet.data import arrays

        return getattr(arrays, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_MOVED = ("one_hot", "to_float")
