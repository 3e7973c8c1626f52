"""arraynet: a small, fast, GPU-optional deep-learning framework on the Array API.

    import arraynet as an
    model = an.Sequential([an.layers.Conv2D(8, 3), an.layers.Activation("relu"),
                           an.layers.Flatten(), an.layers.Dense(10),
                           an.layers.Activation("softmax")], input_shape=(8, 8, 1))
    history = model.fit(x, y, epochs=5, batch_size=32)
    model.evaluate(x_test, y_test)["error_rate"]

The names below load on first use, so `import arraynet` (and the CLI) stays light.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

_NAMES = {
    "Sequential": ("arraynet.model", "Sequential"),
    "get_backend": ("arraynet.backends", "get_backend"),
    "Recipe": ("arraynet.recipes", "Recipe"),
}
_MODULES = ("layers", "callbacks", "datasets", "testing", "zoo")

__all__ = ["Recipe", "Sequential", "__version__", "get_backend", "load_model", *_MODULES]


def load_model(
    path: str | Path,
    backend: Any = "numpy",
    *,
    sha256: str | None = None,
    allow_unchecked: bool = False,
    allow_nonfinite: bool = False,
) -> Any:
    """A model rebuilt from a weights file (safetensors + JSON) on `backend` (a name or a
    Backend); its metadata (recipe, metrics, history ...) is `model.metadata`.

    `sha256`: the file's expected SHA-256 (from its publisher); a SHA256SUMS beside the
    file is checked too. A file without arraynet's checksum is refused unless
    `allow_unchecked`, weights with NaN or infinities unless `allow_nonfinite`
    (`arraynet.io.weights` says what each check proves)."""
    from arraynet.backends import get_backend
    from arraynet.io import load_model as load

    b = get_backend(backend) if isinstance(backend, str) else backend
    model, meta = load(
        path, b, sha256=sha256, allow_unchecked=allow_unchecked, allow_nonfinite=allow_nonfinite
    )
    model.metadata = meta
    return model


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        module, attr = _NAMES[name]
        return getattr(importlib.import_module(module), attr)
    if name in _MODULES:
        return importlib.import_module(f"arraynet.{name}")
    raise AttributeError(f"module 'arraynet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
