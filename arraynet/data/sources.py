"""Datasets from several sources as one shape: NHWC images and int64 class indices.

`load` takes `"mnist"` by name, or a path, read by the format that takes it (the table of
`arraynet.data.formats`: a folder of four IDX files, an `.npz` archive, an image folder
with `train/` and `test/`, one subfolder per class, and any format registered there).
Every bad input raises DataError (a ValueError) with a one-line message naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path

from arraynet.data.container import Data, DataError, check_fits, from_arrays
from arraynet.data.download import load_mnist
from arraynet.data.formats import FORMATS, load_path, register_format
from arraynet.data.mnist import ENV_VAR, missing_files, missing_message, resolve_data_dir
from arraynet.files import one_line
from arraynet.log import get_logger

__all__ = [
    "FORMATS",
    "NAMES",
    "Data",
    "DataError",
    "check_fits",
    "from_arrays",
    "load",
    "register_format",
]

#: Datasets known by name (anything else is a path).
NAMES: tuple[str, ...] = ("mnist",)

_log = get_logger(__name__)


def load(
    name_or_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    quiet: bool = True,
    download: bool | None = None,
) -> Data:
    """Load a dataset by name (`"mnist"`) or from a path; returns a `Data`.

    A path is a folder of the four IDX files (gzip'd or not), an `.npz` archive with
    `x_train, y_train, x_test, y_test`, or a folder with `train/` and `test/` holding one
    subfolder of PNG/JPEG images per class (or any format in `arraynet.data.formats`).
    `data_dir` is where named datasets are looked for (default: $ARRAYNET_DATA, else the
    fetch cache); it does not apply to paths.

    MNIST files missing from the default cache are downloaded there, after one line on
    stderr saying so (progress bars too unless `quiet`); a folder named by `data_dir` or
    $ARRAYNET_DATA is never filled unless `download=True`, and `download=False` never
    downloads. Missing files that are not downloaded are a DataError saying how to fetch them.
    """
    text = os.fspath(name_or_path)
    if text.lower() in NAMES:
        return _load_mnist(data_dir, quiet, download)
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(
            f"{text}: no such file or folder, and not a known dataset name ({', '.join(NAMES)})"
        )
    try:
        return load_path(path, text)
    except OSError as e:  # a folder or file that cannot be read (permissions, I/O)
        raise DataError(f"{text}: cannot be read ({one_line(e)})") from None


def _load_mnist(
    data_dir: str | os.PathLike[str] | None, quiet: bool, download: bool | None
) -> Data:
    """MNIST through `load_mnist` (downloading into the default cache only, unless told),
    with its images given their channel axis: (N, 28, 28, 1)."""
    folder = resolve_data_dir(data_dir)
    missing = missing_files(folder)
    if missing:
        if download is None:  # the default cache only: never a folder the user named
            download = data_dir is None and not os.environ.get(ENV_VAR)
        if not download:
            raise DataError(missing_message(folder, missing, data_dir, api=True))
        _log.warning(  # a WARNING: on stderr by default (arraynet.log)
            "arraynet: downloading the MNIST files into %s (`arraynet data fetch` "
            "does this ahead of time; download=False never downloads)",
            folder,
        )
    m = load_mnist(folder, download=bool(missing), quiet=quiet)
    return from_arrays(m.x_train, m.y_train, m.x_test, m.y_test, name=m.name)
