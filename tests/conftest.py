"""Shared fixtures: backends available here and the MNIST folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from arraynet.data import DataError, locate

REPO = Path(__file__).resolve().parents[1]

HAVE_TORCH = importlib.util.find_spec("torch") is not None
CPU_BACKENDS = ["numpy", "array-api-strict"] + (["torch"] if HAVE_TORCH else [])


def mnist_dir() -> Path:
    """The MNIST folder the CLI reads: $ARRAYNET_DATA, else the cache `arraynet data fetch`
    fills, else ../shared/data/mnist beside the checkout (`arraynet.data.resolve_data_dir`).
    Raises DataError, with the one missing-data message, unless all four files are there."""
    return locate()


def isolate_mnist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No env data dir, a private empty cache, no checkout fallback, no mirrors and no npm:
    nothing is found by accident and nothing can reach the network. Returns the cache
    folder (`arraynet.data.cache_dir()` for the test)."""
    from arraynet.data import download, mnist

    monkeypatch.delenv("ARRAYNET_DATA", raising=False)
    monkeypatch.setattr(mnist, "checkout_data_dir", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(download, "MIRRORS", [])
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    cache = mnist.cache_dir()  # platformdirs': XDG_CACHE_HOME on Linux and macOS
    assert cache == tmp_path / "xdg-cache" / "arraynet" / "mnist", f"not isolated: {cache}"
    return cache


@pytest.fixture(scope="session")
def data_dir() -> Path:
    try:
        return mnist_dir()
    except DataError as e:
        message = str(e)
    pytest.fail(message, pytrace=False)  # (outside the except: one message, no chained one)


@pytest.fixture(scope="session")
def mnist_sample(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 512 MNIST training and 256 test images as an .npz (`--data`): for the
    subprocess trainings whose point is not the score, so that scoring 10,000 test images
    does not dominate them."""
    import numpy as np

    from arraynet.data import load_mnist

    m = load_mnist(str(data_dir), download=False, verify=False, quiet=True)
    path = tmp_path_factory.mktemp("mnist-sample") / "mnist-sample.npz"
    np.savez(path, x_train=m.train_images[:512], y_train=m.train_labels[:512],
             x_test=m.test_images[:256], y_test=m.test_labels[:256])  # fmt: skip
    return path
