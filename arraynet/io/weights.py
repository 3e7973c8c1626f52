"""Weights and checkpoints: safetensors files plus JSON metadata, written atomically.

Loading never runs code: a file holds named float arrays and a JSON string.

Every file written here carries a checksum in its safetensors metadata (`__metadata__`,
key `sha256`): the SHA-256 hex digest of, for each tensor in sorted name order, its name,
NumPy dtype name (`float32`) and shape (`128,784`; empty for a scalar), each followed by a
NUL byte, then its data (C order, little-endian, as stored); and last `__metadata__`, a NUL
byte and the `arraynet` metadata string (the JSON of the run's record) in UTF-8. Loading
recomputes it, so a changed byte in the tensor data or in the record is a WeightsError.
Files without a checksum (written before it existed) are refused unless the caller allows
them (`allow_unchecked`, `--allow-unchecked`; `scripts/rewrite_weights.py` adds one).

The checksum proves integrity, not origin: anyone can change a file and compute a fresh
checksum. Origin is the file's own SHA-256 (what `sha256sum` prints) compared with one
the user got from its publisher: `load_model(..., sha256=...)` (`--sha256`), and a
`SHA256SUMS` manifest beside the file, which is checked whenever it lists the file
(`models/SHA256SUMS` lists the shipped weights and records).

`load_model` checks before it allocates: the layout in the metadata is read and
validated, and the shapes of the parameters it would create are compared with the
tensors the header declares, before any parameter is made or any tensor data is read.
Weights holding NaN or infinities are refused unless allowed (`allow_nonfinite`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from arraynet.files import atomic_write_bytes, file_sha256, one_line
from arraynet.files import atomic_write_json as atomic_write_json  # (re-exported: the old home)
from arraynet.files import umask as umask
from arraynet.layers import BUILTIN
from arraynet.log import get_logger
from arraynet.network import Network, state_misfit

META_KEY = "arraynet"
SUM_KEY = "sha256"
MANIFEST = "SHA256SUMS"
ST_DTYPES = {  # safetensors' dtype codes, as NumPy names them
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16",
    "U32": "uint32", "I32": "int32", "U64": "uint64", "I64": "int64", "F16": "float16",
    "BF16": "bfloat16", "F32": "float32", "F64": "float64",
}  # fmt: skip
MAX_HEADER_BYTES = 100 << 20  # safetensors' own bound on a header
MAX_MANIFEST_BYTES = 1 << 20
_NOTED: set[str] = set()  # files already reported as carrying no checksum
_log = get_logger(__name__)
_PARSE_ERRORS = (
    SafetensorError, ValueError, KeyError, TypeError, RecursionError, OverflowError, MemoryError,
)  # fmt: skip


class WeightsError(ValueError):
    """A weights or checkpoint file is missing, corrupt or does not fit the layout."""


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
    path: str | os.PathLike, *, allow_unchecked: bool = False, note_unverified: bool = True
) -> tuple[dict[str, np.ndarray], dict]:
    """Load (arrays, metadata), verifying the checksum. Errors are WeightsError with one
    line naming the file. A file without a checksum (written before there were any) is
    refused unless `allow_unchecked`; then it loads with a one-line note on stderr, once
    per file and process (`note_unverified=False` keeps quiet)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        arrays = {k: np.array(v) for k, v in st_load(data).items()}
        raw, recorded = _read_metadata(data)
        meta = _meta_dict(raw)
    except _PARSE_ERRORS as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({one_line(e)})") from None
    if recorded is None:
        if not allow_unchecked:
            raise WeightsError(
                f"{path}: carries no checksum, so its data cannot be verified; "
                "pass --allow-unchecked (allow_unchecked=True) to load it anyway, or add one "
                "with scripts/rewrite_weights.py"
            )
        key = str(path.resolve())
        if note_unverified and key not in _NOTED:
            _NOTED.add(key)
            _log.warning("arraynet: note: %s carries no checksum (saved before arraynet wrote "
                         "them), so its data cannot be verified", path)  # fmt: skip
    elif checksum(arrays, raw) != recorded:
        raise WeightsError(
            f"{path}: checksum mismatch: the file's tensor data or metadata has changed since "
            "it was saved (corrupt file)"
        )
    return arrays, meta


def _meta_dict(raw: str) -> dict:
    meta = json.loads(raw)
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a mapping")
    return meta


