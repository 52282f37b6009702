"""Stores for tests, made through the same public door as `expand` uses."""

from __future__ import annotations

from pathlib import Path

from audiotok_cli.store import Store


def new_store(path: Path) -> Store:
    """An empty store at `path`, created under the writer lock like `expand` creates one."""
    with Store.writing(path, "test", create=True) as store:
        return store
