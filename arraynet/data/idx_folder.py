"""A folder of the four IDX files as a dataset (MNIST's format, also used by Fashion-MNIST,
KMNIST, EMNIST...): the standard names, raw or gzip'd, or one unambiguous match of each
role's name pattern. Sizes come from the headers; nothing is hash-checked."""

from __future__ import annotations

from pathlib import Path

from arraynet.data.container import Data, DataError, from_arrays
from arraynet.data.mnist import find_file, read_idx

__all__ = ["load_idx_folder", "probe"]

# The four IDX roles, each with the name patterns accepted besides the standard name.
_IDX_ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "x_train": ("train-images-idx3-ubyte", ("train-images",)),
    "y_train": ("train-labels-idx1-ubyte", ("train-labels",)),
    "x_test": ("t10k-images-idx3-ubyte", ("t10k-images", "test-images")),
    "y_test": ("t10k-labels-idx1-ubyte", ("t10k-labels", "test-labels")),
}


def probe(path: Path) -> bool:
    """Any folder: the folder formats registered after this one are probed first, and a
    folder that none of them takes gets this format's message for a folder without IDX
    files."""
    return path.is_dir()


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


def load_idx_folder(folder: Path, name: str) -> Data:
    """Read the four IDX files of `folder` into a `Data`; errors name `name`."""
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
