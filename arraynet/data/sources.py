"""Datasets from several sources as one shape: NHWC images and int64 class indices.

`load` takes `"mnist"` by name, or a path: a folder of four IDX files, an `.npz` archive, or
an image folder (`train/` and `test/`, one subfolder per class). Every bad input raises
DataError (a ValueError) with a one-line message naming the path.
"""

from __future__ import annotations

import os
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

from arraynet.data.container import _SPLITS, Data, check_fits, from_arrays
from arraynet.data.download import load_mnist
from arraynet.data.image_folder import load_image_folder
from arraynet.data.mnist import (
    ENV_VAR,
    DataError,
    find_file,
    missing_files,
    missing_message,
    read_idx,
    resolve_data_dir,
)
from arraynet.files import one_line

__all__ = ["NAMES", "Data", "DataError", "check_fits", "from_arrays", "load"]

#: Datasets known by name (anything else is a path).
NAMES: tuple[str, ...] = ("mnist",)

_ZIP_MAGIC = b"PK"


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
    subfolder of PNG/JPEG images per class. `data_dir` is where named datasets are looked
    for (default: $ARRAYNET_DATA, else the fetch cache); it does not apply to paths.

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
        return _load_path(path, text)
    except OSError as e:  # a folder or file that cannot be read (permissions, I/O)
        raise DataError(f"{text}: cannot be read ({one_line(e)})") from None


def _load_path(path: Path, name: str) -> Data:
    if path.is_dir():
        if (path / "train").is_dir() and (path / "test").is_dir():
            return load_image_folder(path, name=name)
        return _load_idx_folder(path, name=name)
    if path.suffix.lower() == ".npz" or _starts_with(path, _ZIP_MAGIC):
        return _load_npz(path, name=name)
    raise DataError(
        f"{name}: not a dataset (expected an .npz file, a folder of IDX files, "
        "or a folder with train/ and test/ class folders)"
    )


def _load_mnist(
    data_dir: str | os.PathLike[str] | None, quiet: bool, download: bool | None
) -> Data:
    folder = resolve_data_dir(data_dir)
    missing = missing_files(folder)
    if missing:
        if download is None:  # the default cache only: never a folder the user named
            download = data_dir is None and not os.environ.get(ENV_VAR)
        if not download:
            raise DataError(missing_message(folder, missing, data_dir, api=True))
        print(
            f"arraynet: downloading the MNIST files into {folder} (`arraynet data fetch` "
            "does this ahead of time; download=False never downloads)",
            file=sys.stderr,
            flush=True,
        )
    m = load_mnist(folder, download=bool(missing), quiet=quiet)
    return from_arrays(m.train_images, m.train_labels, m.test_images, m.test_labels, name="mnist")


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def _load_npz(path: Path, name: str) -> Data:
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
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
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise DataError(f"{name}: unreadable .npz archive ({one_line(e)})") from None
    return from_arrays(**arrays, name=name)


# The four IDX roles, each with the name patterns accepted besides the standard name.
_IDX_ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "x_train": ("train-images-idx3-ubyte", ("train-images",)),
    "y_train": ("train-labels-idx1-ubyte", ("train-labels",)),
    "x_test": ("t10k-images-idx3-ubyte", ("t10k-images", "test-images")),
    "y_test": ("t10k-labels-idx1-ubyte", ("t10k-labels", "test-labels")),
}


def _holds_idx(folder: Path, role: str) -> bool:
    standard, patterns = _IDX_ROLES[role]
    return find_file(folder, standard) is not None or any(
        p.is_file() and any(pat in p.name for pat in patterns) for p in folder.iterdir()
    )


def _find_idx(folder: Path, name: str, role: str) -> Path:
    """The file for `role`: the standard name (raw or .gz), else one unambiguous match of
    `*PATTERN*` (a raw file preferred over its .gz twin)."""
    standard, patterns = _IDX_ROLES[role]
    path = find_file(folder, standard)
    if path is not None:
        return path
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and any(pat in p.name for pat in patterns):
            stem = p.name.removesuffix(".gz")
            if stem not in found or found[stem].name.endswith(".gz"):
                found[stem] = p
    if len(found) == 1:
        return next(iter(found.values()))
    wanted = " or ".join(f"*{pat}*" for pat in patterns)
    if not found:
        raise DataError(f"{name}: no {standard}[.gz] (nor a {wanted} file) in the folder")
    names = ", ".join(p.name for p in found.values())
    raise DataError(f"{name}: several files could be the {role} IDX file ({names})")


def _load_idx_folder(folder: Path, name: str) -> Data:
    if not any(_holds_idx(folder, role) for role in _IDX_ROLES):
        raise DataError(
            f"{name}: not a dataset folder (no IDX files such as train-images-idx3-ubyte[.gz], "
            "and no train/ and test/ subfolders)"
        )
    paths = {role: _find_idx(folder, name, role) for role in _IDX_ROLES}
    arrays = {}
    for role, path in paths.items():
        try:
            arrays[role] = read_idx(path, images=role.startswith("x"))
        except DataError as e:
            raise DataError(f"{name}: {e}") from None
    for split in ("train", "test"):
        x, y = paths[f"x_{split}"], paths[f"y_{split}"]
        n, m = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if n != m:
            raise DataError(f"{name}: {x.name} holds {n} images but {y.name} holds {m} labels")
    return from_arrays(**arrays, name=name)
