"""`tokenize`: every featurized clip -> the sequence of its frames' nearest centroid ids (FAISS).

Tokens live in `tokens/{vocab name}`, padded with -1 beside true lengths, and record the vocabulary's
fingerprint: tokens from a rebuilt vocabulary are refused rather than silently mixed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import faiss
import numpy as np

from audiotok_cli.audio.transforms import FrameTransforms
from audiotok_cli.errors import SettingsError
from audiotok_cli.parallel import check_dask, run_shards
from audiotok_cli.progress import progress
from audiotok_cli.store import PENDING, FeatureSet, Pick, Store, TokenSet, TokensRecord, require_same
from audiotok_cli.tokenizer.merges import Merges, train_merges
from audiotok_cli.tokenizer.quantizers import parse_quantizer
from audiotok_cli.tokenizer.tokenizer import PAD_TOKEN, Tokenizer


@dataclass
class MergeResult:
    name: str  # tokens/{vocab}-bpe{N}
    n_tokens: int  # the vocabulary's k plus the merges learned
    clips_done: int
    mean_length: float  # train clips' ids before merging
    mean_merged_length: float  # and after


@dataclass
class TokenizeResult:
    name: str
    clips_done: int
    clips_already_done: int
    merged: MergeResult | None = None


def tokenize(
    store_path: Path,
    pick: Pick | None = None,
    overwrite: bool = False,
    workers: int = 1,
    dask: str | None = None,
    merges: int = 0,
) -> TokenizeResult:
    """Tokenize every featurized clip with the vocabulary `pick` chooses (default: the only one)
    into `tokens/{vocab}`, a shard per task on `workers` threads or a Dask cluster (`dask`); a
    rerun does only clips featurized since. With `merges`, those tokens are merged into
    `tokens/{vocab}-bpe{merges}` too (token_merges.py).

    Every search runs on one thread: on several, how faiss splits the work changes the last bit of
    some distances, and so a few near-tie tokens (2 of 107,569 frames of a demo shard), with the
    core count. The cores search shards side by side instead, which beats one shard at a time on
    faiss's threads (they scale ~1.5x on 2 cores) and hides the reads and writes behind the search;
    on threads, because faiss and zarr's codecs release the GIL: no process start-up, one index."""
    check_dask(dask)
    with Store.writing(store_path, "tokenize") as store:
        vocab = store.vocab(pick)
        features = store.features(vocab.record.features)
        require_same(
            f"vocab {vocab.name!r}",
            {"features": vocab.record.audio, "encoder": vocab.record.encoder},
            {"features": features.record.audio, "encoder": features.record.encoder},
            fix=f"features {features.name!r} were made again since; run `audiotok vocab --overwrite`",
        )
        store.require_split(f"vocab {vocab.name!r}", vocab.record.split, "audiotok vocab --overwrite")
        if overwrite or vocab.name not in store.names("tokens"):
            record = TokensRecord(
                vocab=vocab.name,
                vocab_fingerprint=vocab.record.fingerprint,
                n_clusters=vocab.record.n_clusters,
                codebooks=parse_quantizer(vocab.record.quantizer)[1],
                features=features.name,
                rows_per_shard=features.rows_per_shard,
            )
            tokens = store.create_tokens(vocab.name, record, features, overwrite)
        else:
            tokens = store.tokens(Pick(vocab.name))
            tokens.grow(features.n_rows)
        feature_lengths = features.all_lengths()
        token_lengths = tokens.all_lengths()
        todo = (feature_lengths >= 0) & (token_lengths == PENDING)
        transforms = FrameTransforms(tuple(vocab.record.transforms))
        arrays = {"centroids": vocab.centroids, **vocab.fitted}
        tokenizer = Tokenizer.from_arrays(vocab.record.quantizer, transforms, arrays)
        task = partial(_tokenize_task, store_path, features.name, tokens.name, tokenizer)
        with progress(f"tokenize {vocab.name}", int(todo.sum())) as advance:
            for _, clips in run_shards(task, tokens.shards_with(todo), workers, dask, threads=True):
                advance(clips)
        result = TokenizeResult(vocab.name, int(todo.sum()), int((token_lengths >= 0).sum()))
        if merges:
            result.merged = _merge(store, store.padded("tokens", tokens.name), merges, overwrite)
    return result


