"""Read a local mirror of the hub dataset `agkphysics/AudioSet`, in either of its layouts.

- parquet (revision `main`): `data/{source}/*.parquet` with columns `video_id`, `audio`
  (struct of FLAC `bytes` and `path`), `labels` (MIDs), `human_labels`.
- tar (legacy revision `LEGACY_REVISION`): `data/{source}NN.tar` holding `audio/{source}/{ytid}.flac`,
  labels in the segment CSVs `data/*_segments.csv`.

Both stream: memory is bounded by one Parquet row batch or one tar member.
"""

from __future__ import annotations

import csv
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from audiotok_cli.audioset.classes import SOURCES
from audiotok_cli.errors import DataError, MissingInputError

LAYOUTS = ("parquet", "tar")
LEGACY_REVISION = "5a2fa42a1506470d275a47ff8e1fdac5b364e6ef"
SEGMENT_CSVS = {
    "bal_train": "balanced_train_segments.csv",
    "unbal_train": "unbalanced_train_segments.csv",
    "eval": "eval_segments.csv",
}
YTID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Clips are 1-2 MB each: read column chunks in pieces and convert a few rows at a time. On a 64-clip
# (100 MB) row group, batches of 4 peaked at 212 MB of Arrow memory and took 0.13 s; of 32, 336 MB
# and 0.59 s; a whole read_row_group, 430 MB.
PARQUET_BATCH_ROWS = 4
PARQUET_OPTIONS = {"buffer_size": 1 << 20, "pre_buffer": False}


@dataclass(frozen=True)
class MirrorClip:
    ytid: str
    flac: bytes | None
    mids: tuple[str, ...]
    problem: str | None = None  # why this entry holds no usable audio (the clip is skipped)


def data_dir(mirror_dir: Path) -> Path:
    return mirror_dir / "data"


def detect_layout(mirror_dir: Path) -> str:
    """`parquet` or `tar`, from the files the mirror holds."""
    root = data_dir(mirror_dir)
    paths = [p.relative_to(mirror_dir).as_posix() for p in [*root.glob("*/*.parquet"), *root.glob("*.tar")]]
    layout = layout_of(paths)
    if layout:
        return layout
    raise MissingInputError(
        f"no Parquet or tar files under {root}; run `audiotok fetch` (or `audiotok demo-data`) first"
    )


def is_source_file(path: str, source: str, layout: str) -> bool:
    """Whether a repo-relative path (`data/...`) is one of `source`'s data files in `layout`."""
    if layout == "parquet":
        return re.fullmatch(rf"data/{re.escape(source)}/[^/]+\.parquet", path) is not None
    return re.fullmatch(rf"data/{re.escape(source)}\d+\.tar", path) is not None


def is_metadata_file(path: str) -> bool:
    """The ontology and segment CSVs: small files every layout needs beside the audio."""
    return (
        path in ("ontology.json", "data/ontology.json")
        or re.fullmatch(r"data/\w+_segments\.csv", path) is not None
    )


def layout_of(paths: list[str]) -> str | None:
    """`parquet` or `tar` from repo-relative paths, or None when neither kind of data file is there."""
    for layout in LAYOUTS:
        if any(is_source_file(p, s, layout) for p in paths for s in SOURCES):
            return layout
    return None


def source_files(mirror_dir: Path, source: str, layout: str) -> list[Path]:
    """The mirror's data files for one source, in name order (the order `--shards` indexes)."""
    root = data_dir(mirror_dir)
    candidates = root.glob(f"{source}/*.parquet" if layout == "parquet" else "*.tar")
    return sorted(
        p for p in candidates if is_source_file(p.relative_to(mirror_dir).as_posix(), source, layout)
    )


def clip_ids(path: Path, layout: str) -> list[str]:
    """YouTube IDs in one mirror file, without decoding audio (Parquet: one column; tar: headers)."""
    try:
        if layout == "parquet":
            return pq.read_table(path, columns=["video_id"]).column("video_id").to_pylist()
        with tarfile.open(path) as archive:
            return [Path(m.name).stem for m in archive if m.isfile() and m.name.endswith(".flac")]
    except (tarfile.TarError, EOFError, OSError, pa.ArrowException) as exc:
        raise DataError(f"{path} is truncated or corrupt ({exc}); delete it and fetch it again") from None


def available_sources(mirror_dir: Path, layout: str) -> list[str]:
    """The AudioSet sources the mirror holds files for."""
    return [source for source in SOURCES if source_files(mirror_dir, source, layout)]


def iter_clips(
    path: Path, source: str, layout: str, segments: dict[str, tuple[str, ...]]
) -> Iterator[MirrorClip]:
    """Clips of one mirror file; tar clips take their labels from `segments`."""
    try:
        if layout == "parquet":
            yield from _iter_parquet(path)
        else:
            yield from _iter_tar(path, segments)
    except (tarfile.TarError, EOFError, OSError, pa.ArrowException) as exc:
        raise DataError(
            f"{path} is truncated or corrupt ({exc}); delete it and download it again with `audiotok fetch`"
        ) from None


