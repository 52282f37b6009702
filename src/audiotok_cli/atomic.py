"""Crash-safe file writes: write beside the target under a hidden name, then rename over it, so a
reader never sees a half-written file and a crash leaves the old file (or none) in place. A full
disk becomes a DiskFullError naming the file, wherever the write happens."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from audiotok_cli.errors import DiskFullError


@contextmanager
def naming_full_disk(path: Path | str) -> Iterator[None]:
    """Turn a full disk (or quota) while writing `path` into one error that names it."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                f"disk full writing {path}; free space and run the command again: finished work is kept"
            ) from None
        raise


def write_atomic(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with naming_full_disk(path):
            tmp.write_bytes(payload)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_json(path: Path, values: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(values, indent=2, sort_keys=True).encode())
