"""`tokenize`: every featurized clip -> the sequence of its frames' nearest centroid ids (FAISS).

Tokens live in `tokens/{vocab name}`, padded with -1 beside true lengths, and record the vocabulary's
fingerprint: tokens from a rebuilt vocabulary are refused rather than silently mixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from audiotok_cli.featurize import open_features
from audiotok_cli.progress import progress
from audiotok_cli.settings import Settings
from audiotok_cli.store import PENDING, PaddedSet, Store, require_same

PAD_TOKEN = -1


@dataclass
class TokenizeResult:
    name: str
    clips_done: int
    clips_already_done: int


def token_dtype(n_clusters: int) -> str:
    return "int16" if n_clusters < 2**15 else "int32"


def open_tokens(store: Store, settings: Settings) -> PaddedSet:
    """The token set of the configured vocabulary, checked against that vocabulary and the split
    it was clustered on (a vocabulary built before a re-split has seen today's val frames)."""
    name = settings.vocab.name
    tokens = store.padded(
        "tokens",
        name,
        fix=f"run `audiotok vocab --k {settings.vocab.n_clusters}` and `audiotok tokenize`",
    )
    _, vocab_attrs = store.read_vocab(name)
    require_same(
        f"tokens {name!r}",
        tokens.attrs,
        {"vocab_fingerprint": vocab_attrs["fingerprint"]},
        fix="the vocabulary was rebuilt since; run `audiotok tokenize --overwrite`",
    )
    require_same(
        f"vocab {name!r}",
        {"split": vocab_attrs["split_settings"]},
        {"split": store.split_settings},
        fix="the clips were split again since; run `audiotok vocab --overwrite`, then `tokenize --overwrite`",
    )
    return tokens


def tokenize(settings: Settings, overwrite: bool = False) -> TokenizeResult:
    store = Store.open(settings.store_path)
    features = open_features(store, settings.audio)
    name = settings.vocab.name
    centroids, vocab_attrs = store.read_vocab(name)
    require_same(
        f"vocab {name!r}",
        {"features": vocab_attrs["features_settings"]},
        {"features": features.attrs["settings"]},
        fix="it was built from other features; run `audiotok vocab --overwrite`",
    )
    if overwrite or not store.has("tokens", name):
        tokens = store.create_padded(
            "tokens",
            name,
            n_rows=features.n_rows,
            frame_shape=(features.data.shape[1],),
            dtype=token_dtype(len(centroids)),
            fill_value=PAD_TOKEN,
            rows_per_shard=features.rows_per_shard,
            rows_per_chunk=features.data.chunks[0],
            attrs={
                "vocab": name,
                "vocab_fingerprint": vocab_attrs["fingerprint"],
                "n_clusters": len(centroids),
                "features": features.name,
            },
            overwrite=overwrite,
        )
    else:
        tokens = open_tokens(store, settings)
        tokens.grow(features.n_rows)
    feature_lengths = features.all_lengths()
    token_lengths = tokens.all_lengths()
    todo = (feature_lengths >= 0) & (token_lengths == PENDING)
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    shards = tokens.shards_with(todo)
    with progress(f"tokenize {name}", int(todo.sum())) as advance:
        for shard in shards:
            advance(tokenize_shard(index, features, tokens, shard))
    return TokenizeResult(name, int(todo.sum()), int((token_lengths >= 0).sum()))


def tokenize_shard(index: faiss.Index, features: PaddedSet, tokens: PaddedSet, shard: int) -> int:
    """Assign every valid frame of one shard its nearest centroid; write the whole token shard."""
    frames, lengths = features.read_shard(shard)
    valid = np.arange(frames.shape[1]) < lengths[:, None]
    ids = np.full(valid.shape, PAD_TOKEN, dtype=tokens.data.dtype)
    if valid.any():
        _, nearest = index.search(np.ascontiguousarray(frames[valid], dtype=np.float32), 1)
        ids[valid] = nearest[:, 0]
    tokens.write_shard(shard, ids, lengths)
    return int((lengths >= 0).sum())
