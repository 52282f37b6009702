"""`featurize`: audio files -> padded log-mel frames in the store, one whole shard at a time.

A shard is the unit of work: its frames are written in one call (partial-shard writes re-read and
rewrite the shard), then its lengths mark the clips done. Clips that fail to decode stay pending, are
reported by file name, and are retried by the next run.

Audio comes from the expanded files, from an imported collection's own files (read in place), or
straight from the fetched mirror files (Parquet row groups,
tar members) for clips whose file is not there (`expand --no-audio`, or deleted) or for every clip
with `from_mirror`: the store records which mirror file each clip came from, and a shard's task
reads each of its mirror files once, a batch at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from audiotok_cli.audio.front_ends import FrameMaker, frames_maker, resolve_encoder
from audiotok_cli.audio.logmel import REPAIR, LogMel, audio_path, decode
from audiotok_cli.audioset.mirror import detect_layout, iter_audio, source_files
from audiotok_cli.errors import DataError, MissingInputError, SettingsError
from audiotok_cli.parallel import check_dask, report, run_shards
from audiotok_cli.progress import progress
from audiotok_cli.settings import AudioSettings, FeaturesSettings
from audiotok_cli.store import PENDING, EncoderRecord, FeatureSet, FeaturesRecord, Store, require_same

log = logging.getLogger(__name__)
IMPORTED = (
    "an imported file: put it back or replace it where it was imported from; until then it stays pending"
)


@dataclass(frozen=True)
class MirrorAudio:
    """Where a clip's audio can come from besides its expanded file."""

    mirror_dir: Path
    layout: str
    always: bool  # read every clip from the mirror, even where an expanded file exists


@dataclass
class FeaturizeResult:
    name: str
    front_end: str  # what made the frames
    clips_done: int = 0
    clips_already_done: int = 0
    shards_written: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # ytid -> reason, this run's
    warned: dict[str, str] = field(default_factory=dict)  # ytid -> what its decoder said; featurized anyway

    def problem(self) -> DataError | None:
        """Clips that failed make the command fail (exit 5) once the rest is written."""
        if not self.failures:
            return None
        first = next(iter(self.failures.values()))
        return DataError(
            f"{len(self.failures)} clips could not be featurized and stay pending (`audiotok info` lists "
            f"them); first: {first}"
        )


def featurize(
    store_path: Path,
    audio_dir: Path,
    audio: AudioSettings,
    layout: FeaturesSettings,
    sources: list[str] | None = None,
    overwrite: bool = False,
    workers: int = 1,
    dask: str | None = None,
    mirror_dir: Path | None = None,
    from_mirror: bool = False,
    runs_dir: Path | None = None,
) -> FeaturizeResult:
    """Featurize the pending clips of `sources` (default: all the store holds) into
    `features/{layout.name}`, a shard per task on `workers` processes or a Dask cluster (`dask`: an
    address, or "local"); the result is the same to the bit for any count. The front end is the one
    `audio.encoder` names (`audio/front_ends.py`; a units run may be named under `runs_dir`)."""
    check_dask(dask)
    audio = audio.model_copy(update={"encoder": resolve_encoder(audio.encoder, runs_dir)})
    mirror = _mirror_audio(mirror_dir, from_mirror)
    with Store.writing(store_path, "featurize") as store:
        if store.n_clips == 0:
            raise MissingInputError(
                f"store {store.path} holds no clips; run `audiotok expand` or `audiotok import` first"
            )
        sources = _known_sources(store, sources)
        frames_of = frames_maker(audio)  # an encoder is loaded here, so a bad name fails before any work
        if frames_of.device != "cpu" and dask is None:
            workers = 1  # one process feeds the GPU its batches; more would only queue on it
        features = _open_or_create(store, frames_of, layout, overwrite)
        audio = features.record.audio  # an encoder's: at its own sample rate
        wanted = np.isin(store.sources(), store.source_codes(sources))
        todo = wanted & (features.all_lengths() == PENDING)
        result = FeaturizeResult(
            features.name, features.record.front_end(), clips_already_done=int((wanted & ~todo).sum())
        )
        task = partial(_featurize_task, store_path, audio_dir, mirror, audio, features.name, todo)
        # a units run's states from the frames the store holds: a batched forward a shard, no decoding,
        # on threads (torch releases the GIL), so no worker process pays torch's import at start-up
        on_threads = _stored_frames(frames_of, store) is not None
        with progress(f"featurize {features.name}", int(todo.sum())) as advance, _one_blas_thread(on_threads):
            per_clip = dask is None  # Dask's bar moves per shard
            shards = features.shards_with(todo)
            report_to = advance if per_clip else None
            for shard, outcome in run_shards(task, shards, workers, dask, report_to, threads=on_threads):
                rows = features.shard_rows(shard)
                _remember(features, store.ytids(rows)[todo[rows]], outcome.failures)
                result.clips_done += len(outcome.done)
                result.failures |= outcome.failures
                result.warned |= outcome.warned
                result.shards_written += 1
                if not per_clip:
                    advance(len(outcome.done) + len(outcome.failures))
    for message in [*result.warned.values(), *result.failures.values()]:
        log.warning(message)
    return result


