"""One file of a collection, as its layout describes it."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from audiotok_cli.errors import DataError, MissingInputError


@dataclass(frozen=True)
class Entry:
    """`path` is relative to the collection's root (POSIX separators): the clip's stable identity."""

    path: str
    labels: tuple[str, ...]
    fold: int | None = None
    group: str | None = None
    source: str | None = None
    where: str = field(default="", compare=False)  # the metadata line that lists it, for messages


def relative(root: Path, path: str, where: str) -> str:
    """A path of a metadata file as a clean relative POSIX path; one that leaves the root is refused."""
    clean = PurePosixPath(path.strip().replace("\\", "/"))
    if not path.strip() or clean.is_absolute() or ".." in clean.parts:
        raise DataError(f"{where}: path {path!r} must be relative to {root} and stay inside it")
    return str(clean)


def read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """A metadata CSV's rows; a missing file or column is refused in one line naming it."""
    if not path.is_file():
        raise MissingInputError(f"no metadata file {path}; check the collection's root folder")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable CSV ({exc}); save it as UTF-8 CSV") from None
    missing = [name for name in required if name not in columns]
    if missing:
        raise DataError(
            f"{path} lacks the column(s) {', '.join(missing)} (it has {', '.join(columns) or 'none'})"
        )
    return rows


def fold_number(value: str | None, where: str) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{where}: fold {value!r} is not a whole number") from None
