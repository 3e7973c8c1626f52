"""Weights and checkpoints: safetensors files plus JSON metadata, written atomically.

Loading never runs code: a file holds named float arrays and a JSON string.

Every file written here carries a checksum in its safetensors metadata (`__metadata__`,
key `sha256`): the SHA-256 hex digest of, for each tensor in sorted name order, its name,
NumPy dtype name (`float32`) and shape (`128,784`; empty for a scalar), each followed by a
NUL byte, then its data (C order, little-endian, as stored); and last `__metadata__`, a NUL
byte and the `arraynet` metadata string (the JSON of the run's record) in UTF-8. Loading
recomputes it, so a changed byte in the tensor data or in the record is a WeightsError.
Files written before the checksum existed still load, with a one-line note on stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

META_KEY = "arraynet"
SUM_KEY = "sha256"
_NOTED: set[str] = set()  # files already reported as carrying no checksum


class WeightsError(ValueError):
    """A weights or checkpoint file is missing, corrupt or does not fit the layout."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def umask() -> int:
    """The process's file-creation mask (mkstemp's files are 0600 whatever it is)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with indentation, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_arrays(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict | None = None
) -> None:
    """Save host arrays (float32/float64/int) and a JSON metadata dict, atomically, with
    the checksum described in the module's docstring."""
    tensors = {k: _little_endian(np.asarray(v, order="C")) for k, v in arrays.items()}
    raw = json.dumps(meta or {})
    header = {META_KEY: raw, SUM_KEY: checksum(tensors, raw)}
    atomic_write_bytes(path, _ordered(st_save(tensors, metadata=header)))


def _ordered(blob: bytes) -> bytes:
    """The safetensors bytes with the header's entries in a fixed order (safetensors writes
    the metadata map in a random one), so that the same arrays and metadata always give
    the same file; the data section is kept as it is."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    extra = header.pop("__metadata__", {})
    ordered = {"__metadata__": {k: extra[k] for k in sorted(extra)}}
    ordered.update((k, header[k]) for k in sorted(header))
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # padded to 8 bytes, as safetensors aligns its data
    return len(text).to_bytes(8, "little") + text + blob[8 + n :]


def checksum(arrays: dict[str, np.ndarray], meta_json: str) -> str:
    """SHA-256 hex digest of the tensors and the metadata string (see the module docstring)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        v = _little_endian(np.asarray(arrays[name], order="C"))  # (0-d stays 0-d)
        shape = ",".join(str(d) for d in v.shape)
        h.update(f"{name}\0{v.dtype.name}\0{shape}\0".encode())
        h.update(v.reshape(-1).view(np.uint8).data if v.size else b"")
    h.update(f"__metadata__\0{meta_json}".encode())
    return h.hexdigest()


def _little_endian(v: np.ndarray) -> np.ndarray:
    return v.astype(v.dtype.newbyteorder("<"), copy=False)


def load_arrays(
    path: str | os.PathLike, *, note_unverified: bool = True
) -> tuple[dict[str, np.ndarray], dict]:
    """Load (arrays, metadata), verifying the checksum. Errors are WeightsError with one
    line naming the file. A file without a checksum (written before there were any) loads
    with a one-line note on stderr, once per file and process (`note_unverified=False`
    keeps quiet)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    data = path.read_bytes()
    try:
        arrays = {k: np.array(v) for k, v in st_load(data).items()}
        raw, recorded = _read_metadata(data)
        meta = json.loads(raw)
        if not isinstance(meta, dict):
            raise ValueError("metadata is not a mapping")
    except (SafetensorError, ValueError, json.JSONDecodeError, KeyError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None
    if recorded is None:
        key = str(path.resolve())
        if note_unverified and key not in _NOTED:
            _NOTED.add(key)
            sys.stderr.write(f"arraynet: note: {path} carries no checksum (saved before "
                             "arraynet wrote them), so its data cannot be verified\n")  # fmt: skip
    elif checksum(arrays, raw) != recorded:
        raise WeightsError(
            f"{path}: checksum mismatch: the file's tensor data or metadata has changed since "
            "it was saved (corrupt file)"
        )
    return arrays, meta


def _read_metadata(data: bytes) -> tuple[str, str | None]:
    """The arraynet metadata string and the recorded checksum (None when absent)."""
    if len(data) < 8:
        raise ValueError("file too short")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("header runs past the end")
    header = json.loads(data[8 : 8 + n])
    extra = header.get("__metadata__") or {}
    unknown = sorted(set(extra) - {META_KEY, SUM_KEY})
    if unknown:  # (a damaged key name would otherwise pass for a file without a checksum)
        raise ValueError(f"unexpected metadata entry {unknown[0]!r}")
    raw, recorded = extra.get(META_KEY, "{}"), extra.get(SUM_KEY)
    if not isinstance(raw, str) or not (recorded is None or isinstance(recorded, str)):
        raise ValueError("metadata values are not strings")
    return raw, recorded


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def save_model(path: str | os.PathLike, model: Any, meta: dict) -> None:
    """Save a built model's state with metadata (its layout is added as meta['layout'])."""
    b = model.backend
    arrays = {k: b.to_host(v) for k, v in model.state_dict().items()}
    save_arrays(path, arrays, {**meta, "layout": model.config()})


def load_model(path: str | os.PathLike, backend: Any) -> tuple[Any, dict]:
    """Rebuild a model from a weights file onto `backend`; returns (model, metadata)."""
    from arraynet.model import Sequential

    arrays, meta = load_arrays(path)
    layout = meta.get("layout")
    if layout is None:
        raise WeightsError(f"{path}: no layout in the metadata (not an arraynet weights file)")
    try:
        model = Sequential.from_config(layout)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{path}: unknown layout ({_first_line(e)})") from None
    not_float = [k for k, v in arrays.items() if v.dtype.kind != "f"]
    if not_float:
        k = not_float[0]
        raise WeightsError(f"{path}: tensor {k!r} is {arrays[k].dtype}, not floating point")
    # float64 weights stay float64; any other float width (float16, mixed) becomes float32
    wide = arrays and all(v.dtype == "float64" for v in arrays.values())
    dtype = "float64" if wide else "float32"
    model.build(backend, seed=0, dtype=dtype)
    try:
        model.load_state_dict(
            {k: backend.from_host(v.astype(dtype, copy=False)) for k, v in arrays.items()}
        )
    except ValueError as e:
        raise WeightsError(f"{path}: {_first_line(e)}") from None
    return model, meta