def _stored_frames(frames_of: FrameMaker, store: Store) -> FeatureSet | None:
    """The features group whose frames the front end reads instead of audio (a units run's: the
    frames it was trained on), where the store holds it; None for front ends that read audio."""
    stored = getattr(frames_of, "stored_frames", None)
    return stored(store) if stored is not None else None


@contextmanager
def _one_blas_thread(on_threads: bool) -> Iterator[None]:
    """Tasks on threads of this process share its BLAS: one thread for all of them, as a worker
    process has (a clip they decode gets the values it gets in any worker)."""
    if not on_threads:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _known_sources(store: Store, sources: list[str] | None) -> list[str]:
    """The sources asked for (default: every one), each refused unless the store holds it."""
    for source in sources or []:
        if source not in store.source_names:
            raise SettingsError(
                f"unknown source {source!r}; {store.path} holds {', '.join(store.source_names)}"
            )
    return sources or store.source_names


def _remember(features: FeatureSet, attempted: np.ndarray, failures: dict[str, str]) -> None:
    """Keep the record's list of failed clips current: this shard's failures in, its successes out."""
    before = dict(features.record.failures)
    for ytid in attempted:
        features.record.failures.pop(ytid, None)
    features.record.failures.update(failures)
    if features.record.failures != before:
        features.save_record()


def _open_or_create(
    store: Store, frames_of: FrameMaker, layout: FeaturesSettings, overwrite: bool
) -> FeatureSet:
    """The features group to fill: new, or an existing one made with exactly these audio settings
    (and, for encoder features, the very same encoder)."""
    audio, encoder = frames_of.settings, _encoder_record(frames_of)
    if overwrite or layout.name not in store.names("features"):
        record = FeaturesRecord(
            audio=audio,
            max_frames=frames_of.max_frames,
            rows_per_shard=layout.clips_per_shard,
            encoder=encoder,
        )
        return store.create_features(layout.name, record, store.n_clips, layout.clips_per_chunk, overwrite)
    features = store.features(layout.name)
    recorded = features.record.encoder
    require_same(
        f"features {layout.name!r}",
        features.record.audio.model_dump() | {"encoder digest": recorded and recorded.digest},
        audio.model_dump() | {"encoder digest": encoder and encoder.digest},
        fix="featurize again with --overwrite, under another --name, or with the settings it was made with",
    )
    features.grow(store.n_clips)
    return features


