"""Published benchmarks as they ship, with their own folds and groups, so figures compare with
the literature's: ESC-50 (5 folds; clips cut from one Freesound recording share `src_file`) and
UrbanSound8K (10 folds; slices of one recording share `fsID`)."""

from __future__ import annotations

from pathlib import Path

from audiotok_cli.corpora.entries import Entry, fold_number, read_rows

ESC50_META = "meta/esc50.csv"
URBANSOUND8K_META = "metadata/UrbanSound8K.csv"


def read_esc50(root: Path, manifest: Path | None = None) -> list[Entry]:
    """`meta/esc50.csv` (filename, fold, category, src_file); audio under `audio/`."""
    meta = root / ESC50_META
    return [
        Entry(
            path=f"audio/{row['filename']}",
            labels=(row["category"],),
            fold=fold_number(row["fold"], f"{meta} line {number}"),
            group=row.get("src_file") or None,
        )
        for number, row in enumerate(read_rows(meta, ("filename", "fold", "category")), start=2)
    ]


def read_urbansound8k(root: Path, manifest: Path | None = None) -> list[Entry]:
    """`metadata/UrbanSound8K.csv` (slice_file_name, fsID, fold, class); audio under `audio/fold{N}/`."""
    meta = root / URBANSOUND8K_META
    return [
        Entry(
            path=f"audio/fold{row['fold']}/{row['slice_file_name']}",
            labels=(row["class"],),
            fold=fold_number(row["fold"], f"{meta} line {number}"),
            group=row["fsID"] or None,
        )
        for number, row in enumerate(read_rows(meta, ("slice_file_name", "fsID", "fold", "class")), start=2)
    ]
