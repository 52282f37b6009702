"""Labelled audio collections as they ship: what each file is, its labels and its protocol (fold,
group, source), read from a manifest, class folders, or a published layout (ESC-50, UrbanSound8K).

Each layout is one reader `read(root, manifest) -> list[Entry]` and one `Layout` line here; it knows
the collection's files and nothing of the store (`stages/import_audio.py` brings entries in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from audiotok_cli.corpora.entries import Entry
from audiotok_cli.corpora.generic import read_folders, read_manifest
from audiotok_cli.corpora.hub import audiofolder_metadata, read_audiofolder
from audiotok_cli.corpora.published import ESC50_META, URBANSOUND8K_META, read_esc50, read_urbansound8k
from audiotok_cli.errors import DataError, MissingInputError, SettingsError

__all__ = ["LAYOUTS", "Entry", "Layout", "detect_layout", "read_collection"]


@dataclass(frozen=True)
class Layout:
    name: str
    marker: str | None  # a file whose presence under the root says "this layout"
    read: Callable[..., list[Entry]]  # (root, manifest[, label_column]) -> entries
    label_column: bool = False  # whether its reader takes the label column to read (`--label-column`)


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("esc50", ESC50_META, read_esc50),
        Layout("urbansound8k", URBANSOUND8K_META, read_urbansound8k),
        Layout("audiofolder", None, read_audiofolder, label_column=True),
        Layout("manifest", None, read_manifest),
        Layout("folders", None, read_folders),
    )
}


def detect_layout(root: Path, manifest: Path | None) -> str:
    """A manifest when one is given, else a published layout whose metadata file is there, else a
    Hugging Face audiofolder (metadata.csv or .jsonl), else class folders."""
    if manifest is not None:
        return "manifest"
    found = [layout.name for layout in LAYOUTS.values() if layout.marker and (root / layout.marker).is_file()]
    if not found and audiofolder_metadata(root):
        return "audiofolder"
    return found[0] if found else "folders"


def read_collection(
    root: Path, layout: str | None = None, manifest: Path | None = None, label_column: str | None = None
) -> tuple[str, list[Entry]]:
    """The collection's layout (detected unless given) and its entries, sorted by path; a file
    listed twice is one clip, as its first line describes it, and refused where the two lines give
    it different labels, folds, groups or sources (which one would be right?)."""
    if not root.is_dir():
        raise MissingInputError(f"{root} is not a folder; pass the collection's root folder")
    if layout is not None and layout not in LAYOUTS:
        raise SettingsError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if layout == "manifest" and manifest is None:
        raise SettingsError("--layout manifest needs --manifest FILE.csv")
    if manifest is not None and not manifest.is_file():  # a path given by the user, from where they are
        beside = root / manifest
        hint = f"; did you mean {beside}?" if not manifest.is_absolute() and beside.is_file() else ""
        raise MissingInputError(
            f"no manifest {manifest.resolve()} (--manifest is a path from the current folder, not the "
            f"collection's root){hint}"
        )
    layout = layout or detect_layout(root, manifest)
    entries = {}
    chosen = LAYOUTS[layout]
    if label_column is not None and not chosen.label_column:
        raise SettingsError(f"--label-column chooses an audiofolder's label column; {root} reads as {layout}")
    options = (label_column,) if chosen.label_column else ()
    for entry in chosen.read(root, manifest, *options):
        first = entries.setdefault(entry.path, entry)
        for what, mine, theirs in (
            ("labels", ";".join(sorted(first.labels)), ";".join(sorted(entry.labels))),
            ("folds", first.fold, entry.fold),
            ("groups", first.group, entry.group),
            ("sources", first.source, entry.source),
        ):
            if mine != theirs:
                raise DataError(
                    f"{entry.path} is listed twice with different {what}: {first.where or 'once'} "
                    f"({mine or 'none'}) and {entry.where or 'again'} ({theirs or 'none'}); keep the row "
                    "that is right"
                )
    return layout, sorted(entries.values(), key=lambda entry: entry.path)