def _encoder_record(frames_of: FrameMaker) -> EncoderRecord | None:
    """What the features record keeps of an encoder; None for log-mel."""
    if isinstance(frames_of, LogMel):
        return None
    return EncoderRecord(
        model_type=frames_of.model_type,
        layer=frames_of.layers,
        n_layers=frames_of.n_layers,
        hidden_size=frames_of.dim,
        sample_rate=frames_of.sample_rate,
        frames_per_second=frames_of.frames_per_second,
        digest=frames_of.digest,
        weights_file=getattr(frames_of, "weights_file", None),
    )


def _mirror_audio(mirror_dir: Path | None, from_mirror: bool) -> MirrorAudio | None:
    """The mirror to fall back on (or read from, with `from_mirror`), if there is one."""
    try:
        if mirror_dir is None:
            raise MissingInputError("no mirror directory given; pass --mirror-dir")
        return MirrorAudio(mirror_dir, detect_layout(mirror_dir), from_mirror)
    except MissingInputError:
        if from_mirror:
            raise
        return None  # expanded files only


def _featurize_task(
    store_path: Path,
    audio_dir: Path,
    mirror: MirrorAudio | None,
    audio: AudioSettings,
    name: str,
    todo: np.ndarray,
    shard: int,
) -> tuple[list[str], dict[str, str]]:
    """One shard's work, in whichever process runs it; only the shard's own data is written."""
    store = Store.open(store_path)
    features = store.features(name)
    rows = features.shard_rows(shard)
    return featurize_shard(audio_dir, store, features, shard, todo[rows], frames_maker(audio), mirror)


def _clip_audio(
    audio_dir: Path,
    mirror: MirrorAudio | None,
    store: Store,
    rows: slice,
    ytids: np.ndarray,
    offsets: np.ndarray,
) -> Iterator[tuple[int, Path | bytes | DataError]]:
    """`(offset, audio)` for each clip (`ytids`: the shard's): its expanded file, else (or always,
    if asked) its bytes as they are read from the mirror file it came from (each read once, a batch
    at a time); or why there is none."""
    sources, names, collections = store.sources(rows), store.source_names, store.collections
    from_mirror: dict[str, dict[str, int]] = {}  # mirror file -> ytid -> offset
    files = store.mirror_files(rows) if mirror is not None else [None] * len(ytids)
    for offset in offsets:
        imported = store.collection_file(ytids[offset], collections)
        if imported is not None:  # its own file, read in place
            yield offset, imported if imported.exists() else DataError(f"{imported} is missing; {IMPORTED}")
            continue
        path = audio_path(audio_dir, names[sources[offset]], ytids[offset])
        exists = path.exists()
        if files[offset] is not None and (mirror.always or not exists):
            from_mirror.setdefault(files[offset], {})[ytids[offset]] = offset
        else:
            yield offset, path if exists else DataError(f"{path} is missing; {REPAIR}")
    for name, wanted in from_mirror.items():
        source, file_name = name.split("/", 1)
        path = next(
            (p for p in source_files(mirror.mirror_dir, source, mirror.layout) if p.name == file_name), None
        )
        try:
            if path is None:
                raise DataError(f"mirror file {name} is gone (pruned?); fetch it again or expand its audio")
            for ytid, payload in iter_audio(path, mirror.layout, set(wanted)):
                if ytid in wanted:  # a file listing a clip twice: the first copy, as expand keeps
                    yield wanted.pop(ytid), payload
        except DataError as exc:
            yield from ((offset, exc) for offset in wanted.values())
            continue
        yield from (
            (offset, DataError(f"{ytid} has no audio in {path}; {REPAIR}")) for ytid, offset in wanted.items()
        )


