"""Datasets for training and evaluation: `load("mnist")` or `load(PATH)` returns a `Data`.

A path is a folder of the four IDX files (Fashion-MNIST, KMNIST, EMNIST...), an `.npz`
archive with `x_train, y_train, x_test, y_test`, or an image folder with `train/` and
`test/` holding one subfolder of PNG/JPEG images per class; `register_format` adds a
format (`FORMATS` lists them). Bad input raises `DataError` (a ValueError) with a one-line
message naming the path. The code is in `arraynet.data`.

`load("mnist")` downloads missing files into the default cache only (saying so in one line
on stderr first); a folder given as `data_dir` or $ARRAYNET_DATA is never filled unless
`download=True`, and `download=False` never downloads.
"""

from arraynet.data.sources import (
    FORMATS,
    NAMES,
    Data,
    DataError,
    check_fits,
    from_arrays,
    load,
    register_format,
)

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
