"""`prune`: delete mirror files whose clips are all featurized, to process AudioSet piecewise on a
small disk (fetch some shards -> expand -> featurize -> prune -> fetch the next shards)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiotok_cli.audio.logmel import audio_path
from audiotok_cli.audioset.classes import checked_sources
from audiotok_cli.audioset.manifest import forget, parse_shards, shard_paths
from audiotok_cli.audioset.mirror import clip_ids, detect_layout
from audiotok_cli.settings import Paths
from audiotok_cli.store import Store, WriterLock


@dataclass
class PruneResult:
    deleted: list[Path] = field(default_factory=list)
    kept: dict[Path, int] = field(default_factory=dict)  # file -> clips not yet featurized
    bytes_freed: int = 0
    audio_deleted: int = 0


def prune(
    paths: Paths,
    sources: list[str],
    shards: str | None = None,
    with_audio: bool = False,
    features: str | None = None,
) -> PruneResult:
    """Delete the mirror files (and with `with_audio` their clips' audio) of `sources` whose clips
    all have frames in `features` (default: the store's only features), under the store's and the
    mirror's locks."""
    checked_sources(sources)
    mirror = paths.mirror_dir
    layout = detect_layout(mirror)
    with Store.writing(paths.store, "prune") as store, WriterLock(mirror, "prune"):
        lengths = store.features(features).all_lengths()
        return _prune(paths, store.row_of, lengths, sources, layout, parse_shards(shards), with_audio)


def _prune(
    paths: Paths,
    row_of: dict[str, int],
    lengths: np.ndarray,
    sources: list[str],
    layout: str,
    shards: set[int] | None,
    with_audio: bool,
) -> PruneResult:
    mirror = paths.mirror_dir
    result = PruneResult()
    for source in sources:
        for path in shard_paths(mirror, source, layout, shards):
            ytids = clip_ids(path, layout)
            rows = np.array([row_of.get(ytid, -1) for ytid in ytids], dtype=np.int64)
            featurized = (rows >= 0) & (rows < len(lengths))
            featurized[featurized] = lengths[rows[featurized]] >= 0
            if not featurized.all():
                result.kept[path] = int((~featurized).sum())
                continue
            result.bytes_freed += path.stat().st_size
            path.unlink()
            result.deleted.append(path)
            if with_audio:
                for ytid in ytids:
                    audio_path(paths.audio_dir, source, ytid).unlink(missing_ok=True)
                result.audio_deleted += len(ytids)
    forget(mirror, [p.relative_to(mirror).as_posix() for p in result.deleted])
    return result
