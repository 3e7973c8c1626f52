"""arraynet: a small, fast, GPU-optional deep-learning framework on the Array API.

    import arraynet as an
    model = an.Sequential([an.layers.Conv2D(8, 3), an.layers.Activation("relu"),
                           an.layers.Flatten(), an.layers.Dense(10),
                           an.layers.Activation("softmax")], input_shape=(8, 8, 1))
    history = model.fit(x, y, epochs=5, batch_size=32)
    model.evaluate(x_test, y_test)["error_rate"]

The names below load on first use, so `import arraynet` (and the CLI) stays light. This
module imports nothing of arraynet itself: it names where things live, as strings.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

__version__ = "0.1.0"

_NAMES = {
    "Sequential": ("arraynet.model", "Sequential"),
    "load_model": ("arraynet.model", "load_model"),
    "get_backend": ("arraynet.backends", "get_backend"),
    "Recipe": ("arraynet.train.recipe", "Recipe"),
    "History": ("arraynet.train.callbacks", "History"),
    "TrainingWarning": ("arraynet.train.callbacks", "TrainingWarning"),
}
_MODULES = {
    "layers": "arraynet.layers",
    "callbacks": "arraynet.train.callbacks",
    "datasets": "arraynet.datasets",
    "testing": "arraynet.testing",
    "zoo": "arraynet.zoo",
}

# Modules that moved in the restructuring into packages, and where they live now: the old
# import paths keep working (`import arraynet.fitting` is `arraynet.train.fit`). A module
# whose names went to several places maps to a tuple: its old path gives a module that
# looks them up in that order.
MOVED: dict[str, str | tuple[str, ...]] = {
    "arraynet.averaging": "arraynet.train.averaging",
    "arraynet.callbacks": "arraynet.train.callbacks",
    "arraynet.distill": "arraynet.train.distill",
    "arraynet.early_stopping": "arraynet.train.early_stopping",
    "arraynet.fitting": ("arraynet.train.fit", "arraynet.network"),
    "arraynet.recipes": ("arraynet.train.recipe", "arraynet.zoo"),
    "arraynet.runfolder": "arraynet.train.runfolder",
    "arraynet.step": "arraynet.train.step",
    "arraynet.training": "arraynet.train.loop",
    "arraynet.data_parallel": "arraynet.parallel.data_parallel",
    "arraynet.backends.comm": "arraynet.parallel.comm",
    "arraynet.data.sharding": "arraynet.parallel.sharding",
    "arraynet.layouts": "arraynet.zoo.layouts",
    "arraynet.run": "arraynet.jobs",
    "arraynet.ops": "arraynet.backends.portable",
}

__all__ = [
    "History",
    "Recipe",
    "Sequential",
    "TrainingWarning",
    "__version__",
    "get_backend",
    "load_model",
    *_MODULES,
]


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import an old module path as the module that now holds its code."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        target = MOVED[spec.name]
        if isinstance(target, str):
            return importlib.import_module(target)
        return _Merged(spec.name, [importlib.import_module(t) for t in target])

    def exec_module(self, module: ModuleType) -> None:
        """The module is the new one, already executed."""


class _Merged(ModuleType):
    """An old module whose names now live in several modules (looked up in order)."""

    def __init__(self, name: str, parts: list[ModuleType]) -> None:
        super().__init__(name, f"Moved: see {', '.join(p.__name__ for p in parts)}.")
        self._parts = parts

    def __getattr__(self, attr: str) -> Any:
        for part in self._parts:
            if hasattr(part, attr):
                return getattr(part, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        module, attr = _NAMES[name]
        return getattr(importlib.import_module(module), attr)
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    raise AttributeError(f"module 'arraynet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
