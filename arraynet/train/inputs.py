"""The inputs of a run: a dataset loaded by name or path, split, checked against the model,
and copied to the model's backend as a `Dataset` (device arrays for the training loop)."""

from __future__ import annotations

from typing import Any

from arraynet.backends import Backend
from arraynet.data import Data, load_mnist, locate
from arraynet.data.arrays import (
    check_inputs_fit,
    float_inputs,
    host_array,
    label_targets,
)
from arraynet.network import Network
from arraynet.train.loop import Dataset

__all__ = ["fit_data", "load_data", "make_dataset", "shape_from_data", "split_train", "to_dataset"]


def make_dataset(images: Any, labels: Any, backend: Backend, num_classes: int = 10) -> Dataset:
    """Host images (uint8, scaled to [0, 1], or float) and integer (or one-hot) labels
    -> a Dataset on `backend`."""
    x = float_inputs(images)
    y, labels = label_targets(labels, num_classes)
    dtype = backend.dtype("float32")
    return Dataset(x=backend.from_host(x, dtype), y=backend.from_host(y, dtype), labels=labels)


def load_data(data: str | None, data_dir: str | None = None, quiet: bool = False) -> Data:
    """MNIST (data None or 'mnist', found as `arraynet data` finds it) or any dataset
    `arraynet.datasets.load` reads, as a `Data`. MNIST keeps its images (N, 28, 28) as
    `load_mnist` reads them (what the runs' data fingerprints hash). Never downloads:
    missing MNIST files are a DataError that says how to fetch them (`arraynet data
    fetch`, into the `data_dir` given if any). `quiet` is kept for callers; nothing is
    printed."""
    if data is None or data == "mnist":
        return load_mnist(locate(data_dir), quiet=True)
    from arraynet import datasets

    return datasets.load(data, data_dir=data_dir, download=False)


def split_train(data: Any, val_split: int, train_limit: int | None) -> tuple[tuple, tuple | None]:
    """The last `val_split` training samples are held out; `train_limit` caps the rest."""
    n = data.x_train.shape[0]
    if not 0 <= val_split < n:
        raise ValueError(f"--val-split must be between 0 and {n - 1}")
    cut = n - val_split
    tr = (data.x_train[:cut], data.y_train[:cut])
    if train_limit is not None:
        if train_limit <= 0:
            raise ValueError("--train-limit must be positive")
        tr = (tr[0][:train_limit], tr[1][:train_limit])
    val = (data.x_train[cut:], data.y_train[cut:]) if val_split else None
    return tr, val


def shape_from_data(model: Network, data: Any) -> None:
    """A layout file may leave its input shape to the data: take it from a test sample."""
    if model.input_shape is None:
        model.input_shape = tuple(float_inputs(data.x_test[:1]).shape[1:])


def fit_data(model: Network, data: Any) -> int:
    """The model's number of outputs, after checking that it fits the data's samples and
    labels (one line naming both when it does not)."""
    from arraynet.data.container import check_fits, misfit_message

    num_outputs = int(model.output_shape[-1])
    # MNIST as `load_mnist` reads it, (N, 28, 28) images, is checked sample first (a model
    # taking (28, 28) samples fits it), its number of classes last; a `Data` with a channel
    # axis is checked against the model first.
    as_read = isinstance(data, Data) and data.x_train.ndim == 3
    if isinstance(data, Data) and not as_read:
        check_fits(model.input_shape, num_outputs, data)
    sample = float_inputs(data.x_test[:1], model.input_shape)
    check_inputs_fit(sample.shape[1:], model.input_shape)
    for y in (data.y_train, data.y_test):
        label_targets(y, num_outputs)
    if as_read and num_outputs != data.num_classes:  # (more outputs)
        raise ValueError(misfit_message(model.input_shape, num_outputs, data.name,
                                        data.input_shape, data.num_classes))  # fmt: skip
    return num_outputs


def to_dataset(model: Any, x: Any, y: Any) -> Dataset:
    """Host or device arrays -> a Dataset on the model's backend, checked against the
    model's input shape and number of outputs (one line naming both when they differ)."""
    b = model.backend
    xh = float_inputs(host_array(x), model.input_shape)
    check_inputs_fit(xh.shape[1:], model.input_shape)
    rows, labels = label_targets(y, int(model.output_shape[-1]))
    if rows.shape[0] != xh.shape[0]:
        raise ValueError(f"{xh.shape[0]} samples but {rows.shape[0]} labels")
    dtype = b.dtype("float32")
    return Dataset(b.from_host(xh, dtype), b.from_host(rows, dtype), labels)
