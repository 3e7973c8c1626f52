"""Rewrite weights files in place with a checksum (and optionally edited metadata), the
tensors bitwise unchanged.

    uv run python scripts/rewrite_weights.py models/*.safetensors
    uv run python scripts/rewrite_weights.py models/m4.safetensors \
        --rename-optimizer adam-seed=adam-seed-const

Each file is read, written back through `save_arrays` (which adds the SHA-256 described in
`arraynet/io/weights.py`) to a temporary file, read again and compared with the original:
every tensor's name, dtype, shape and bytes, and the metadata (apart from the requested
edit), must be identical before the temporary file replaces the original.
`--rename-optimizer OLD=NEW` changes `recipe.optimizer` from OLD to NEW in the metadata
(a record of what trained the file); files trained with another optimizer keep theirs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arraynet.cli import script_errors  # noqa: E402
from arraynet.io.weights import (  # noqa: E402
    WeightsError,
    load_arrays,
    refresh_manifest,
    save_arrays,
)


def edited(meta: dict, rename: tuple[str, str] | None) -> dict:
    """The metadata with `recipe.optimizer` renamed (a copy; unchanged without a match)."""
    recipe = meta.get("recipe")
    if rename is None or not isinstance(recipe, dict) or recipe.get("optimizer") != rename[0]:
        return meta
    return {**meta, "recipe": {**recipe, "optimizer": rename[1]}}


def same_tensors(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Same names, and for each the same dtype, shape and bytes."""
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a
    )


def rewrite(path: Path, rename: tuple[str, str] | None) -> str:
    """Rewrite one file; returns what changed ('checksum added', 'optimizer renamed', ...)."""
    arrays, meta = load_arrays(path, allow_unchecked=True, note_unverified=False)
    new_meta = edited(meta, rename)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_arrays(tmp, arrays, new_meta)
        again, again_meta = load_arrays(tmp)  # verifies the new checksum
        if not same_tensors(arrays, again) or again_meta != new_meta:
            raise WeightsError(f"{path}: the rewritten file differs from the original")
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
        refresh_manifest(path)  # the SHA256SUMS beside it, if there is one
    finally:
        Path(tmp).unlink(missing_ok=True)
    return "optimizer renamed, checksum written" if new_meta != meta else "checksum written"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--rename-optimizer", default=None, metavar="OLD=NEW")
    args = ap.parse_args()
    rename = None
    if args.rename_optimizer is not None:
        old, sep, new = args.rename_optimizer.partition("=")
        if not sep or not old or not new:
            raise ValueError(f"--rename-optimizer wants OLD=NEW, not {args.rename_optimizer!r}")
        rename = (old, new)
    for path in args.files:
        print(f"{path}: {rewrite(path, rename)}")


if __name__ == "__main__":
    with script_errors("rewrite_weights"):
        main()
