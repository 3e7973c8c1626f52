"""`arraynet data`: fetch, verify and locate the MNIST files."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from arraynet.cli.app import data_app
from arraynet.cli.options import DataDirOpt, JsonOpt
from arraynet.cli.output import CliError, emit_json


# -- data -------------------------------------------------------------------------------
@data_app.command("fetch")
def data_fetch(data_dir: DataDirOpt = None) -> None:
    """Make sure the four MNIST files are present and verified (download what is missing)."""
    from arraynet.data import fetch

    Console().print(str(fetch(data_dir)))


@data_app.command("verify")
def data_verify(data_dir: DataDirOpt = None, json_mode: JsonOpt = False) -> None:
    """Check the SHA-256 and IDX header of each file."""
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
    """The folder the MNIST files are read from (or will be downloaded to)."""
    from arraynet.data import resolve_data_dir

    Console().print(str(resolve_data_dir(data_dir)))
