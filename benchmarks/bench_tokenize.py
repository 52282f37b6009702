"""Tokenize throughput: `audiotok tokenize` end to end (read shards, search, write tokens) against
raw `faiss.IndexFlatL2.search` on the same frames already in memory, in the same run.

Builds a demo store of `--clips` ten-second clips (featurize, vocab of k centroids) unless given
one, then prints frames/s of both and their ratio (target: >= 0.85x): tokenize with a shard per core
at a time (its default) and one shard at a time, each search on one thread (tokenize's searches
always are: the tokens are then the same whatever the core count); raw search on faiss's own threads.
Usage: python benchmarks/bench_tokenize.py [--store PATH] [--clips 512] [--k 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from audiotok_cli.parallel import available_cores
from audiotok_cli.settings import VocabSettings
from audiotok_cli.stages.tokenize import tokenize
from audiotok_cli.stages.vocab import build_vocab
from audiotok_cli.store import Pick, Store


def raw_search(store_path: Path, vocab: str) -> float:
    """Frames/s of IndexFlatL2.search over every valid frame, loaded beforehand."""
    store = Store.open(store_path)
    centroids = store.vocab(Pick(vocab)).centroids
    features = store.features(store.vocab(Pick(vocab)).record.features)
    block, lengths = features.data[:], features.all_lengths()
    frames = np.ascontiguousarray(block[np.arange(block.shape[1]) < lengths[:, None]], dtype=np.float32)
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    started = time.perf_counter()
    index.search(frames, 1)
    return len(frames) / (time.perf_counter() - started)


def end_to_end(store_path: Path, vocab: str, workers: int) -> float:
    """Frames/s of `tokenize --overwrite --workers N`, store to store."""
    store = Store.open(store_path)
    n_frames = int(store.features(store.vocab(Pick(vocab)).record.features).all_lengths().clip(0).sum())
    started = time.perf_counter()
    tokenize(store_path, Pick(vocab), overwrite=True, workers=workers)
    return n_frames / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, help="A featurized store (default: build a demo one).")
    parser.add_argument("--clips", type=int, default=512)
    parser.add_argument("--k", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="Interleaved runs; medians are printed.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.store is None:
            from bench_train import build_demo_store

            args.store = build_demo_store(Path(scratch), args.clips)
        vocab = build_vocab(args.store, VocabSettings(n_clusters=args.k), seed=0, overwrite=True).name
        cores = available_cores()
        runs = [
            (
                raw_search(args.store, vocab),
                end_to_end(args.store, vocab, cores),
                end_to_end(args.store, vocab, 1),
            )
            for _ in range(args.repeat)
        ]
        raw, ours, one = (float(np.median(column)) for column in zip(*runs, strict=True))
        threads = faiss.omp_get_max_threads()
        print(f"k={args.k}, {cores} cores, faiss threads {threads}, median of {args.repeat} interleaved runs")
        print(f"raw IndexFlatL2.search:        {raw:12,.0f} frames/s")
        print(f"tokenize, {cores} shards at a time:  {ours:12,.0f} frames/s  ({ours / raw:.2f}x raw search)")
        print(f"tokenize, 1 shard at a time:   {one:12,.0f} frames/s  ({one / raw:.2f}x raw search)")


if __name__ == "__main__":
    main()
