"""MkDocs hook: the CLI reference, generated from the typer app at build time.

A page that holds the line `<!-- cli-reference -->` gets, in its place, every command of
`arraynet.cli.app` (walked through `typer.main.get_command`, sub-groups included): its
usage line, its help text, its arguments and options (grouped by their help panels) with
their defaults, and its epilog (the Examples block). The text is what `arraynet COMMAND
--help` prints, so the page cannot go stale: change a command's help and the next build
shows it. `render()` returns the markdown alone (`python docs/hooks/cli_reference.py`
prints it).
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "<!-- cli-reference -->"
_CODE = re.compile(r"(`[^`]*`)")


def plain(text: str | None) -> str:
    """Help text without rich markup ('[bold]Examples:[/]' -> 'Examples:'), as the terminal
    shows it, and without click's '\\b' no-rewrap marks."""
    if not text:
        return ""
    try:
        from rich.markup import render

        text = render(text).plain
    except Exception:  # (markup rich refuses: show the text as written)
        pass
    return text.replace("\b", "")


def escape(text: str, table: bool = False) -> str:
    """Markdown-safe prose: characters markdown would read as markup are escaped outside
    `code spans`; in a table cell, a '|' too, and line breaks become spaces."""
    out = []
    for part in _CODE.split(text):
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part.replace("|", r"\|") if table else part)
            continue
        part = part.replace("\\", "\\\\").replace("<", "&lt;").replace(">", "&gt;")
        for ch in "*_[]":
            part = part.replace(ch, "\\" + ch)
        if table:
            part = part.replace("|", r"\|")
        out.append(part)
    text = "".join(out)
    return " ".join(text.split()) if table else text


