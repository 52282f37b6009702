"""Tokenize throughput: `audiotok tokenize` end to end (read shards, search, write tokens) against
raw faiss on the same frames already in memory, in the same run: `IndexFlatL2.search` for flat
k-means; for `--quantizer pq:M` faiss's `ProductQuantizer.compute_codes` and for `rvq:R` its
`ResidualQuantizer.compute_codes` (greedy, beam 1), each given the vocabulary's own codebooks (their
codes are checked equal to the store's).

Builds a demo store of `--clips` ten-second clips (featurize, vocab of k centroids) unless given
one, then prints frames/s of both and their ratio (target: >= 0.9x): tokenize with a shard per core
at a time (its default) and one shard at a time, each search on one thread (tokenize's searches
always are: the tokens are then the same whatever the core count); raw search on faiss's own threads.
Usage: python benchmarks/bench_tokenize.py [--store PATH] [--clips 512] [--k 1024] [--repeat 3]
                                          [--quantizer kmeans|pq:M|rvq:R]
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
from audiotok_cli.tokenizer.quantizers import parse_quantizer


def raw_faiss(store_path: Path, vocab: str) -> tuple[str, float, float]:
    """Frames/s of faiss's own encoder for the vocabulary's quantizer over every valid frame, loaded
    beforehand, and the share of its ids that differ from the store's tokens (near ties: faiss's
    quantizers compute distances directly, a flat index through a matrix product)."""
    store = Store.open(store_path)
    record, books = store.vocab(Pick(vocab)).record, store.vocab(Pick(vocab)).centroids
    features = store.features(record.features)
    valid = np.arange(features.data.shape[1]) < features.all_lengths()[:, None]
    frames = np.ascontiguousarray(features.data[:][valid], dtype=np.float32)
    kind, count = parse_quantizer(record.quantizer)
    if kind == "kmeans":
        index = faiss.IndexFlatL2(books.shape[1])
        index.add(np.ascontiguousarray(books, dtype=np.float32))
        name, run = "IndexFlatL2.search", lambda: index.search(frames, 1)[1][:, 0]
    else:
        bits = int(np.log2(books.shape[1]))
        if kind == "pq":
            quantizer = faiss.ProductQuantizer(frames.shape[1], count, bits)
            faiss.copy_array_to_vector(books.ravel(), quantizer.centroids)
        else:
            quantizer = faiss.ResidualQuantizer(frames.shape[1], count, bits)
            faiss.copy_array_to_vector(books.ravel(), quantizer.codebooks)
            quantizer.max_beam_size, quantizer.is_trained = 1, True
        name = f"{type(quantizer).__name__}.compute_codes"
        run = lambda: quantizer.compute_codes(frames)  # noqa: E731
    started = time.perf_counter()
    codes = run()
    seconds = time.perf_counter() - started
    stored = store.tokens(Pick(vocab)).data[:][valid].reshape(codes.shape)
    return name, len(frames) / seconds, float((codes.astype(np.int64) != stored).mean())


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
    parser.add_argument(
        "--quantizer", default="kmeans", help="kmeans, pq:M or rvq:R (use --k 256 with these)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.store is None:
            from bench_train import build_demo_store

            args.store = build_demo_store(Path(scratch), args.clips)
        settings = VocabSettings(n_clusters=args.k, quantizer=args.quantizer)
        vocab = build_vocab(args.store, settings, seed=0, overwrite=True).name
        cores = available_cores()
        runs = []
        for _ in range(args.repeat):
            ours, one = end_to_end(args.store, vocab, cores), end_to_end(args.store, vocab, 1)
            name, raw, differ = raw_faiss(args.store, vocab)
            runs.append((raw, ours, one))
        raw, ours, one = (float(np.median(column)) for column in zip(*runs, strict=True))
        threads = faiss.omp_get_max_threads()
        print(
            f"{args.quantizer}, k={args.k}, {cores} cores, faiss threads {threads}, "
            f"median of {args.repeat} interleaved runs"
        )
        print(f"raw faiss {name}: {raw:12,.0f} frames/s  ({differ:.2e} of its ids differ from the store's)")
        print(f"tokenize, {cores} shards at a time:  {ours:12,.0f} frames/s  ({ours / raw:.2f}x raw faiss)")
        print(f"tokenize, 1 shard at a time:   {one:12,.0f} frames/s  ({one / raw:.2f}x raw faiss)")


if __name__ == "__main__":
    main()
