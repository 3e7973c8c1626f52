"""The typer applications the command modules register their commands on."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="arraynet: a small, fast, GPU-optional deep-learning framework on the Array API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="MNIST files: fetch, verify, path.", no_args_is_help=True)
app.add_typer(data_app, name="data")
