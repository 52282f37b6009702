"""`featurize`: audio files -> padded log-mel frames in the store, one whole shard at a time.

A shard is the unit of work: its frames are written in one call (partial-shard writes re-read and
rewrite the shard), then its lengths mark the clips done. Clips that fail to decode stay pending, are
reported by file name, and are retried by the next run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from audiotok_cli.audio import LogMel, audio_path, decode
from audiotok_cli.errors import DataError, MissingInputError
from audiotok_cli.progress import progress
from audiotok_cli.settings import AudioSettings, Settings
from audiotok_cli.store import PENDING, SOURCES, PaddedSet, Store, checked_sources, require_same

log = logging.getLogger(__name__)
FEATURE_DTYPE = "float16"


@dataclass
class FeaturizeResult:
    name: str
    clips_done: int = 0
    clips_already_done: int = 0
    shards_written: int = 0
    failures: list[str] = field(default_factory=list)


def feature_record(audio: AudioSettings) -> dict:
    """The settings that determine feature values; a features group refuses any other."""
    return audio.model_dump(
        include={"sample_rate", "n_fft", "hop_length", "n_mels", "normalize", "clip_seconds"}
    )


def open_features(store: Store, audio: AudioSettings) -> PaddedSet:
    """The features group made with exactly these audio settings."""
    features = store.padded("features", audio.features_name, fix="run `audiotok featurize` first")
    require_same(
        f"features {audio.features_name!r}",
        features.attrs["settings"],
        feature_record(audio),
        fix="featurize again with --overwrite or use the settings it was made with",
    )
    return features


def featurize(
    settings: Settings, sources: list[str] | None = None, overwrite: bool = False
) -> FeaturizeResult:
    sources = checked_sources(sources or list(SOURCES))
    store = Store.open(settings.store_path)
    audio = settings.audio
    if store.n_clips == 0:
        raise MissingInputError(f"store {store.path} holds no clips; run `audiotok expand` first")
    if overwrite or not store.has("features", audio.features_name):
        features = store.create_padded(
            "features",
            audio.features_name,
            n_rows=store.n_clips,
            frame_shape=(audio.max_frames, audio.n_mels),
            dtype=FEATURE_DTYPE,
            fill_value=0.0,
            rows_per_shard=audio.clips_per_shard,
            rows_per_chunk=audio.clips_per_chunk,
            attrs={"settings": feature_record(audio), "max_frames": audio.max_frames},
            overwrite=overwrite,
        )
    else:
        features = open_features(store, audio)
        features.grow(store.n_clips)
    wanted = np.isin(store.sources(), [SOURCES.index(s) for s in sources])
    todo = wanted & (features.all_lengths() == PENDING)
    result = FeaturizeResult(audio.features_name, clips_already_done=int((wanted & ~todo).sum()))
    shards = features.shards_with(todo)
    log_mel = LogMel(audio)
    with progress(f"featurize {audio.features_name}", int(todo.sum())) as advance:
        for shard in shards:
            rows = features.shard_rows(shard)
            done, failures = featurize_shard(settings, store, features, shard, todo[rows], log_mel)
            result.clips_done += done
            result.failures += failures
            result.shards_written += 1
            advance(done + len(failures))
    for failure in result.failures:
        log.warning(failure)
    return result


def featurize_shard(
    settings: Settings,
    store: Store,
    features: PaddedSet,
    shard: int,
    todo: np.ndarray,
    log_mel: LogMel,
) -> tuple[int, list[str]]:
    """Compute the `todo` clips of one shard and write the whole shard; returns (done, failures)."""
    rows = features.shard_rows(shard)
    if todo.all():
        block = np.zeros((len(todo), *features.data.shape[1:]), dtype=FEATURE_DTYPE)
        lengths = np.full(len(todo), PENDING, dtype=np.int32)
    else:
        block, lengths = features.read_shard(shard)
    ytids, sources = store.ytids(rows), store.sources(rows)
    failures = []
    for offset in np.flatnonzero(todo):
        path = audio_path(settings.audio_dir, SOURCES[sources[offset]], ytids[offset])
        try:
            if not path.exists():
                raise DataError(f"{path} is missing; run `audiotok expand` to restore it")
            frames = log_mel(decode(path, settings.audio.sample_rate))
        except DataError as exc:
            failures.append(str(exc))
            continue
        block[offset] = 0
        block[offset, : len(frames)] = frames
        lengths[offset] = len(frames)
    features.write_shard(shard, block, lengths)
    return len(np.flatnonzero(todo)) - len(failures), failures
