"""The typer applications the command modules register their commands on, and how their
help looks: one-line summaries, grouped options, no `<type>` tags, an Examples block."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from arraynet import __version__


def reflow(text: str | None) -> str | None:
    """Help text with each paragraph's line breaks made spaces (rich help keeps them, so a
    docstring's source lines would break the text mid-sentence); a paragraph that starts
    with a backspace (click's 'keep as is' mark) or an indented line stays as written."""
    if not text:
        return text
    paragraphs = text.strip().split("\n\n")
    return "\n\n".join(
        p if p.startswith(("\b", " ")) else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def examples(*lines: str) -> str:
    """A command's help epilog: an Examples block of real invocations, one a line, each
    indented (the leading newline keeps typer's dedent from taking the indent away)."""
    return "\n[bold]Examples:[/]\n" + "\n".join(f"  {line}" for line in lines)


FEW_OPTIONS = 4  # a command with fewer options shows them in one panel


class _Argument(TyperArgument):
    """A positional argument shown by its name alone (no `<type>` column)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def tidy(params: list[Any]) -> list[Any]:
    """The help's view of a command's parameters: a flag shows no type tag, an option
    without a metavar shows its name in capitals (`--device DEVICE`), an argument its name
    alone; a command with few options shows them in one panel, and --help joins the last
    panel when every other option has one."""
    options = [p for p in params if isinstance(p, TyperOption)]
    for p in options:
        if p.metavar is None:
            p.metavar = "" if p.is_flag else (p.name or "value").upper()
    for p in params:
        if type(p) is TyperArgument:
            p.__class__ = _Argument
    others = [p for p in options if p.name != "help"]
    if len(others) < FEW_OPTIONS:  # a few options read best in one panel
        for p in others:
            p.rich_help_panel = None
    elif all(p.rich_help_panel for p in others):
        for p in options:
            if p.name == "help" and p.rich_help_panel is None:
                p.rich_help_panel = others[-1].rich_help_panel
    return params


class Command(TyperCommand):
    """A command whose help text reflows and whose parameters are shown tidily."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, help=reflow(help), **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:
        return tidy(super().get_params(ctx))


class Group(TyperGroup):
    """A group of commands with the same tidy help."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, help=reflow(help), **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:
        return tidy(super().get_params(ctx))


class App(typer.Typer):
    """typer.Typer whose commands are `Command`s and whose groups are `Group`s."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=Group, **kwargs)

    def command(self, *args: Any, cls: type | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or Command, **kwargs)


app = App(
    help="arraynet: a small, fast, GPU-optional deep-learning framework on the Array API.\n\n"
    "`arraynet COMMAND --help` shows a command's options and examples.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
data_app = App(help="Fetch, verify and locate the MNIST files.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"arraynet {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            is_eager=True,
            callback=_print_version,
            help="Show arraynet's version and exit.",
        ),
    ] = False,
) -> None:
    """(The options every command shares: --version.)"""  # (the app's help is above)