def _iter_parquet(path: Path) -> Iterator[MirrorClip]:
    parquet = pq.ParquetFile(path, **PARQUET_OPTIONS)
    missing = {"video_id", "audio", "labels"} - set(parquet.schema_arrow.names)
    if missing:
        raise DataError(f"{path} lacks columns {sorted(missing)}; is it an AudioSet Parquet file?")
    batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=["video_id", "audio", "labels"])
    number = 0
    for batch in batches:
        for row in batch.to_pylist():
            payload = (row["audio"] or {}).get("bytes")
            problem = None if payload else f"row {number} of {path.name} has no audio bytes"
            yield MirrorClip(
                _checked_ytid(row["video_id"], path), payload, tuple(row["labels"] or ()), problem
            )
            number += 1


def _iter_tar(path: Path, segments: dict[str, tuple[str, ...]]) -> Iterator[MirrorClip]:
    with tarfile.open(path, mode="r|") as archive:
        for member in archive:
            if not member.name.endswith(".flac") or not (member.isfile() or member.issym() or member.islnk()):
                continue
            ytid = _checked_ytid(Path(member.name).stem, path)
            if not member.isfile():  # never followed: a link could point anywhere
                kind = "symlink" if member.issym() else "hard link"
                yield MirrorClip(
                    ytid, None, segments.get(ytid, ()), f"{member.name} in {path.name} is a {kind}, not audio"
                )
                continue
            handle = archive.extractfile(member)
            payload = handle.read() if handle else b""
            if len(payload) != member.size:
                raise EOFError(f"member {member.name} ends early")
            yield MirrorClip(ytid, payload, segments.get(ytid, ()))


def iter_audio(path: Path, layout: str, wanted: set[str]) -> Iterator[tuple[str, bytes]]:
    """`(ytid, audio bytes)` of the `wanted` clips of one mirror file as they are read, reading no
    more than it must and holding a batch, not the file: Parquet row groups holding none of them are
    skipped (the ids come from one small column), the rest stream in batches of PARQUET_BATCH_ROWS
    and stop at the last wanted row; tar members are reached by seeking."""
    try:
        if layout == "parquet":
            parquet = pq.ParquetFile(path, **PARQUET_OPTIONS)
            ids = parquet.read(columns=["video_id"]).column(0).to_pylist()
            first = 0
            for group in range(parquet.num_row_groups):
                rows = range(first, first + parquet.metadata.row_group(group).num_rows)
                first = rows.stop
                left = {row for row in rows if ids[row] in wanted}
                if not left:
                    continue
                row = rows.start
                for batch in parquet.iter_batches(PARQUET_BATCH_ROWS, row_groups=[group], columns=["audio"]):
                    picks = [i for i in range(batch.num_rows) if row + i in left]
                    for pick, audio in zip(
                        picks, batch.column(0).take(pa.array(picks, pa.int64())).to_pylist(), strict=True
                    ):
                        if audio and audio["bytes"]:
                            yield ids[row + pick], audio["bytes"]
                    left.difference_update(row + pick for pick in picks)
                    row += batch.num_rows
                    if not left:
                        break
        else:
            with tarfile.open(path) as archive:
                for member in archive:
                    if member.isfile() and member.name.endswith(".flac") and Path(member.name).stem in wanted:
                        yield Path(member.name).stem, archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, pa.ArrowException) as exc:
        raise DataError(f"{path} is truncated or corrupt ({exc}); delete it and fetch it again") from None


def _checked_ytid(ytid: str, path: Path) -> str:
    """YouTube IDs become file names: refuse anything that could escape the audio directory."""
    if not isinstance(ytid, str) or not YTID_PATTERN.match(ytid):
        raise DataError(f"{path} holds an invalid YouTube ID {ytid!r}; the file is not AudioSet data")
    return ytid


def read_segments(mirror_dir: Path, source: str) -> dict[str, tuple[str, ...]]:
    """YTID -> MIDs from a segment CSV (three `#` lines, then `YTID, start, end, "mid,mid"`)."""
    path = data_dir(mirror_dir) / SEGMENT_CSVS[source]
    if not path.exists():
        raise MissingInputError(f"{path} is missing: tar mirrors take labels from it; fetch it again")
    labels: dict[str, tuple[str, ...]] = {}
    with path.open(newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith("#") or not line.strip():
                continue
            try:  # one record per line: a quote left open must not swallow the next rows
                row = next(csv.reader([line], skipinitialspace=True, strict=True))
            except csv.Error as exc:
                raise DataError(f"{path}:{number}: malformed row ({exc}); fetch the file again") from None
            if len(row) != 4:
                raise DataError(f"{path}:{number}: expected 4 fields, found {len(row)}; fetch the file again")
            labels[row[0]] = tuple(mid for mid in row[3].split(",") if mid)
    return labels
