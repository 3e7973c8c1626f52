"""Weights and checkpoints: safetensors files plus JSON metadata, written atomically.

Loading never runs code: a file holds named float arrays and a JSON string.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

META_KEY = "arraynet"


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
    """Save host arrays (float32/float64/int) and a JSON metadata dict, atomically."""
    tensors = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    header = {META_KEY: json.dumps(meta or {})}
    atomic_write_bytes(path, st_save(tensors, metadata=header))


def load_arrays(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Load (arrays, metadata). Errors are WeightsError with one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    data = path.read_bytes()
    try:
        arrays = st_load(data)
        meta = _read_metadata(data)
    except (SafetensorError, ValueError, json.JSONDecodeError, KeyError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None
    return {k: np.array(v) for k, v in arrays.items()}, meta


def _read_metadata(data: bytes) -> dict:
    if len(data) < 8:
        raise ValueError("file too short")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("header runs past the end")
    header = json.loads(data[8 : 8 + n])
    raw = (header.get("__metadata__") or {}).get(META_KEY, "{}")
    meta = json.loads(raw)
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a mapping")
    return meta


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
