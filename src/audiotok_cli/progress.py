"""Rich progress bars for every long loop, on stderr so stdout stays parseable (`--json`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

stderr_console = Console(stderr=True, soft_wrap=True, emoji=False)  # `pca:100:` is no emoji code
_shown = {"bars": True}  # `--quiet` hides every bar of the command it runs


def show_bars(shown: bool) -> None:
    _shown["bars"] = shown


@contextmanager
def progress(description: str, total: int | None, unit: str = "items") -> Iterator[Callable[[int], None]]:
    """A bar for one loop; yields `advance(n)`. With `unit="bytes"` it shows sizes and speed. A
    loop with nothing to do (total 0: a rerun of finished work) shows no bar."""
    counts = [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        *counts,
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=False,
        disable=not _shown["bars"] or total == 0,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
