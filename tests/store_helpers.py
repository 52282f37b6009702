"""Stores for tests, made through the same public door as `expand` uses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from audiotok_cli.audioset.classes import SOURCES
from audiotok_cli.class_lists import audioset_classes
from audiotok_cli.store import NewStore, Store


def new_store(path: Path) -> Store:
    """An empty store at `path`, created under the writer lock like `expand` creates one."""
    with Store.writing(path, "test", create=NewStore(audioset_classes(), SOURCES)) as store:
        return store


def printed_repairs(stdout: str) -> list[str]:
    """The commands `verify` printed after "to repair:", in order."""
    return re.findall(r"to repair: `([^`]+)`", " ".join(stdout.split()))


def run_printed(cli, command: str) -> None:
    """Run a printed repair as a shell would: `;`-separated audiotok commands, each to the end (the
    first, `verify --repair`, exits 5 while damage no stage redoes piecewise is left)."""
    for part in command.split(";"):
        words = shlex.split(part)
        assert words[0] == "audiotok", command
        result = cli(*words[1:])
        assert result.exit_code in ((0, 5) if words[1:3] == ["verify", "--repair"] else (0,)), result.output
