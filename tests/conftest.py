"""Shared fixtures: backends available here and the local MNIST folder."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"

HAVE_TORCH = importlib.util.find_spec("torch") is not None
CPU_BACKENDS = ["numpy", "array-api-strict"] + (["torch"] if HAVE_TORCH else [])


def mnist_dir() -> Path | None:
    """ARRAYNET_DATA if set, else ../shared/data/mnist beside the repo, else None."""
    env = os.environ.get("ARRAYNET_DATA")
    if env and Path(env).is_dir():
        return Path(env)
    return SHARED_MNIST if SHARED_MNIST.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = mnist_dir()
    if d is None:
        pytest.fail("MNIST files not found: set ARRAYNET_DATA or provide ../shared/data/mnist")
    return d
