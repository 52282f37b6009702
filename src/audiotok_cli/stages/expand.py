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
from audiotok_cli.audioset.classes import checked_sources, class_index
from audiotok_cli.audioset.mirror import (
    LAYOUTS,
    available_sources,
    detect_layout,
    iter_clips,
    read_segments,
    source_files,
)
from audiotok_cli.errors import MissingInputError, SettingsError
from audiotok_cli.progress import progress
from audiotok_cli.settings import Paths
from audiotok_cli.store import Store

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
    unknown_mids: set[str] = field(default_factory=set)


@dataclass
class _PendingRows:
    store: Store
    source: str
    ytids: list[str] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)

    def add(self, ytid: str, labels: np.ndarray) -> None:
        self.ytids.append(ytid)
        self.labels.append(labels)
        if len(self.ytids) >= ROWS_PER_COMMIT:
            self.commit()

    def commit(self) -> None:
        if self.ytids:
            self.store.append_clips(self.ytids, self.source, np.stack(self.labels))
            self.ytids, self.labels = [], []


def expand(
    paths: Paths, sources: list[str] | None = None, layout: str | None = None, overwrite: bool = False
) -> list[ExpandResult]:
    """Expand each source (default: every source the mirror holds) into `paths.audio_dir` and
    record its clips, creating the store if needed; the layout is detected unless given."""
    checked_sources(sources or [])
    if layout not in (None, *LAYOUTS):
        raise SettingsError(f"invalid layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    layout = layout or detect_layout(paths.mirror_dir)
    sources = sources or available_sources(paths.mirror_dir, layout)
    with Store.writing(paths.store, "expand", create=True) as store:
        return [_expand_source(paths, store, source, layout, overwrite) for source in sources]


def _expand_source(paths: Paths, store: Store, source: str, layout: str, overwrite: bool) -> ExpandResult:
    files = source_files(paths.mirror_dir, source, layout)
    if not files:
        raise MissingInputError(
            f"the {layout} mirror at {paths.mirror_dir} has no files for source {source!r}; "
            f"fetch it with `audiotok fetch --source {source}`"
        )
    segments = read_segments(paths.mirror_dir, source) if layout == "tar" else {}
    result = ExpandResult(source, layout)
    done = set() if overwrite else set(store.expanded_files(source))
    todo = [path for path in files if path.name not in done]
    result.files_skipped = len(files) - len(todo)
    with progress(f"expand {source}", len(todo)) as advance:
        for path in todo:
            _expand_file(paths.audio_dir, store, source, layout, path, segments, overwrite, result)
            store.mark_expanded(source, path.name)
            result.files_done += 1
            advance(1)
    if result.unlabeled:
        log.warning("%d %s clips have no labels in the segment CSV", result.unlabeled, source)
    return result


def _expand_file(
    audio_dir: Path,
    store: Store,
    source: str,
    layout: str,
    path: Path,
    segments: dict[str, tuple[str, ...]],
    overwrite: bool,
    result: ExpandResult,
) -> None:
    index = class_index()
    pending = _PendingRows(store, source)
    seen = store.row_of
    added: set[str] = set()
    try:
        for clip in iter_clips(path, source, layout, segments):
            target = audio_path(audio_dir, source, clip.ytid)
            if overwrite or not target.exists():
                write_atomic(target, clip.flac)
            if clip.ytid in seen or clip.ytid in added:
                result.clips_skipped += 1
                continue
            labels, unknown = index.multi_hot(list(clip.mids))
            result.unknown_mids.update(unknown)
            result.unlabeled += not clip.mids
            pending.add(clip.ytid, labels)
            added.add(clip.ytid)
            result.clips_added += 1
    finally:
        pending.commit()
