"""MNIST: locate, verify and parse the four original IDX files (raw or gzip'd)."""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FILES",
    "MNIST",
    "SHA256",
    "DataError",
    "cache_dir",
    "find_file",
    "load_mnist",
    "one_hot",
    "read_idx",
    "resolve_data_dir",
    "sha256_file",
    "to_float",
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


class DataError(ValueError):
    """A data file is missing, corrupt or could not be downloaded (one-line message)."""


@dataclass(repr=False)
class MNIST:
    """The MNIST arrays on the host: uint8 images (N, 28, 28) and int64 labels (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def __repr__(self) -> str:
        return (
            f"MNIST(train={self.train_images.shape}/{self.train_images.dtype}, "
            f"test={self.test_images.shape}/{self.test_images.dtype})"
        )


# -- locating files ----------------------------------------------------------------------------
def cache_dir() -> Path:
    """The user cache folder: `$XDG_CACHE_HOME/arraynet/mnist` or `~/.cache/arraynet/mnist`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "arraynet" / "mnist"


def _holds_any(folder: Path) -> bool:
    return any(find_file(folder, name) is not None for name in FILES)


def _pick(folder: Path) -> Path:
    """`folder`, or `folder/mnist` when only the latter holds MNIST files."""
    if not _holds_any(folder) and _holds_any(folder / "mnist"):
        return folder / "mnist"
    return folder


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds (or will hold) the files: `data_dir`, else $ARRAYNET_DATA, else cache.

    A folder whose `mnist/` subfolder holds the files resolves to that subfolder. Never downloads.
    """
    if data_dir is not None:
        return _pick(Path(data_dir).expanduser())
    env = os.environ.get(ENV_VAR)
    if env:
        return _pick(Path(env).expanduser())
    return cache_dir()


def find_file(folder: Path, name: str) -> Path | None:
    """The raw `name` or the gzip'd `name.gz` inside `folder` (raw preferred), else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# -- hashing -----------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of the file's decompressed bytes; gzip is detected by its magic bytes."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        opener = gzip.open if _is_gzip(path) else open
        with opener(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except _READ_ERRORS as e:
        raise DataError(f"{path.name}: unreadable file ({_one_line(e)})") from e
    return digest.hexdigest()


def _mismatch(name: str, got: str) -> str:
    return f"SHA-256 mismatch (expected {SHA256[name][:16]}…, got {got[:16]}…)"


def verify(data_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Hash each of the four files; one row per file: file, path, sha256, ok, error.

    Missing or unreadable files get `ok=False` and an `error`; nothing is raised or downloaded.
    """
    folder = resolve_data_dir(data_dir)
    rows: list[dict[str, Any]] = []
    for name in FILES:
        path = find_file(folder, name)
        digest, error = None, None
        if path is None:
            error = f"not found in {folder} (neither {name} nor {name}.gz)"
        else:
            try:
                data = _read_bytes(path)
                digest = hashlib.sha256(data).hexdigest()
                count = _COUNTS[name.split("-", 1)[0]]
                _parse_idx(path.name, data, images="images" in name, count=count)
            except DataError as e:
                error = str(e).removeprefix(f"{path.name}: ")
            else:
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


# -- parsing -----------------------------------------------------------------------------------
def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if data[:2] == _GZIP_MAGIC else data
    except _READ_ERRORS as e:
        raise DataError(f"{path.name}: unreadable file ({_one_line(e)})") from e


def _parse_idx(
    label: str,
    data: bytes,
    images: bool,
    count: int | None,
    size: tuple[int, int] | None = (_ROWS, _COLS),
) -> np.ndarray:
    """Check an IDX header and return the payload as a read-only uint8 array.

    Images are IDX3 (N, rows, cols), labels IDX1 (N,). `count` and `size` pin the item count
    and the image size (MNIST's); None takes them from the header.
    """
    magic, header = (_IMAGE_MAGIC, 16) if images else (_LABEL_MAGIC, 8)
    if count is not None and (size is not None or not images):
        expected = f"{header + count * (size[0] * size[1] if images else 1)}"
    else:
        expected = f"at least {header}"  # the header gives the rest
    truncated = f"{label}: truncated IDX file (expected {{}} bytes, got {len(data)})"
    if len(data) < 4:
        raise DataError(truncated.format(expected))
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        kind = "image" if images else "label"
        raise DataError(f"{label}: bad IDX magic {found} (expected {magic} for a {kind} file)")
    if len(data) < header:
        raise DataError(truncated.format(expected))
    dims = np.frombuffer(data, dtype=">u4", count=(header - 4) // 4, offset=4).tolist()
    rows, cols = (dims[1], dims[2]) if images else (1, 1)
    if images and size is not None and (rows, cols) != size:
        raise DataError(f"{label}: bad image size {rows}x{cols} (expected {size[0]}x{size[1]})")
    if count is not None and dims[0] != count:
        raise DataError(f"{label}: header says {dims[0]} items (expected {count})")
    n = dims[0]
    total = header + n * rows * cols
    if len(data) < total:
        raise DataError(truncated.format(total))
    if len(data) > total:
        raise DataError(f"{label}: {len(data) - total} trailing bytes after the IDX data")
    out = np.frombuffer(data, dtype=np.uint8, offset=header)
    return out.reshape(n, rows, cols) if images else out


def read_idx(path: Path, images: bool) -> np.ndarray:
    """Any IDX file of unsigned bytes (raw or gzip'd): images (N, rows, cols) or labels (N,).

    Sizes come from the header; a short, long or corrupt file raises DataError naming it.
    Returns a writable copy.
    """
    arr = _parse_idx(path.name, _read_bytes(path), images=images, count=None, size=None)
    return arr.copy()


def _load_file(folder: Path, name: str, check_hash: bool) -> np.ndarray:
    path = find_file(folder, name)
    if path is None:
        raise DataError(f"{name}: not found in {folder} (neither {name} nor {name}.gz)")
    data = _read_bytes(path)
    count = _COUNTS[name.split("-", 1)[0]]
    arr = _parse_idx(path.name, data, images="images" in name, count=count)
    if check_hash:
        got = hashlib.sha256(data).hexdigest()
        if got != SHA256[name]:
            raise DataError(f"{path.name}: {_mismatch(name, got)}")
    if "labels" in name:
        if arr.max(initial=0) > 9:
            raise DataError(f"{path.name}: label {int(arr.max())} out of range 0..9")
        return arr.astype(np.int64)
    return arr.copy()  # writable, owns its memory


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    verify: bool = True,
    quiet: bool = False,
) -> MNIST:
    """Load MNIST from the resolved folder, downloading missing files when `download` is true.

    Checks every IDX header and (when `verify`) the SHA-256 of every file; raises DataError.
    """
    folder = resolve_data_dir(data_dir)
    missing = [name for name in FILES if find_file(folder, name) is None]
    if missing:
        if not download:
            raise DataError(
                f"MNIST files missing from {folder}: {', '.join(missing)} "
                "(pass download=True or run the data fetch step)"
            )
        from arraynet.data.download import download_missing

        download_missing(folder, missing, quiet=quiet)
    arrays = [_load_file(folder, name, verify) for name in FILES]
    return MNIST(*arrays)


# -- conversions -------------------------------------------------------------------------------
def to_float(images_uint8: np.ndarray, backend: Any) -> Any:
    """uint8 images (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1] on `backend` (NHWC)."""
    x = np.asarray(images_uint8)
    if x.dtype != np.uint8:
        raise ValueError(f"to_float expects uint8 images, got {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"to_float expects images of shape (N, H, W), got {x.shape}")
    host = x.astype(np.float32) / np.float32(255.0)
    return backend.from_host(host, backend.dtype("float32"))


def one_hot(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Integer labels (N,) -> float32 one-hot rows (N, num_classes)."""
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"one_hot expects a 1-D integer array, got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    out = np.zeros((y.shape[0], num_classes), dtype=np.float32)
    out[np.arange(y.shape[0]), y] = 1.0
    return out
