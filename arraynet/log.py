"""arraynet's diagnostics: `logging`, under the "arraynet" logger.

A module that has something to say takes `get_logger(__name__)` (a plain
`logging.getLogger`, with the package's handler in place). That handler prints each message
alone, as one line on the stderr of the moment (so a redirected or captured `sys.stderr`
gets it): WARNING and above by default, which is what a user must see (an implicit
download, weights that cannot be verified, a server open to the network). The command line
calls `configure_cli_logging()`, which lets INFO notes through too.

To quieten arraynet: `logging.getLogger("arraynet").setLevel(logging.ERROR)`. To route its
messages through an application's own logging set-up instead, remove that handler and let
them propagate: `log = logging.getLogger("arraynet"); log.handlers.clear();
log.propagate = True`.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER_NAME", "configure_cli_logging", "get_logger"]

LOGGER_NAME = "arraynet"


class _Stderr(logging.Handler):
    """Each record's message on the current `sys.stderr`, one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _package_logger() -> logging.Logger:
    """The "arraynet" logger, given its stderr handler (and WARNING, unless a level was
    set) the first time; it does not propagate, so no message is printed twice."""
    logger = logging.getLogger(LOGGER_NAME)
    if not getattr(logger, "_arraynet_configured", False):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
        logger._arraynet_configured = True  # type: ignore[attr-defined]
    return logger


def get_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)` for a module of arraynet, the package's handler in place."""
    _package_logger()
    return logging.getLogger(name)


def configure_cli_logging(level: int = logging.INFO) -> logging.Logger:
    """What the command line does first: arraynet's messages from `level` up (INFO: notes
    too) on stderr, as bare lines. Returns the "arraynet" logger."""
    logger = _package_logger()
    logger.setLevel(level)
    return logger