def featurize_shard(
    audio_dir: Path,
    store: Store,
    features: FeatureSet,
    shard: int,
    todo: np.ndarray,
    frames_of: FrameMaker,
    mirror: MirrorAudio | None = None,
) -> ShardOutcome:
    """Compute the `todo` clips of one shard and write the whole shard; returns what became of each
    clip. One clip's failure never costs the rest of its shard."""
    rows = features.shard_rows(shard)
    if todo.all():
        block = np.zeros((len(todo), *features.data.shape[1:]), dtype=features.data.dtype)
        lengths = np.full(len(todo), PENDING, dtype=np.int32)
    else:
        block, lengths = features.read_shard(shard)
    out = _ShardBlock(block, lengths, store.ytids(rows))
    stored = _stored_frames(frames_of, store)
    if stored is not None:
        todo = out.put_from_frames(*stored.read_rows(rows), todo, frames_of)
    collections = store.collections
    decoded: list[tuple[int, np.ndarray, str]] = []  # a batch for the front end
    for offset, source in _clip_audio(audio_dir, mirror, store, rows, out.ytids, np.flatnonzero(todo)):
        ytid = out.ytids[offset]
        name = str(source) if isinstance(source, Path) else f"{ytid} (from the mirror)"
        try:
            if isinstance(source, DataError):
                raise source
            fix = REPAIR if store.collection_file(ytid, collections) is None else IMPORTED
            warned: list[str] = []
            decoded.append((offset, decode(source, frames_of.sample_rate, name, fix, warned), name))
            if warned:
                out.warned[ytid] = warned[0]
        except DataError as exc:
            out.failed(offset, exc)
            continue
        if len(decoded) == frames_of.batch:
            out.put(decoded, frames_of)
            decoded = []
    out.put(decoded, frames_of)
    features.write_shard(shard, out.block, out.lengths)
    return ShardOutcome(out.done, out.failures, out.warned)


@dataclass(frozen=True)
class ShardOutcome:
    """What became of a shard's clips (small: it travels back from a worker, the frames do not)."""

    done: list[str]
    failures: dict[str, str]  # ytid -> why it stays pending
    warned: dict[str, str]  # ytid -> what its decoder said while reading it; featurized anyway


@dataclass
class _ShardBlock:
    """A shard's frames as they are computed, and which clips are done or failed."""

    block: np.ndarray
    lengths: np.ndarray
    ytids: np.ndarray
    done: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    warned: dict[str, str] = field(default_factory=dict)

    def put(self, decoded: list[tuple[int, np.ndarray, str]], frames_of: FrameMaker) -> None:
        """The frames of a batch of decoded clips `(offset, samples, name)`, or why not, into the block."""
        frames = frames_of.many([samples for _, samples, _ in decoded], [name for _, _, name in decoded])
        for (offset, _, name), clip in zip(decoded, frames, strict=True):
            self._place(offset, clip, name)

    def put_from_frames(
        self, frames: np.ndarray, lengths: np.ndarray, todo: np.ndarray, frames_of: FrameMaker
    ) -> np.ndarray:
        """The states of the `todo` clips whose frames another group holds (`frames`, `lengths`: its
        rows of this shard); the clips still to decode."""
        stored = np.flatnonzero(todo & (lengths > 0))
        states = frames_of.from_frames([frames[offset, : lengths[offset]] for offset in stored])
        for offset, clip in zip(stored, states, strict=True):
            self._place(offset, clip, f"{self.ytids[offset]} (from its stored frames)")
        return todo & ~(lengths > 0)

    def _place(self, offset: int, clip: np.ndarray | DataError, name: str) -> None:
        """A clip's frames into the block, or why it has none; non-finite frames are never marked done."""
        if not isinstance(clip, DataError) and not np.isfinite(clip).all():
            clip = DataError(f"{name}: its frames are not finite (NaN or inf); check the audio file")
        if isinstance(clip, DataError):
            self.failed(offset, clip)
            return
        self.block[offset] = 0
        self.block[offset, : len(clip)] = clip
        self.lengths[offset] = len(clip)
        self.done.append(self.ytids[offset])
        report()  # one unit of the bar per clip, done or failed

    def failed(self, offset: int, error: DataError) -> None:
        self.failures[self.ytids[offset]] = str(error)
        report()
