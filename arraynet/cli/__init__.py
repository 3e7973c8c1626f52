"""The `arraynet` command line (typer + rich): `main()` runs it.

Commands live in `train` (train), `models` (evaluate, predict, export, serve, zoo),
`tools` (backends, parity, bench, sweep, plot) and `data` (data fetch, verify, path);
`app` holds the typer apps and how their help looks, `options` the shared options and
their help panels, `rundirs` the default run folders (runs/<model>-<time>, runs/latest),
and `output` the consoles, JSON lines and errors.
"""

from __future__ import annotations

import os
import sys
import warnings

# importing a command module registers its commands; --help lists them in this order
# isort: off
from arraynet.cli import train
from arraynet.cli import models
from arraynet.cli import tools
from arraynet.cli import data

# isort: on

from arraynet.cli.app import app, data_app
from arraynet.cli.models import CHECK_TOL
from arraynet.cli.options import check_model, comm_world, make_backend, rng_kind
from arraynet.cli.output import (
    CliError,
    abort_others,
    console,
    emit_json,
    err,
    fail,
    finite,
    script_errors,
)
from arraynet.log import configure_cli_logging

_finite = finite  # (its name in the single-module cli.py, which tests import)

__all__ = [
    "CHECK_TOL", "CliError", "abort_others", "app", "check_model", "comm_world", "console",
    "data", "data_app", "emit_json", "err", "fail", "finite", "main", "make_backend",
    "models", "rng_kind", "script_errors", "tools", "train",
]  # fmt: skip

_NUMPY_FP_WARNINGS = (
    r"(overflow|invalid value|divide by zero|underflow) encountered"  # numpy's floating-point
)


def main() -> None:
    """Run the CLI; known errors become one line on stderr and exit status 1."""
    from arraynet.backends import BackendUnavailable
    from arraynet.data import DataError
    from arraynet.io import WeightsError
    from arraynet.train.loop import EpochSavedError

    # A diverging run is reported in one line (TrainingDiverged); NumPy's own warnings
    # about the overflows on the way would only bury it.
    warnings.filterwarnings("ignore", category=RuntimeWarning, message=_NUMPY_FP_WARNINGS)
    configure_cli_logging()  # library notes: lines on stderr
    try:
        app(prog_name="arraynet")  # (also under `python -m arraynet.cli`: completion, usage)
    except (
        CliError,
        BackendUnavailable,
        DataError,
        WeightsError,
        ValueError,
        FileNotFoundError,
        EpochSavedError,
    ) as e:
        fail(e)
    except OSError as e:  # a full disk, a folder that cannot be written: name the file
        fail(e if e.filename is None else CliError(f"{e.filename}: {e.strerror or e}"))
    except KeyboardInterrupt:
        err.print("interrupted")
        abort_others(130)
        sys.exit(130)
    except SystemExit as e:  # typer turns Ctrl-C inside a command into exit status 130
        if e.code == 130:
            err.print("interrupted")
        raise
    except Exception as e:
        if os.environ.get("ARRAYNET_DEBUG"):
            raise  # (under MPI, the uncaught-exception hook ends the other ranks)
        fail(e, prefix=f"{type(e).__name__}: ")
