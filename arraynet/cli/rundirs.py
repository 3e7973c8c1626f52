"""The default folders of `train` and `sweep`: a new `runs/<model>-<time>` (or
`sweeps/<name>-<time>`) for each run, and `runs/latest` (`sweeps/latest`) naming the
newest one, so a second run never collides with the first and `--resume` finds the last.

`latest` is a relative symlink to its sibling folder, replaced atomically (a new link
beside it, then `os.replace`); where symlinks cannot be made it is a small text file
holding the folder's name, written the same way.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import time
from pathlib import Path

from arraynet.files import atomic_write_bytes

RUNS = Path("runs")
SWEEPS = Path("sweeps")
LATEST = "latest"


def stamp(t: float | None = None) -> str:
    """A folder name's time: YYYYmmdd-HHMMSS, local time."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(t))


def new_folder(root: Path, stem: str) -> Path:
    """A new, empty folder root/<stem>-<time>, made here; -2, -3 ... when that is taken."""
    root.mkdir(parents=True, exist_ok=True)
    base = f"{re.sub(r'[^A-Za-z0-9._-]+', '-', stem).strip('.-') or 'run'}-{stamp()}"
    for i in itertools.count(1):
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AssertionError  # (unreachable: the count never ends)


def latest(root: Path) -> Path | None:
    """The folder root/latest names (None: there is none)."""
    link = root / LATEST
    if link.is_symlink():
        return root / os.readlink(link)
    if link.is_file():
        name = link.read_text(encoding="utf-8").strip()
        return root / name if name else None
    if link.is_dir():  # a run folder of its own, from before `latest` named the newest
        return link
    return None


def point_latest(folder: Path) -> Path | None:
    """Make `latest` beside `folder` name it. A real folder called `latest` (a run from
    before `latest` was a pointer) is first renamed latest-<its time>: that new path is
    returned, else None."""
    root, link = folder.parent, folder.parent / LATEST
    moved = None
    if link.is_dir() and not link.is_symlink():
        base = f"{LATEST}-{stamp(link.stat().st_mtime)}"
        moved = next(p for i in itertools.count(1)
                     if not (p := root / (base if i == 1 else f"{base}-{i}")).exists())  # fmt: skip
        link.rename(moved)
    tmp = root / f".{LATEST}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.symlink(folder.name, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):  # no symlinks here: a file naming the folder
        atomic_write_bytes(link, (folder.name + "\n").encode())
        return moved
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return moved


def discard_if_empty(folder: Path) -> None:
    """Remove a default folder a run left empty (it failed before writing anything)."""
    with contextlib.suppress(OSError):
        folder.rmdir()
