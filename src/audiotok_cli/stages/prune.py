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
from audiotok_cli.errors import DataError
from audiotok_cli.settings import Paths
from audiotok_cli.store import FeatureSet, Store, WriterLock


@dataclass
class PruneResult:
    deleted: list[Path] = field(default_factory=list)
    kept: dict[Path, int] = field(default_factory=dict)  # file -> clips not yet featurized
    damaged: dict[Path, str] = field(default_factory=dict)  # file -> why its clips' frames do not read

    def problem(self) -> DataError | None:
        if not self.damaged:
            return None
        return DataError(
            f"kept {len(self.damaged)} mirror file(s) whose clips' features do not read back; "
            "`audiotok verify --repair`, then `audiotok featurize`, then prune again"
        )

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
        feature_set = store.features(features)
        lengths = feature_set.all_lengths()
        readable = _ShardCheck(feature_set)
        return _prune(
            paths, store.row_of, lengths, readable, sources, layout, parse_shards(shards), with_audio
        )


class _ShardCheck:
    """Whether the features of some rows read back whole (each shard read once): a mirror file is the
    only source of its clips' frames, so it goes only once they are checked."""

    def __init__(self, features: FeatureSet) -> None:
        self.features, self.found = features, {}

    def problem(self, rows: np.ndarray) -> str | None:
        for shard in np.unique(rows // self.features.rows_per_shard).tolist():
            if shard not in self.found:
                try:
                    self.features.read_shard(shard)
                    self.found[shard] = None
                except DataError as damage:
                    self.found[shard] = str(damage)
            if self.found[shard]:
                return self.found[shard]
        return None


def _prune(
    paths: Paths,
    row_of: dict[str, int],
    lengths: np.ndarray,
    readable: _ShardCheck,
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
            problem = readable.problem(rows)
            if problem:  # its frames do not read back: the file may be needed to make them again
                result.damaged[path] = problem
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
