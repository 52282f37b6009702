"""Tables that fit the terminal: the wide form when it fits, else a narrow form of the same facts
(fewer columns, or a table turned on its side). Piped output has no width and keeps the wide form,
unless `COLUMNS` says otherwise (as it does for a test, or a user piping into a narrow pager)."""

import os
import re
from collections.abc import Callable

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

UNLIMITED = 10_000


def output_width(console: Console) -> int:
    """`COLUMNS` when set (read now, not when the console was made), else the console's width."""
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else console.width


def natural_width(console: Console, table: Table) -> int:
    """How wide `table` is with every cell on one line."""
    return Measurement.get(console, console.options.update_width(UNLIMITED), table).maximum


def print_fitting(console: Console, wide: Table, narrow: Callable[[], Table]) -> bool:
    """Print `wide` if it fits the output's width, else `narrow()` at that width; True when narrow."""
    width = output_width(console)
    fits = natural_width(console, wide) <= width
    console.print(wide if fits else narrow(), width=None if fits else width)
    return not fits


def folded(name: str, width: int) -> str:
    """`name` on lines of at most `width`, broken only after a `-`, `.`, `,` or space (a run or input
    name's own joints: `simple-logmel-clip-mean.deltas-pq8x256-seed2`), never inside a word; a
    single part longer than `width` keeps its own line whole."""
    parts = re.findall(r"[^-., ]*[-., ]|[^-., ]+$", name)
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1]) + len(part.rstrip()) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(line.rstrip() for line in lines)


def score_cell(value: float | None, spread: float | None = None, digits: int = 4) -> str:
    """A figure as tables show it: `0.7080 ± 0.0720`, or `-` where there is none."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}" + ("" if spread is None else f" ± {spread:.{digits}f}")
