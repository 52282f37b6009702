"""Any collection: a manifest CSV, or one folder per class."""

from __future__ import annotations

from pathlib import Path

from audiotok_cli.corpora.entries import Entry, fold_number, read_rows, relative
from audiotok_cli.errors import MissingInputError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".opus", ".w64", ".caf"}


def read_manifest(root: Path, manifest: Path | None) -> list[Entry]:
    """`path` (relative to `root`) and `labels` (`;`-separated), optional `fold`, `group`, `source`."""
    assert manifest is not None
    entries = []
    for number, row in enumerate(read_rows(manifest, ("path", "labels")), start=2):
        where = f"{manifest} line {number}"
        entries.append(
            Entry(
                path=relative(root, row["path"], where),
                labels=tuple(label.strip() for label in (row["labels"] or "").split(";") if label.strip()),
                fold=fold_number(row.get("fold"), where),
                group=(row.get("group") or "").strip() or None,
                source=(row.get("source") or "").strip() or None,
                where=where,
            )
        )
    return entries


def read_folders(root: Path, manifest: Path | None = None) -> list[Entry]:
    """`root/<class>/<file>`: each audio file under a class folder (at any depth) has that label. A
    symlink whose target is gone (git-annex or DVC content not fetched) is an entry too: import
    counts it unreadable, instead of the collection shrinking without a word."""
    entries = [
        Entry(path=path.relative_to(root).as_posix(), labels=(path.relative_to(root).parts[0],))
        for path in root.rglob("*")
        if path.suffix.lower() in AUDIO_SUFFIXES
        and (path.is_file() or path.is_symlink())
        and len(path.relative_to(root).parts) > 1
    ]
    if not entries:
        raise MissingInputError(
            f"no audio files in class folders under {root} (expected {root}/<class>/<file>); "
            "or describe the collection with --manifest FILE.csv"
        )
    return entries
