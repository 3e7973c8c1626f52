"""An `.npz` archive as a dataset: the arrays `x_train, y_train, x_test, y_test`."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from arraynet.data.container import _SPLITS, Data, DataError, from_arrays
from arraynet.files import one_line

__all__ = ["load_npz", "probe"]

_ZIP_MAGIC = b"PK"
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def probe(path: Path) -> bool:
    """A file named `.npz`, or any file that starts as a zip archive does."""
    return not path.is_dir() and (path.suffix.lower() == ".npz" or _starts_with(path, _ZIP_MAGIC))


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def load_npz(path: Path, name: str) -> Data:
    """Read the four arrays (no pickles) into a `Data`; errors name `name`."""
    try:
        npz = np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise DataError(f"{name}: unreadable .npz archive ({one_line(e)})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # an .npy file holds one plain array
        raise DataError(f"{name}: not an .npz archive (it holds a single array)")
    with npz:
        missing = [k for k in _SPLITS if k not in npz.files]
        if missing:
            held = ", ".join(npz.files) or "nothing"
            raise DataError(f"{name}: missing {', '.join(missing)} (the archive holds {held})")
        try:
            arrays = {k: npz[k] for k in _SPLITS}
        except _READ_ERRORS as e:
            raise DataError(f"{name}: unreadable .npz archive ({one_line(e)})") from None
    return from_arrays(**arrays, name=name)
