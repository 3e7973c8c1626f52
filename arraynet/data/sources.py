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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arraynet.data.mnist import (
    ENV_VAR,
    DataError,
    find_file,
    load_mnist,
    missing_files,
    missing_message,
    read_idx,
    resolve_data_dir,
)

__all__ = ["NAMES", "Data", "DataError", "check_fits", "from_arrays", "load"]

#: Datasets known by name (anything else is a path).
NAMES: tuple[str, ...] = ("mnist",)

_SPLITS = ("x_train", "y_train", "x_test", "y_test")
_ZIP_MAGIC = b"PK"


@dataclass(frozen=True, repr=False)
class Data:
    """Train and test arrays on the host.

    Images are (N, H, W, C), uint8 (0..255) or float32 (values as stored); labels are (N,)
    int64 class indices 0..K-1, with K = `num_classes`.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: list[str] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)

    def __repr__(self) -> str:
        return (
            f"Data({self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, dtype={self.x_train.dtype}, "
            f"num_classes={self.num_classes})"
        )


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
        raise DataError(f"{text}: cannot be read ({_one_line(e)})") from None


def _load_path(path: Path, name: str) -> Data:
    if path.is_dir():
        if (path / "train").is_dir() and (path / "test").is_dir():
            from arraynet.data.image_folder import load_image_folder

            return load_image_folder(path, name=name)
        return _load_idx_folder(path, name=name)
    if path.suffix.lower() == ".npz" or _starts_with(path, _ZIP_MAGIC):
        return _load_npz(path, name=name)
    raise DataError(
        f"{name}: not a dataset (expected an .npz file, a folder of IDX files, "
        "or a folder with train/ and test/ class folders)"
    )


def check_fits(input_shape: tuple[int, ...], num_outputs: int, data: Data) -> None:
    """Raise ValueError (one line naming both) unless a model with this input shape and
    output width fits `data`'s images and classes."""
    model_shape = tuple(int(d) for d in input_shape)
    if model_shape == data.input_shape and int(num_outputs) == data.num_classes:
        return
    raise ValueError(
        misfit_message(model_shape, num_outputs, data.name, data.input_shape, data.num_classes)
    )


def misfit_message(
    input_shape: tuple[int, ...],
    num_outputs: int,
    name: str,
    data_shape: tuple[int, ...],
    num_classes: int,
) -> str:
    """The one line for a model that does not fit a dataset (as `check_fits` words it)."""
    model_shape = tuple(int(d) for d in input_shape)
    return (
        f"model takes {model_shape} images with {int(num_outputs)} classes; "
        f"data {name!r} has {tuple(data_shape)} images with {int(num_classes)} classes"
    )


# -- arrays -> Data ----------------------------------------------------------------------------
def from_arrays(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    name: str = "arrays",
    class_names: list[str] | None = None,
) -> Data:
    """Check and normalise host arrays into a `Data` (errors name `name` and the array).

    Images (N, H, W) or (N, H, W, C): uint8 is kept, floats become float32, other integer
    types are accepted when their values lie in 0..255 (-> uint8). Labels are integer
    indices (N,) or (N, 1), or one-hot rows (N, K > 1); with one-hot labels K is the number
    of classes, else it is the largest label + 1.
    """
    xs = {"x_train": x_train, "x_test": x_test}
    ys = {"y_train": y_train, "y_test": y_test}
    images = {k: _images(name, k, v) for k, v in xs.items()}
    labels, widths = {}, {}
    for k, v in ys.items():
        labels[k], widths[k] = _labels(name, k, v)
    for split in ("train", "test"):
        n, m = len(images[f"x_{split}"]), len(labels[f"y_{split}"])
        if n == 0:
            raise DataError(f"{name}: x_{split} holds no images")
        if n != m:
            raise DataError(f"{name}: x_{split} has {n} images but y_{split} has {m} labels")
    tr, te = images["x_train"], images["x_test"]
    if tr.shape[1:] != te.shape[1:]:
        raise DataError(
            f"{name}: x_train images are {tr.shape[1:]} but x_test images are {te.shape[1:]}"
        )
    if tr.dtype != te.dtype:
        raise DataError(f"{name}: x_train is {tr.dtype} but x_test is {te.dtype}")
    if (widths["y_train"] is None) != (widths["y_test"] is None):
        raise DataError(f"{name}: y_train and y_test must both be one-hot or both be indices")
    if widths["y_train"] is not None:
        if widths["y_train"] != widths["y_test"]:
            raise DataError(
                f"{name}: y_train has {widths['y_train']} one-hot columns "
                f"but y_test has {widths['y_test']}"
            )
        num_classes = widths["y_train"]
    else:
        num_classes = int(max(labels["y_train"].max(), labels["y_test"].max())) + 1
    if class_names is not None and len(class_names) != num_classes:
        raise DataError(f"{name}: {len(class_names)} class names for {num_classes} classes")
    return Data(name, tr, labels["y_train"], te, labels["y_test"], num_classes, class_names)


def _images(name: str, key: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or min(x.shape[1:], default=0) < 1:
        raise DataError(f"{name}: {key} has shape {x.shape}; expected (N, H, W) or (N, H, W, C)")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{name}: {key} holds NaN or infinite values")
        return x
    if np.issubdtype(x.dtype, np.integer) and x.dtype != np.bool_:
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(
                f"{name}: {key} is {x.dtype} with values outside 0..255; give uint8 or float images"
            )
        return np.ascontiguousarray(x, dtype=np.uint8)
    raise DataError(f"{name}: {key} has dtype {x.dtype}; expected uint8 or float images")


def _labels(name: str, key: str, y: np.ndarray) -> tuple[np.ndarray, int | None]:
    """int64 indices, and the one-hot width (None for index labels)."""
    y = np.asarray(y)
    numeric = np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_
    if not numeric or np.issubdtype(y.dtype, np.complexfloating):
        raise DataError(f"{name}: {key} has dtype {y.dtype}; expected integer class labels")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # a column of indices, as some loaders give
    if y.ndim == 2 and y.shape[1] > 1:
        hot = y.astype(np.float64)
        ok = np.isin(hot, (0.0, 1.0)).all() and (hot.sum(axis=1) == 1).all()
        if not ok:
            raise DataError(
                f"{name}: {key} has shape {y.shape} but its rows are not one-hot "
                "(exactly one 1, the rest 0)"
            )
        return np.argmax(hot, axis=1).astype(np.int64), int(y.shape[1])
    if y.ndim != 1:
        raise DataError(
            f"{name}: {key} has shape {y.shape}; expected (N,) labels or (N, K) one-hot"
        )
    if not np.issubdtype(y.dtype, np.integer):
        f = y.astype(np.float64)
        bad = ~np.isfinite(f) | (f != np.round(f))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{name}: {key}[{i}] = {y[i]} is not an integer class label")
    if y.size and y.min() < 0:
        raise DataError(f"{name}: {key} holds label {y.min()}; class labels start at 0")
    return y.astype(np.int64), None


# -- sources -----------------------------------------------------------------------------------
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
        raise DataError(f"{name}: unreadable .npz archive ({_one_line(e)})") from None
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
            raise DataError(f"{name}: unreadable .npz archive ({_one_line(e)})") from None
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


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