def _header_json(head: bytes, size: int) -> dict:
    """The safetensors header (a JSON object) from the file's first bytes; `size` is the
    file's length."""
    if len(head) < 8:
        raise ValueError("file too short")
    n = int.from_bytes(head[:8], "little")
    if n > size - 8:
        raise ValueError("header runs past the end")
    if n > MAX_HEADER_BYTES:
        raise ValueError(f"header of {n:,} bytes, over {MAX_HEADER_BYTES:,}")
    if len(head) < 8 + n:
        raise ValueError("header runs past the end")
    header = json.loads(head[8 : 8 + n])
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def _read_metadata(data: bytes) -> tuple[str, str | None]:
    """The arraynet metadata string and the recorded checksum (None when absent)."""
    return _metadata_of(_header_json(data, len(data)))


def _metadata_of(header: dict) -> tuple[str, str | None]:
    extra = header.get("__metadata__") or {}
    if not isinstance(extra, dict):
        raise ValueError("__metadata__ is not a mapping")
    unknown = sorted(set(extra) - {META_KEY, SUM_KEY})
    if unknown:  # (a damaged key name would otherwise pass for a file without a checksum)
        raise ValueError(f"unexpected metadata entry {unknown[0]!r}")
    raw, recorded = extra.get(META_KEY, "{}"), extra.get(SUM_KEY)
    if not isinstance(raw, str) or not (recorded is None or isinstance(recorded, str)):
        raise ValueError("metadata values are not strings")
    return raw, recorded


def read_header(path: str | os.PathLike) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict]:
    """From the header alone (no tensor data is read): each tensor's safetensors dtype
    code and shape, and the arraynet metadata. Errors are WeightsError naming the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            head += f.read(min(n, MAX_HEADER_BYTES, max(size - 8, 0)))
    except OSError as e:
        raise WeightsError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        header = _header_json(head, size)
        meta = _meta_dict(_metadata_of(header)[0])
        tensors = {}
        for name, spec in header.items():
            if name == "__metadata__":
                continue
            shape = spec["shape"]
            if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
            ):
                raise ValueError(f"tensor {name!r} has no valid shape")
            tensors[name] = (str(spec["dtype"]), tuple(shape))
    except _PARSE_ERRORS as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({one_line(e)})") from None
    return tensors, meta


# -- provenance -------------------------------------------------------------------------
def manifest_entries(folder: str | os.PathLike) -> dict[str, str] | None:
    """{file name: SHA-256} from `folder`'s SHA256SUMS (the format `sha256sum` writes),
    or None when it has none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise WeightsError(f"{path}: over {MAX_MANIFEST_BYTES:,} bytes, not a manifest")
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        if not line.strip():
            continue
        if line.startswith("SHA256 (") and ") = " in line:  # the BSD form
            name, _, digest = line[len("SHA256 (") :].rpartition(") = ")
        else:  # the GNU form, `sha256sum`'s: '<digest>  <name>' ('*' before a binary name)
            digest, _, name = line.partition(" ")
            name = name[1:] if name[:1] in (" ", "*") else name
        if not _is_sha256(digest) or not name:
            raise WeightsError(f"{path}: line {n + 1} is not '<sha256>  <file name>'")
        out[name] = digest.lower()
    return out


def write_manifest(folder: str | os.PathLike, patterns: tuple[str, ...] = ("*.safetensors",
                   "*.json")) -> Path:  # fmt: skip
    """Write `folder`/SHA256SUMS for the files matching `patterns` (sorted), atomically."""
    folder = Path(folder)
    names = sorted({p.name for pat in patterns for p in folder.glob(pat) if p.is_file()})
    text = "".join(f"{file_sha256(folder / n)}  {n}\n" for n in names)
    atomic_write_bytes(folder / MANIFEST, text.encode())
    return folder / MANIFEST


