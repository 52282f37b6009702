"""Collections as Hugging Face `datasets` lays them out on disk: an `audiofolder` (audio files beside
a `metadata.csv` or `metadata.jsonl` whose `file_name` column names each file relative to it, and a
label column), at the root or in split folders (`train/`, `test/`: the folder is each clip's
source, so `split --test-source test` keeps the published split); and a `datasets` export (Parquet
as the hub stores audio sets, or `save_to_disk`'s Arrow) with an `audio` column, written out as an
audiofolder first, since audiotok reads every clip from a file."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from audiotok_cli.corpora.entries import Entry, read_rows, relative
from audiotok_cli.corpora.generic import AUDIO_SUFFIXES
from audiotok_cli.errors import DataError

log = logging.getLogger(__name__)

METADATA = ("metadata.csv", "metadata.jsonl")
DEFAULT_LABEL = "label"


def audiofolder_metadata(root: Path) -> list[Path]:
    """The metadata files of an audiofolder: at its root, or one in each split folder."""
    return sorted(path for name in METADATA for path in (*root.glob(name), *root.glob(f"*/{name}")))


def read_audiofolder(
    root: Path, manifest: Path | None = None, label_column: str | None = None
) -> list[Entry]:
    """Every row of every metadata file; labels from `label_column` (default `label`): one value, a
    list (JSON Lines), or `;`-separated names."""
    column = label_column or DEFAULT_LABEL
    entries = []
    metadata_files = audiofolder_metadata(root)
    for metadata in metadata_files:
        folder = PurePosixPath(metadata.parent.relative_to(root).as_posix())
        rows = _rows(metadata)
        if rows and column not in rows[0]:
            columns = ", ".join(name for name in rows[0] if name != "file_name")
            raise DataError(
                f"{metadata} has no label column {column!r} (it has {columns or 'none'}); pass --label-column"
            )
        for number, row in enumerate(rows, start=2 if metadata.suffix == ".csv" else 1):
            where = f"{metadata} line {number}"
            if not row.get("file_name"):
                raise DataError(f"{where}: no file_name; each row names its audio file")
            entries.append(
                Entry(
                    path=relative(root, str(folder / str(row["file_name"])), where),
                    labels=_labels(row[column]),
                    source=folder.parts[0] if folder.parts else None,
                    where=where,
                )
            )
    _say_unlisted(root, metadata_files, {entry.path for entry in entries})
    return entries


def _say_unlisted(root: Path, metadata_files: list[Path], listed: set[str]) -> None:
    """Audio files under a metadata file's folder that no row names are left out, as `datasets`
    leaves them: said in one warning, counted and named, never silently."""
    unlisted = sorted(
        relative_path
        for folder in {metadata.parent for metadata in metadata_files}
        for path in folder.rglob("*")
        if path.suffix.lower() in AUDIO_SUFFIXES
        and (relative_path := path.relative_to(root).as_posix()) not in listed
    )
    if unlisted:
        shown = ", ".join(unlisted[:3]) + ", ..." * (len(unlisted) > 3)
        log.warning(
            "%d audio files of %s are named by no metadata row (%s): left out; add rows for them to import "
            "them", len(unlisted), root, shown,
        )  # fmt: skip


def _rows(metadata: Path) -> list[dict]:
    if metadata.suffix == ".csv":
        return read_rows(metadata, ("file_name",))
    rows = []
    for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{metadata} line {number} is not JSON ({exc.msg}); fix that line") from None
    return rows


def _labels(value: object) -> tuple[str, ...]:
    values = value if isinstance(value, list) else str(value if value is not None else "").split(";")
    return tuple(str(one).strip() for one in values if str(one).strip())


DATASET_SUFFIXES = (".parquet", ".arrow")
SPLIT_NAMES = ("train", "validation", "valid", "dev", "test")


def dataset_files(root: Path) -> list[Path]:
    """A `datasets` export: one Parquet or Arrow file, or a folder of them (`data/train-*.parquet`,
    `save_to_disk`'s `data-*.arrow`); empty where `root` is something else."""
    if root.is_file():
        return [root] if root.suffix in DATASET_SUFFIXES else []
    if not root.is_dir() or audiofolder_metadata(root):
        return []
    return sorted(path for suffix in DATASET_SUFFIXES for path in root.rglob(f"*{suffix}"))


def dataset_to_audiofolder(root: Path, target: Path, label_column: str | None = None) -> Path:
    """A `datasets` export with an `audio` column (bytes, or a path next to the file) written out as an
    audiofolder under `target`: a folder per split (from the file's name, `train-00000-of-00001`, or
    its `save_to_disk` folder, `test/`) with its audio files and a metadata.csv naming each file's
    labels (a `ClassLabel`'s names). Files already written are kept; the metadata is written last."""
    column = label_column or DEFAULT_LABEL
    rows: dict[str, list[tuple[str, str]]] = {}
    for file in dataset_files(root):
        table = _table(file)
        columns = ", ".join(table.column_names)
        if "audio" not in table.column_names:
            raise DataError(
                f"{file} has no audio column (it has {columns}); export the dataset with its audio "
                "(`datasets`' Audio feature, decode=False keeps the bytes)"
            )
        if column not in table.column_names:
            raise DataError(f"{file} has no label column {column!r} (it has {columns}); pass --label-column")
        names = _class_names(table, column)
        split = _split_of(file, root)
        folder = target / split
        folder.mkdir(parents=True, exist_ok=True)
        for index, (audio, label) in enumerate(
            zip(table["audio"].to_pylist(), table[column].to_pylist(), strict=True)
        ):
            named = f", {audio['path']}" if audio.get("path") else ""
            where = f"{file} row {index} (split {split}{named})"  # the user's row, not a file written
            file_name = f"{file.stem}-{index:06d}{_suffix(audio)}"
            _write_audio(audio, file.parent, folder / file_name, where)
            rows.setdefault(split, []).append((file_name, ";".join(_named(label, names, where))))
    for split, listed in rows.items():
        partial = target / split / ".metadata.csv.partial"
        with partial.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerows([("file_name", DEFAULT_LABEL), *listed])
        partial.replace(target / split / "metadata.csv")
    return target


def _split_of(file: Path, root: Path) -> str:
    """A file's split: from its name as the hub names Parquet shards (`test-00000-of-00001`), else
    from the folder `save_to_disk` gives each split of a DatasetDict (`test/data-00000-of-00001.arrow`),
    else train."""
    named = next((split for split in SPLIT_NAMES if file.stem.startswith(split)), None)
    folders = file.parent.relative_to(root).parts if root.is_dir() and file.is_relative_to(root) else ()
    return named or next((part for part in reversed(folders) if part in SPLIT_NAMES), "train")


def _table(file: Path) -> pa.Table:
    try:
        if file.suffix == ".parquet":
            return pq.read_table(file)
        with pa.memory_map(str(file)) as source:
            return pa.ipc.open_stream(source).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{file} is not a readable {file.suffix[1:]} file ({exc}); export it again") from None


def _class_names(table: pa.Table, column: str) -> list[str] | None:
    """A `ClassLabel` column's names, from the `datasets` features in the file's metadata."""
    metadata = (table.schema.metadata or {}).get(b"huggingface")
    info = json.loads(metadata) if metadata else {}
    feature = (info.get("info", {}).get("features") or {}).get(column, {})
    feature = feature.get("feature", feature)  # a list of ClassLabels: its element
    return feature.get("names") if feature.get("_type") == "ClassLabel" else None


def _named(label: object, names: list[str] | None, where: str) -> list[str]:
    """A row's label(s) by name: a `ClassLabel` index as its name, anything else as written."""
    values = [value for value in (label if isinstance(label, list) else [label]) if value not in (None, -1)]
    if names is None:
        return [str(value) for value in values]
    outside = [value for value in values if isinstance(value, int) and not 0 <= value < len(names)]
    if outside:
        raise DataError(
            f"{where}: label {outside[0]} is outside its ClassLabel's {len(names)} names; export it again"
        )
    return [names[value] if isinstance(value, int) else str(value) for value in values]


def _suffix(audio: dict) -> str:
    suffix = PurePosixPath(audio.get("path") or "").suffix.lower()
    return suffix if suffix else ".wav"


def _write_audio(audio: dict, home: Path, target: Path, where: str) -> None:
    """The row's audio as a file: its bytes, or the file its path names (next to the export)."""
    if audio.get("bytes"):
        if not target.exists() or target.read_bytes() != audio["bytes"]:  # a re-export's new audio
            target.write_bytes(audio["bytes"])
        return
    source = home / (audio.get("path") or "")
    if not audio.get("path") or not source.is_file():
        raise DataError(f"{where}: its audio has no bytes and no file at {source}; export it with the audio")
    if not target.exists():
        shutil.copy2(source, target)