def _merge(store: Store, base: TokenSet, merges: int, overwrite: bool) -> MergeResult:
    """`base` tokens merged into `tokens/{base}-bpe{merges}`: the merges learned from the train
    split's sequences (once: a rerun goes on with the same tokenizer), then every clip merged, a
    shard at a time; clips tokenized since a run are merged by the next."""
    if base.record.codebooks > 1:
        raise SettingsError(
            f"--merges merges one id a step; {base.name!r} has {base.record.codebooks} ids a step"
        )
    name = f"{base.name}-bpe{merges}"
    store.check_free("tokens", name, overwrite=True)  # refuses while a run reads it
    base_lengths = base.all_lengths()
    train = store.split_rows(base_lengths, "train")
    if overwrite or name not in store.names("tokens"):
        learned = train_merges(_sequences(base, train), base.record.n_clusters, merges)
        merger = Merges(learned)
        record = base.record.model_copy(
            update={"n_clusters": merger.size, "merges": merges, "merges_json": learned}
        )
        merged = store.create_tokens(name, record, base, overwrite=True)
    else:
        merged = store.padded("tokens", name)
        merged.grow(base.n_rows)
        merger = Merges(merged.record.merges_json)  # a rerun goes on with the tokenizer it learned
    todo = (base_lengths >= 0) & (merged.all_lengths() == PENDING)
    with progress(f"merge {name}", int(todo.sum())) as advance:
        for shard in merged.shards_with(todo):
            ids, lengths = base.read_shard(shard)
            block = np.full(ids.shape, PAD_TOKEN, dtype=merged.data.dtype)
            done = np.flatnonzero(lengths >= 0)
            merged_lengths = np.full(len(lengths), PENDING, dtype=np.int32)
            for row, sequence in zip(done, merger([ids[row, : lengths[row]] for row in done]), strict=True):
                block[row, : len(sequence)] = sequence
                merged_lengths[row] = len(sequence)
            merged.write_shard(shard, block, merged_lengths)
            advance(len(done))
    now = merged.all_lengths()
    kept = train & (now >= 0)
    return MergeResult(
        name,
        merger.size,
        int(todo.sum()),
        float(base_lengths[kept].mean()) if kept.any() else 0.0,
        float(now[kept].mean()) if kept.any() else 0.0,
    )


def _sequences(tokens: TokenSet, rows: np.ndarray) -> Iterator[np.ndarray]:
    """The id sequences of the selected rows, a shard read at a time."""
    for shard in tokens.shards_with(rows):
        ids, lengths = tokens.read_shard(shard)
        chosen = rows[tokens.shard_rows(shard)] & (lengths > 0)
        for row in np.flatnonzero(chosen):
            yield ids[row, : lengths[row]]


def _tokenize_task(store_path: Path, features: str, tokens: str, tokenizer: Tokenizer, shard: int) -> int:
    """One shard's work, in whichever thread or process runs it; only the shard's own tokens are
    written. faiss's thread count is the calling thread's OpenMP setting: one here, restored after."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        store = Store.open(store_path)
        return tokenize_shard(tokenizer, store.features(features), store.padded("tokens", tokens), shard)
    finally:
        faiss.omp_set_num_threads(threads)


def tokenize_shard(tokenizer: Tokenizer, features: FeatureSet, tokens: TokenSet, shard: int) -> int:
    """Give every valid frame of one shard its ids (each clip's frames transformed first, and
    mapped, as its vocabulary's were); write the whole token shard. A non-finite frame is refused
    naming its clip: it would become a token without a word."""
    frames, lengths = features.read_shard(shard)
    if not np.isfinite(frames).all():  # padding is zeros: only a clip's own frames can be at fault
        features.require_finite(shard, frames, lengths)
    ids, steps = tokenizer.encode_block(frames, lengths, tokens.data.dtype)
    tokens.write_shard(shard, ids, steps)
    return int((lengths >= 0).sum())
