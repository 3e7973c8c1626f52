"""The dataset formats `arraynet.datasets.load` reads from a path, in one table.

A format is a probe, `probe(path) -> bool` (cheap: a suffix, a magic number, a
subfolder), and a loader, `load(path, name) -> Data` whose errors are one-line
`DataError`s naming `name` (the path as the user wrote it). `load_path` asks the probes
from the last registered to the first, so a new format can claim paths before the
built-in ones (the IDX folder format takes any folder that no other folder format took).
Each built-in format is a module of its own, registered below; a format outside the
package registers itself with `register_format` (also a decorator on its loader).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from arraynet.data import idx_folder, image_folder, npz
from arraynet.data.container import Data, DataError

__all__ = ["FORMATS", "Format", "find_format", "load_path", "register_format"]

Probe = Callable[[Path], bool]
Loader = Callable[[Path, str], Data]


@dataclass(frozen=True)
class Format:
    """One dataset format: its name, its probe, its loader, and how the message for a path
    that no format takes names it (`expects`, e.g. "an .npz file")."""

    name: str
    probe: Probe
    load: Loader
    expects: str


#: The registered formats, by name, in the order of registration.
FORMATS: dict[str, Format] = {}


def register_format(
    name: str, probe: Probe, expects: str, load: Loader | None = None
) -> Callable[[Loader], Loader]:
    """Register a dataset format: `register_format(name, probe, expects, load)`, or
    `@register_format(name, probe, expects)` on the loader. A name is registered once."""

    def add(fn: Loader) -> Loader:
        if name in FORMATS:
            raise ValueError(f"dataset format {name!r} is already registered")
        FORMATS[name] = Format(name, probe, fn, expects)
        return fn

    if load is not None:
        add(load)
    return add


def find_format(path: Path) -> Format | None:
    """The format whose probe takes `path` (the last registered first), or None."""
    for fmt in reversed(FORMATS.values()):
        if fmt.probe(path):
            return fmt
    return None


def load_path(path: Path, name: str) -> Data:
    """`path` read by the format that takes it; a DataError naming `name` and what was
    expected when none does. (OSError from a probe or a loader is the caller's to word.)"""
    fmt = find_format(path)
    if fmt is None:
        raise DataError(f"{name}: not a dataset (expected {_either(FORMATS.values())})")
    return fmt.load(path, name)


def _either(formats: Iterable[Format]) -> str:
    """The formats' `expects` as "a, b, or c", in the order of registration."""
    names = [f.expects for f in formats]
    if len(names) <= 2:
        return " or ".join(names)
    return f"{', '.join(names[:-1])}, or {names[-1]}"


# The built-in formats, in the order the "not a dataset" message names them.
register_format("npz", npz.probe, "an .npz file", npz.load_npz)
register_format("idx-folder", idx_folder.probe, "a folder of IDX files", idx_folder.load_idx_folder)
register_format(
    "image-folder",
    image_folder.probe,
    "a folder with train/ and test/ class folders",
    image_folder.load_image_folder,
)
