"""Files written safely and messages kept to one line: what every part of arraynet that
writes or reports uses (it imports nothing of arraynet).

- `atomic_write_bytes` / `atomic_write_json`: a temporary file beside the target, fsync,
  then a rename over it, so a reader never sees half a file; an OSError names the file.
- `file_sha256`: a file's SHA-256, as `sha256sum` prints it.
- `one_line`: the first line of an exception's message (its type's name when empty).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _naming(e, path) from e
    try:
        os.chmod(tmp, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(e, path) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _naming(e: OSError, path: Path) -> OSError:
    """The same error, naming the file it was writing (a full disk names no file)."""
    if e.filename is not None:
        return e
    return type(e)(e.errno, e.strerror or str(e), str(path))


def umask() -> int:
    """The process's file-creation mask (mkstemp's files are 0600 whatever it is)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with indentation, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (what `sha256sum` prints), read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def one_line(e: BaseException) -> str:
    """The first line of `e`'s message, or its type's name when it has none."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
