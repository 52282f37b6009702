"""`expand`: hub mirror files -> one FLAC file per clip on disk, and clip rows in the store.

The unit of work is one mirror file (a Parquet file or a tar shard): it is recorded as expanded only
after all its clips are on disk and in the store, so a rerun skips it. Clip rows are committed in
batches and before any error propagates, so nothing already written is lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiotok_cli.atomic import write_atomic
from audiotok_cli.audio.logmel import audio_path
from audiotok_cli.audioset.classes import SOURCES, checked_sources
from audiotok_cli.audioset.mirror import (
    LAYOUTS,
    available_sources,
    clip_ids,
    detect_layout,
    iter_clips,
    read_segments,
    source_files,
)
from audiotok_cli.class_lists import audioset_classes, is_audioset
from audiotok_cli.errors import DataError, MismatchError, MissingInputError, SettingsError
from audiotok_cli.progress import progress
from audiotok_cli.settings import Paths
from audiotok_cli.store import NewStore, Store

log = logging.getLogger(__name__)
ROWS_PER_COMMIT = 512


@dataclass
class ExpandResult:
    source: str
    layout: str
    files_done: int = 0
    files_skipped: int = 0
    clips_added: int = 0
    clips_skipped: int = 0
    unlabeled: int = 0
    repaired: int = 0
    unknown_mids: set[str] = field(default_factory=set)
    skipped: dict[str, str] = field(default_factory=dict)  # ytid -> why no clip row was made
    bad_files: dict[str, str] = field(default_factory=dict)  # mirror file -> why it was not read


@dataclass
class ExpandReport:
    sources: list[ExpandResult]
    repair: bool = False

    def problem(self) -> DataError | None:
        """Unreadable mirror files fail the command (exit 5) after every other file is done."""
        bad = [why for result in self.sources for why in result.bad_files.values()]
        if not bad:
            return None
        return DataError(
            f"{len(bad)} mirror files could not be read and were left for the next run; first: {bad[0]}"
        )


@dataclass
class _PendingRows:
    store: Store
    source: str
    mirror_file: str
    ytids: list[str] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)

    def add(self, ytid: str, labels: np.ndarray) -> None:
        self.ytids.append(ytid)
        self.labels.append(labels)
        if len(self.ytids) >= ROWS_PER_COMMIT:
            self.commit()

    def commit(self) -> None:
        if self.ytids:
            self.store.append_clips(self.ytids, self.source, np.stack(self.labels), self.mirror_file)
            self.ytids, self.labels = [], []


def expand(
    paths: Paths,
    sources: list[str] | None = None,
    layout: str | None = None,
    overwrite: bool = False,
    repair: bool = False,
    audio: bool = True,
) -> ExpandReport:
    """Expand each source (default: every source the mirror holds) into `paths.audio_dir` and
    record its clips, creating the store if needed; the layout is detected unless given. Without
    `audio`, only clips and labels are recorded: featurize reads the audio from the mirror files.

    A mirror file that cannot be read is recorded and left for the next run; the others go on.
    With `repair`, only the audio of clips that featurize could not read is extracted again.
    """
    checked_sources(sources or [])
    if layout not in (None, *LAYOUTS):
        raise SettingsError(f"invalid layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    layout = layout or detect_layout(paths.mirror_dir)
    sources = sources or available_sources(paths.mirror_dir, layout)
    with Store.writing(paths.store, "expand", create=NewStore(audioset_classes(), SOURCES)) as store:
        if not is_audioset(store.classes):
            raise MismatchError(
                f"the store {store.path} holds a collection with its own {len(store.classes)} classes; "
                "expand AudioSet into another store with --store"
            )
        if repair:
            failed = {
                ytid for name in store.names("features") for ytid in store.features(name).record.failures
            }
            return ExpandReport(
                [_repair_source(paths, source, layout, failed) for source in sources], repair=True
            )
        return ExpandReport(
            [_expand_source(paths, store, source, layout, overwrite, audio) for source in sources]
        )


def _source_files(paths: Paths, source: str, layout: str) -> list[Path]:
    files = source_files(paths.mirror_dir, source, layout)
    if not files:
        raise MissingInputError(
            f"the {layout} mirror at {paths.mirror_dir} has no files for source {source!r}; "
            f"fetch it with `audiotok fetch --source {source}`"
        )
    return files


def _expand_source(
    paths: Paths, store: Store, source: str, layout: str, overwrite: bool, audio: bool
) -> ExpandResult:
    files = _source_files(paths, source, layout)
    segments = read_segments(paths.mirror_dir, source) if layout == "tar" else {}
    result = ExpandResult(source, layout)
    done = set() if overwrite else set(store.expanded_files(source))
    todo = [path for path in files if path.name not in done]
    result.files_skipped = len(files) - len(todo)
    with progress(f"expand {source}", len(todo)) as advance:
        for path in todo:
            skipped = len(result.skipped)
            try:
                audio_dir = paths.audio_dir if audio else None
                _expand_file(audio_dir, store, source, layout, path, segments, overwrite, result)
            except DataError as exc:  # recorded; the rows before the damage are kept
                result.bad_files[str(path)] = str(exc)
                store.mark_bad_file(source, path.name, str(exc))
                log.warning("%s", exc)
            else:
                store.mark_expanded(source, path.name, dict(list(result.skipped.items())[skipped:]))
                result.files_done += 1
            advance(1)
    if result.unlabeled:
        log.warning(
            "%d %s clips have no labels; `split` leaves them out of training", result.unlabeled, source
        )
    for ytid, why in result.skipped.items():
        log.warning("skipped %s: %s", ytid, why)
    return result


def _expand_file(
    audio_dir: Path | None,  # None: record the clips, write no audio
    store: Store,
    source: str,
    layout: str,
    path: Path,
    segments: dict[str, tuple[str, ...]],
    overwrite: bool,
    result: ExpandResult,
) -> None:
    index = audioset_classes()
    pending = _PendingRows(store, source, path.name)
    rows, sources = store.row_of, store.sources()
    added: set[str] = set()
    try:
        for clip in iter_clips(path, source, layout, segments):
            if clip.problem:
                result.skipped[clip.ytid] = clip.problem
                continue
            row = rows.get(clip.ytid)
            if row is not None and SOURCES[sources[row]] != source:
                result.skipped[clip.ytid] = (
                    f"also in {SOURCES[sources[row]]}, whose copy is kept: {path.name} would add it twice"
                )
                continue
            if audio_dir is not None:
                target = audio_path(audio_dir, source, clip.ytid)
                if overwrite or not target.exists():
                    write_atomic(target, clip.flac)
            if row is not None or clip.ytid in added:
                result.clips_skipped += 1
                continue
            labels, unknown = index.multi_hot(list(clip.mids))
            result.unknown_mids.update(unknown)
            result.unlabeled += not labels.any()
            pending.add(clip.ytid, labels)
            added.add(clip.ytid)
            result.clips_added += 1
    finally:
        pending.commit()


def _repair_source(paths: Paths, source: str, layout: str, failed: set[str]) -> ExpandResult:
    """Write again the audio of the `failed` clips of `source`, reading only mirror files holding them."""
    result = ExpandResult(source, layout)
    segments = read_segments(paths.mirror_dir, source) if layout == "tar" else {}
    files = _source_files(paths, source, layout)
    with progress(f"repair {source}", len(files)) as advance:
        for path in files:
            try:
                if failed.intersection(clip_ids(path, layout)):
                    for clip in iter_clips(path, source, layout, segments):
                        if clip.ytid in failed and clip.flac:
                            write_atomic(audio_path(paths.audio_dir, source, clip.ytid), clip.flac)
                            result.repaired += 1
            except DataError as exc:
                result.bad_files[str(path)] = str(exc)
            advance(1)
    return result
