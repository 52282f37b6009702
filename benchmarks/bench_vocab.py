"""Vocabulary quality against time: `audiotok vocab`'s k-means (on its default sample of k x 256
frames: k-means++ start on a subsample, then faiss) beside faiss's defaults (random start),
sklearn's MiniBatchKMeans and sklearn's KMeans (full Lloyd, k-means++), on the same frames, k
centroids, 20 iterations.

Each method's inertia is computed the same way afterwards: the mean squared distance of every frame
to its nearest centroid (faiss search), reported beside Lloyd's. Target: within 0.5% of Lloyd in no
more than MiniBatchKMeans's wall time. Frames: the train split of a store's features (default: a
demo store of --clips ten-second clips; real AudioSet frames are what the target is about).

With `--quantizer pq:M` or `rvq:R` it compares `vocab`'s codebooks (k-means per part, or per
residual, on its default sample) with faiss's own `ProductQuantizer.train` and
`ResidualQuantizer.train` (beam 1, as audiotok encodes) on the same frames: time and reconstruction
error (mean squared distance of a frame to what its ids stand for), every codebook encoded the same
way (quantizers.py).

Usage: python benchmarks/bench_vocab.py [--store PATH] [--clips 512] [--k 1024] [--frames 1000000]
                                       [--quantizer pq:M|rvq:R]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

from audiotok_cli.settings import VocabSettings
from audiotok_cli.stages.vocab import kmeans, mean_distance, reconstruction_error, sample_frames
from audiotok_cli.store import Store
from audiotok_cli.tokenizer.quantizers import parse_quantizer, quantizer_of, train_quantizer
from audiotok_cli.tokenizer.tokenizer import Tokenizer

NITER = 20


def methods(frames: np.ndarray, k: int) -> dict:
    settings = VocabSettings(n_clusters=k, niter=NITER)

    def audiotok() -> np.ndarray:  # as `vocab` does: a uniform sample of its default budget
        rng = np.random.default_rng(0)
        budget = k * settings.max_points_per_centroid
        sample = frames[np.sort(rng.permutation(len(frames))[:budget])]
        return kmeans(sample, settings, 0, rng)[0]

    def faiss_defaults() -> np.ndarray:
        model = faiss.Kmeans(frames.shape[1], k, niter=NITER, seed=0)
        model.train(frames)
        return model.centroids

    def minibatch() -> np.ndarray:
        return (
            MiniBatchKMeans(k, random_state=0, n_init=1, batch_size=4096, max_iter=NITER)
            .fit(frames)
            .cluster_centers_
        )

    def lloyd() -> np.ndarray:
        return (
            KMeans(k, init="k-means++", n_init=1, max_iter=NITER, random_state=0).fit(frames).cluster_centers_
        )

    return {"audiotok vocab": audiotok, "faiss defaults": faiss_defaults, "MiniBatchKMeans": minibatch,
            "KMeans (Lloyd, k-means++)": lloyd}  # fmt: skip


def codebook_methods(frames: np.ndarray, k: int, quantizer: str) -> dict:
    """`vocab`'s codebooks against faiss's quantizers' own training, as `[codebooks, k, part]`."""
    settings = VocabSettings(n_clusters=k, niter=NITER, quantizer=quantizer)
    kind, count = parse_quantizer(quantizer)
    bits = int(np.log2(k))

    def audiotok() -> np.ndarray:
        rng = np.random.default_rng(0)
        budget = k * settings.max_points_per_centroid
        sample = frames[np.sort(rng.permutation(len(frames))[:budget])]
        return train_quantizer(quantizer, sample, lambda part: kmeans(part, settings, 0, rng)[0]).codebooks

    def faiss_own() -> np.ndarray:
        if kind == "pq":
            pq = faiss.ProductQuantizer(frames.shape[1], count, bits)
            pq.cp.niter = NITER
            pq.train(frames)
            return faiss.vector_to_array(pq.centroids).reshape(count, k, -1)
        rq = faiss.ResidualQuantizer(frames.shape[1], count, bits)
        rq.max_beam_size = 1
        rq.cp.niter = NITER
        rq.train(frames)
        return faiss.vector_to_array(rq.codebooks).reshape(count, k, -1)

    return {"audiotok vocab": audiotok, f"faiss {kind.upper()} train": faiss_own}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path)
    parser.add_argument("--clips", type=int, default=512)
    parser.add_argument("--k", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=1_000_000, help="At most this many train frames.")
    parser.add_argument("--quantizer", default="kmeans", help="kmeans, or pq:M / rvq:R (with --k 256).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.store is None:
            from bench_train import build_demo_store

            args.store = build_demo_store(Path(scratch), args.clips)
        store = Store.open(args.store)
        features = store.features()
        train = store.split_rows(features.all_lengths(), "train")
        frames, _ = sample_frames(features, train, args.frames, np.random.default_rng(0))
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        print(f"{len(frames):,} frames of {frames.shape[1]} mels, k={args.k}, {NITER} iterations")
        if args.quantizer != "kmeans":
            for name, fit in codebook_methods(frames, args.k, args.quantizer).items():
                started = time.perf_counter()
                books = np.asarray(fit(), dtype=np.float32)
                seconds = time.perf_counter() - started
                error = reconstruction_error(Tokenizer(quantizer_of(args.quantizer, books)), frames)
                print(f"{args.quantizer} {name:24} {seconds:8.1f} s   reconstruction error {error:10.3f}")
            return
        results = {}
        for name, fit in methods(frames, args.k).items():
            started = time.perf_counter()
            centroids = np.asarray(fit(), dtype=np.float32)
            results[name] = (time.perf_counter() - started, mean_distance(centroids, frames))
        lloyd = results["KMeans (Lloyd, k-means++)"][1]
        for name, (seconds, inertia) in results.items():
            gap = 100 * (inertia / lloyd - 1)
            print(f"{name:28} {seconds:8.1f} s   inertia {inertia:10.3f}   {gap:+6.2f}% vs Lloyd")


if __name__ == "__main__":
    main()
