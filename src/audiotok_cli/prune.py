"""`prune`: delete mirror files whose clips are all featurized, to process AudioSet piecewise on a
small disk (fetch some shards -> expand -> featurize -> prune -> fetch the next shards)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiotok_cli.audio import audio_path
from audiotok_cli.featurize import open_features
from audiotok_cli.fetch import forget, parse_shards, shard_paths
from audiotok_cli.mirror import clip_ids, detect_layout
from audiotok_cli.settings import Settings
from audiotok_cli.store import Store, checked_sources


@dataclass
class PruneResult:
    deleted: list[Path] = field(default_factory=list)
    kept: dict[Path, int] = field(default_factory=dict)  # file -> clips not yet featurized
    bytes_freed: int = 0
    audio_deleted: int = 0


def prune(
    settings: Settings, sources: list[str], shards: str | None = None, with_audio: bool = False
) -> PruneResult:
    checked_sources(sources)
    mirror = settings.mirror_dir
    layout = detect_layout(mirror)
    store = Store.open(settings.store_path)
    lengths = open_features(store, settings.audio).all_lengths()
    row_of = store.row_of
    result = PruneResult()
    for source in sources:
        for path in shard_paths(mirror, source, layout, parse_shards(shards)):
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
                    audio_path(settings.audio_dir, source, ytid).unlink(missing_ok=True)
                result.audio_deleted += len(ytids)
    forget(mirror, [p.relative_to(mirror).as_posix() for p in result.deleted])
    return result
