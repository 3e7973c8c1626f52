"""`arraynet data`: fetch, verify and locate the MNIST files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from arraynet.cli.app import data_app, examples
from arraynet.cli.options import JsonOpt
from arraynet.cli.output import CliError, emit_json

DataDirOpt = Annotated[
    str | None,
    typer.Option("--data-dir", metavar="DIR",
                 help="the MNIST folder (default: ARRAYNET_DATA, else a cache folder)"),
]  # fmt: skip


# -- data -------------------------------------------------------------------------------
@data_app.command(
    "fetch",
    epilog=examples(
        "arraynet data fetch",
        "arraynet data fetch --data-dir ~/mnist",
        "ARRAYNET_DATA=~/mnist arraynet data fetch   # the folder every command reads",
    ),
)
def data_fetch(data_dir: DataDirOpt = None) -> None:
    """Download the MNIST files that are missing, and verify all four.

    Prints the folder they are in."""
    from arraynet.data import fetch

    Console().print(str(fetch(data_dir)))


@data_app.command("verify")
def data_verify(data_dir: DataDirOpt = None, json_mode: JsonOpt = False) -> None:
    """Check each MNIST file's SHA-256 and IDX header."""
    from arraynet.data import verify

    rows = verify(data_dir)
    bad = [r for r in rows if not r["ok"]]
    if json_mode:
        emit_json({"ok": not bad, "files": rows})
    else:
        for r in rows:
            Console().print(
                f"{'ok  ' if r['ok'] else 'BAD '} {r['path']}"
                + (f"  {r['error']}" if r["error"] else "")
            )
    if bad:
        raise CliError(f"{Path(bad[0]['path']).name}: {bad[0]['error']}")


@data_app.command("path")
def data_path(data_dir: DataDirOpt = None) -> None:
    """Print the folder the MNIST files are read from.

    The folder `arraynet data fetch` downloads to when the files are not there yet."""
    from arraynet.data import resolve_data_dir

    Console().print(str(resolve_data_dir(data_dir)))
