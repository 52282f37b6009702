"""The command line: one module per command group, all registered on the app in `app.py`."""

from audiotok_cli.cli import data, pipeline, results, status, training  # noqa: F401  (importing registers them)
from audiotok_cli.cli.app import COMMANDS, app, main

__all__ = ["COMMANDS", "app", "main"]
