"""`split`: a deterministic train/val split from a seeded hash of each YouTube ID.

A clip's split depends only on (seed, ytid, val_ratio), so appending clips never reshuffles old ones.
The official `eval` source is always the test split, so results compare with published AudioSet mAP.
Clips without labels stay unassigned unless `keep_unlabeled`: trained on, they teach "nothing here".
Clips of sources outside `train_sources` stay unassigned too: `split --train-source bal_train` keeps
a classifier on the balanced set while `pretrain` still learns from unbal_train's clips.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiotok_cli.settings import SplitSettings
from audiotok_cli.store import SPLITS, SplitRecord, Store, source_code, split_code


@dataclass
class SplitResult:
    counts: dict[str, int]
    val_ratio: float
    seed: int
    unlabeled_left_out: int
    other_sources_left_out: int


def hash_unit(ytid: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, ytid)."""
    digest = hashlib.blake2b(f"{seed}:{ytid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split(store_path: Path, settings: SplitSettings, seed: int) -> SplitResult:
    with Store.writing(store_path, "split") as store:
        ratio = settings.val_ratio
        draws = np.fromiter(
            (hash_unit(y, seed) for y in store.ytids()), dtype=np.float64, count=store.n_clips
        )
        codes = np.where(draws < ratio, split_code("val"), split_code("train")).astype(np.uint8)
        sources = store.sources()
        codes[sources == source_code("eval")] = split_code("test")
        other = ~np.isin(sources, [source_code(name) for name in (*settings.train_sources, "eval")])
        left_out = np.zeros(len(codes), dtype=bool) if settings.keep_unlabeled else ~store.labeled()
        # no labels: an all-negative example is a wrong one; other sources: kept out of train/val
        codes[left_out | other] = split_code("unassigned")
        record = SplitRecord(
            val_ratio=ratio,
            seed=seed,
            keep_unlabeled=settings.keep_unlabeled,
            train_sources=settings.train_sources,
        )
        store.set_splits(codes, record)
    counts = {name: int((codes == split_code(name)).sum()) for name in SPLITS[1:]}
    return SplitResult(counts, ratio, seed, int((left_out & ~other).sum()), int(other.sum()))
