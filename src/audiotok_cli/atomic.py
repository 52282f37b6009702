"""Crash-safe file writes: write beside the target under a hidden name, then rename over it, so a
reader never sees a half-written file and a crash leaves the old file (or none) in place."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; once the block succeeds it replaces `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_atomic(path: Path, payload: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(payload)


def write_json(path: Path, values: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(values, indent=2, sort_keys=True).encode())
