"""What the commands print: consoles, JSON result lines and one-line errors."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator
from typing import Any

from rich.console import Console

err = Console(stderr=True)


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def console(json_mode: bool) -> Console:
    """Human output goes to stdout, or to stderr when stdout carries JSON."""
    return err if json_mode else Console()


def finite(obj: Any) -> Any:
    """obj with NaN and infinities as null (strict JSON has no such numbers)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def emit_json(obj: Any) -> None:
    """One JSON line on stdout; a result object also names the ranks and communicator of
    the job that computed it (1 and 'single' unless the command trained data-parallel)."""
    from arraynet.parallel.comm import active_world

    w = active_world()
    if isinstance(obj, dict) and "ranks" not in obj:
        obj = {**obj, "ranks": w.size if w else 1, "communicator": w.name if w else "single"}
    sys.stdout.write(json.dumps(finite(obj), allow_nan=False) + "\n")
    sys.stdout.flush()


def abort_others(code: int) -> None:
    """In a job of several ranks, end them all (the others would wait for this one)."""
    from arraynet.parallel.comm import active_world

    w = active_world()
    if w is not None and w.size > 1:
        w.abort(code)


def fail(e: BaseException, prefix: str = "", prog: str = "arraynet") -> None:
    """Print `e` as one line on stderr ("prog: error: ...") and exit with status 1."""
    text = str(e).strip().splitlines()
    msg = text[0] if text else type(e).__name__
    from arraynet.parallel.comm import active_world

    w = active_world()
    if w is not None and w.size > 1:  # the other ranks would wait for this one: end them
        sys.stderr.write(f"{prog}: error (rank {w.rank}): {prefix}{msg}\n")
        abort_others(1)  # (does not return)
    sys.stderr.write(f"{prog}: error: {prefix}{msg}\n")
    sys.exit(1)


@contextlib.contextmanager
def script_errors(prog: str) -> Iterator[None]:
    """For the scripts: a known kind of error (bad input, a missing or corrupt file, a
    backend that is not there) becomes one line on stderr and exit status 1."""
    from arraynet.backends import BackendUnavailable
    from arraynet.data import DataError
    from arraynet.io import WeightsError

    try:
        yield
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        sys.exit(130)
    except KeyError as e:
        fail(e, prefix="missing entry ", prog=prog)
    except (BackendUnavailable, DataError, WeightsError, ValueError, OSError) as e:
        fail(e, prog=prog)
