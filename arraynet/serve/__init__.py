"""A web page to draw a digit on, and the JSON API behind it (the `serve` extra)."""

from arraynet.serve.app import MAX_BYTES, MAX_PIXELS, create_app, run_server

__all__ = ["MAX_BYTES", "MAX_PIXELS", "create_app", "run_server"]