def paragraphs(text: str) -> list[str]:
    """Prose paragraphs as markdown; a block of indented lines becomes a text block."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", plain(text).strip("\n")):
        lines = block.splitlines()
        prose, code = [], []
        for line in lines:
            if line.startswith((" ", "\t")) and line.strip():
                code.append(line)
            else:
                if code:
                    out.append(_code_block(prose, code))
                    prose, code = [], []
                prose.append(line.strip())
        if code:
            out.append(_code_block(prose, code))
        elif prose:
            out.append(escape(" ".join(p for p in prose if p)))
    return [p for p in out if p.strip()]


def _code_block(prose: list[str], code: list[str]) -> str:
    """Lines of prose, then the indented lines as a ```text block (dedented)."""
    width = min(len(c) - len(c.lstrip()) for c in code)
    head = escape(" ".join(p for p in prose if p))
    body = "\n".join(c[width:].rstrip() for c in code)
    return (f"{head}\n\n" if head else "") + f"```text\n{body}\n```"


def default_text(p: Any) -> str:
    """The default as `--help` shows it, or '' where it shows none."""
    if getattr(p, "show_default", True) is False or getattr(p, "hidden", False):
        return ""
    d = p.default
    if callable(d) or d is None or d == () or d == []:
        return ""
    if _is_option(p) and p.is_flag:
        if p.secondary_opts:  # --resume/--no-resume
            return f"`{p.opts[0] if d else p.secondary_opts[0]}`"
        return "on" if d else ""
    if isinstance(d, list | tuple):
        d = ", ".join(map(str, d))
    if hasattr(d, "value"):  # an Enum
        d = d.value
    return f"`{d}`"


def option_names(p: Any) -> str:
    names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
    flag = p.is_flag
    metavar = p.metavar if isinstance(p.metavar, str) else None
    if not flag and metavar is None:
        metavar = (p.name or "value").upper()
    if metavar and not flag:
        names += f" `{metavar}`"
    return names


def param_table(params: list[Any], kind: str) -> str:
    rows = [f"| {kind} | Description | Default |", "|---|---|---|"]
    for p in params:
        if kind == "Argument":
            name = f"`{(p.metavar if isinstance(p.metavar, str) else p.name or '').upper()}`"
            if p.nargs != 1:
                name += " ..."
            if not p.required:
                name += " (optional)"
        else:
            name = option_names(p)
            if p.required:
                name += " (required)"
        help_ = escape(plain(getattr(p, "help", None) or ""), table=True)
        if getattr(p, "multiple", False) and "repeat" not in help_:
            help_ += " (repeatable)"
        rows.append(f"| {name} | {help_} | {default_text(p)} |")
    return "\n".join(rows)


def command_section(cmd: Any, ctx: Any, path: str, level: int) -> list[str]:
    """One command's markdown: heading, usage, help, parameters, epilog."""
    out = [f"{'#' * level} `{path}`", ""]
    usage = cmd.get_usage(ctx).replace("Usage: ", "", 1).strip()
    out += ["```text", plain(usage), "```", ""]
    for para in paragraphs(cmd.help or ""):
        out += [para, ""]
    params = [p for p in cmd.get_params(ctx) if not getattr(p, "hidden", False)]
    arguments = [p for p in params if not _is_option(p)]
    options = [p for p in params if _is_option(p)]
    if arguments:
        out += [param_table(arguments, "Argument"), ""]
    panels: dict[str, list[Any]] = {}
    for p in options:
        panels.setdefault(getattr(p, "rich_help_panel", None) or "Options", []).append(p)
    for panel, opts in panels.items():
        if len(panels) > 1 or panel != "Options":
            out += [f"**{escape(plain(panel))}**", ""]
        out += [param_table(opts, "Option"), ""]
    for para in paragraphs(cmd.epilog or ""):
        out += [para, ""]
    if _is_group(cmd):
        for name, sub in _commands(cmd, ctx):
            sub_ctx = _context(sub, name, ctx)
            out += command_section(sub, sub_ctx, f"{path} {name}", level + 1)
    return out


def summary_table(group: Any, ctx: Any, path: str) -> list[str]:
    """Every command (sub-groups' too) in one table, linked to its section."""
    rows = ["| Command | What it does |", "|---|---|"]
    for name, sub in _commands(group, ctx):
        full = f"{path} {name}"
        short = plain(sub.get_short_help_str(limit=300))
        rows.append(f"| [`{full}`](#{_anchor(full)}) | {escape(short, table=True)} |")
        if _is_group(sub):
            sub_ctx = _context(sub, name, ctx)
            rows += summary_table(sub, sub_ctx, full)[2:]
    return rows


# (typer may bring its own copy of click, `typer._click`: the commands and parameters are
# told apart by what they have, not by click's classes)
def _is_option(p: Any) -> bool:
    return getattr(p, "param_type_name", "") == "option"


def _is_group(cmd: Any) -> bool:
    return hasattr(cmd, "list_commands")


def _context(cmd: Any, name: str, parent: Any) -> Any:
    return cmd.context_class(cmd, info_name=name, parent=parent)


def _commands(group: Any, ctx: Any) -> list[tuple[str, Any]]:
    """(name, command) of a group's visible commands, in the order --help lists them."""
    subs = [(n, group.get_command(ctx, n)) for n in group.list_commands(ctx)]
    return [(n, c) for n, c in subs if c is not None and not getattr(c, "hidden", False)]


def _anchor(title: str) -> str:
    """The id Python-Markdown's toc gives a heading `title` (code spans, lowercased)."""
    return re.sub(r"[^\w\- ]", "", title).strip().lower().replace(" ", "-")


def render() -> str:
    """The whole reference as markdown."""
    import typer

    import arraynet.cli

    root = typer.main.get_command(arraynet.cli.app)
    ctx = _context(root, "arraynet", None)
    out: list[str] = []
    for para in paragraphs(root.help or ""):
        out += [para, ""]
    out += [*summary_table(root, ctx, "arraynet"), ""]
    root_opts = [p for p in root.get_params(ctx) if not getattr(p, "hidden", False)]
    if root_opts:
        out += ["Options every command accepts before its name (`arraynet --version`):", ""]
        out += [param_table(root_opts, "Option"), ""]
    for name, sub in _commands(root, ctx):
        sub_ctx = _context(sub, name, ctx)
        out += command_section(sub, sub_ctx, f"arraynet {name}", 2)
    return "\n".join(out).rstrip() + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())


if __name__ == "__main__":
    print(render())