def refresh_manifest(path: str | os.PathLike) -> None:
    """After writing `path`: rewrite its folder's SHA256SUMS if the folder keeps one."""
    folder = Path(path).parent
    if (folder / MANIFEST).is_file():
        write_manifest(folder)


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def check_origin(path: str | os.PathLike, sha256: str | None = None) -> str:
    """The file's SHA-256, checked against `sha256` (when given) and against the
    SHA256SUMS beside it (when that lists the file); WeightsError on a mismatch."""
    path = Path(path)
    if sha256 is not None and not _is_sha256(str(sha256)):
        raise WeightsError(f"--sha256 wants 64 hex digits, not {sha256!r}")
    try:
        got = file_sha256(path)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read it ({e.strerror or e})") from None
    if sha256 is not None and got != sha256.lower():
        raise WeightsError(
            f"{path}: SHA-256 {got[:16]}... is not the expected {sha256.lower()[:16]}...: "
            "not the file its publisher gave"
        )
    listed = (manifest_entries(path.parent) or {}).get(path.name)
    if listed is not None and got != listed:
        raise WeightsError(
            f"{path}: SHA-256 {got[:16]}... differs from {MANIFEST} beside it "
            f"({listed[:16]}...): not the file that was shipped"
        )
    return got


def save_model(path: str | os.PathLike, model: Any, meta: dict) -> None:
    """Save a built model's state with metadata (its layout is added as meta['layout'])."""
    b = model.backend
    arrays = {k: b.to_host(v) for k, v in model.state_dict().items()}
    save_arrays(path, arrays, {**meta, "layout": model.config()})


def load_model(
    path: str | os.PathLike,
    backend: Any,
    *,
    sha256: str | None = None,
    allow_unchecked: bool = False,
    allow_nonfinite: bool = False,
    cls: type[Network] = Network,
) -> tuple[Any, dict]:
    """Rebuild a model (a `cls`: the network core unless the caller wants more, as
    `arraynet.load_model` does) from a weights file onto `backend`; returns (model, metadata).

    In order: the file's SHA-256 against `sha256` and a SHA256SUMS beside it; the layout
    and the tensor shapes from the header, before anything is allocated; the data and its
    checksum (a file without one only with `allow_unchecked`); finite values (unless
    `allow_nonfinite`). Every problem is a WeightsError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    check_origin(path, sha256)
    declared, meta = read_header(path)
    model = _layout_of(path, meta, declared, cls)
    arrays, meta = load_arrays(path, allow_unchecked=allow_unchecked)
    not_float = [k for k, v in arrays.items() if v.dtype.kind != "f"]
    if not_float:
        k = not_float[0]
        raise WeightsError(f"{path}: tensor {k!r} is {arrays[k].dtype}, not floating point")
    bad = None if allow_nonfinite else first_nonfinite(arrays)
    if bad is not None:
        raise WeightsError(
            f"{path}: tensor {bad!r} holds NaN or infinite values (a diverged run?); "
            "pass --allow-nonfinite (allow_nonfinite=True) to load it anyway"
        )
    # float64 weights stay float64; any other float width (float16, mixed) becomes float32
    wide = arrays and all(v.dtype == "float64" for v in arrays.values())
    dtype = "float64" if wide else "float32"
    model.build(backend, seed=0, dtype=dtype)
    try:
        model.load_state_dict(
            {k: backend.from_host(v.astype(dtype, copy=False)) for k, v in arrays.items()}
        )
    except ValueError as e:
        raise WeightsError(f"{path}: {one_line(e)}") from None
    return model, meta


def first_nonfinite(arrays: dict[str, np.ndarray]) -> str | None:
    """The name of the first floating tensor holding NaN or an infinity, else None."""
    for k, v in arrays.items():
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            return k
    return None


def _layout_of(path: Path, meta: dict, declared: dict, cls: type[Network]) -> Network:
    """The (unbuilt) model of the file's layout, checked against the declared tensors'
    names and shapes without allocating anything."""
    layout = meta.get("layout")
    if layout is None:
        raise WeightsError(f"{path}: no layout in the metadata (not an arraynet weights file)")
    try:
        model = cls.from_config(layout)
        kinds = {c.get("type") for c in layout["layers"]}
        try:
            shapes = model.state_shapes()
        except (AttributeError, TypeError):
            if kinds <= BUILTIN:
                raise
            return model  # a layer of the user's own builds only for real: checked later
    except (TypeError, ValueError, ArithmeticError, RecursionError, KeyError) as e:
        raise WeightsError(f"{path}: unknown layout ({one_line(e)})") from None
    misfit = state_misfit(shapes, {k: shape for k, (_, shape) in declared.items()})
    if misfit:
        raise WeightsError(f"{path}: {misfit}")
    for name, (dtype, _) in declared.items():
        if dtype not in ("F16", "BF16", "F32", "F64"):
            kind = ST_DTYPES.get(dtype, dtype)
            raise WeightsError(f"{path}: tensor {name!r} is {kind}, not floating point")
    return model
