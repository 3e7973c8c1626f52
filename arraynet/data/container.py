"""The one dataset container, `Data`: train and test arrays on the host with their number
of classes, checked on the way in (`from_arrays`) and against a model (`check_fits`); and
`DataError`, the one error of the data layer. Every dataset format (`arraynet.data.formats`)
and the MNIST loader (`arraynet.data.load_mnist`) return a `Data`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Data", "DataError", "check_fits", "from_arrays", "misfit_message"]

_SPLITS = ("x_train", "y_train", "x_test", "y_test")


class DataError(ValueError):
    """A data file is missing, corrupt or could not be downloaded (one-line message)."""


@dataclass(frozen=True, repr=False)
class Data:
    """Train and test arrays on the host.

    Images are (N, H, W, C), uint8 (0..255) or float32 (values as stored); labels are (N,)
    int64 class indices 0..K-1, with K = `num_classes`. `load_mnist` keeps MNIST's images
    (N, H, W) as its IDX files hold them (one grey channel; the runs' data fingerprints
    hash them so); `from_arrays` and `arraynet.datasets.load` always give (N, H, W, C).
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
        """(H, W, C) of one image (C = 1 for (N, H, W) images)."""
        shape = self.x_train.shape[1:]
        h, w, c = shape if len(shape) == 3 else (*shape, 1)
        return int(h), int(w), int(c)

    # The names of the former `MNIST` container, kept for its callers.
    @property
    def train_images(self) -> np.ndarray:
        """`x_train` (the former `MNIST` container's name)."""
        return self.x_train

    @property
    def train_labels(self) -> np.ndarray:
        """`y_train` (the former `MNIST` container's name)."""
        return self.y_train

    @property
    def test_images(self) -> np.ndarray:
        """`x_test` (the former `MNIST` container's name)."""
        return self.x_test

    @property
    def test_labels(self) -> np.ndarray:
        """`y_test` (the former `MNIST` container's name)."""
        return self.y_test

    def __repr__(self) -> str:
        return (
            f"Data({self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, dtype={self.x_train.dtype}, "
            f"num_classes={self.num_classes})"
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
