"""`vocab`: FAISS k-means over log-mel frames of the train split -> the token vocabulary.

Frames are sampled shard by shard in one pass (memory bounded by the sample, not the dataset), and
k-means starts from k-means++ seeds: faiss's default random start ends with ~17% higher inertia at
k=1024. The same pass sets aside a held-out sample of train frames, drawn with a fixed seed whatever
k, seed or sample size, so the held-out inertia compares vocabularies of the same features; faiss's
own inertia is its objective on its training sample and does not. faiss runs on the GPUs when a
GPU build of faiss sees any.

On a CPU, k-means runs on one thread: on several, how BLAS splits the work changes the last bits of
some distances, and k-means drifts from there (centroids differed by up to 0.22 between 1 and 2
threads on 262k demo frames, k=1024). So the same store and seed make the same vocabulary whatever
the core count, for 1.4x the time on 2 cores (16.0 s against 11.6 s).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
from sklearn.cluster import kmeans_plusplus
from threadpoolctl import threadpool_limits

from audiotok_cli.audio.transforms import FrameTransforms
from audiotok_cli.errors import MismatchError, MissingInputError, SettingsError
from audiotok_cli.parallel import read_ahead
from audiotok_cli.progress import progress
from audiotok_cli.settings import VocabSettings
from audiotok_cli.store import FeatureSet, Store, VocabRecord, fingerprint
from audiotok_cli.tokenizer.quantizers import FlatKMeans, parse_quantizer, quantizer_tag
from audiotok_cli.tokenizer.tokenizer import Tokenizer

log = logging.getLogger(__name__)
KMEANS_PP_POINTS_PER_CENTROID = 32  # k-means++ runs on a subsample: its cost grows with n * k
HELDOUT_FRAMES = 65_536  # about; enough for a stable mean distance
HELDOUT_SHARE = 0.1  # at most, on small stores
HELDOUT_SEED = 20_260_101  # fixed: the held-out frames of a features set never change


@dataclass
class VocabResult:
    name: str
    features: str
    n_clusters: int
    n_frames: int
    n_train_clips: int
    inertia: float
    heldout_inertia: float
    quantizer: str = "kmeans"
    transforms: list[str] = field(default_factory=list)


def vocab_name(
    features: str, n_clusters: int, transforms: FrameTransforms | None = None, quantizer: str = "kmeans"
) -> str:
    """Vocabularies are named by what made them: `logmel-k64`, `logmel-clip-mean.deltas-k64`."""
    last = quantizer_tag(quantizer, n_clusters)
    return f"{features}-{transforms.tag()}-{last}" if transforms else f"{features}-{last}"


def _require_current(frames: FeatureSet) -> None:
    """Features of a units run trained again since are refused: they are no longer its states."""
    encoder = frames.record.encoder
    stale = encoder and encoder.changed()
    if stale:
        layers = " ".join(f"--layer {layer}" for layer in encoder.layer)
        raise MismatchError(
            f"features {frames.name!r} are stale: {stale}; make them again: `audiotok featurize "
            f"--encoder {frames.record.audio.encoder} {layers} --name {frames.name} --overwrite`"
        )


def build_vocab(
    store_path: Path,
    settings: VocabSettings,
    seed: int,
    features: str | None = None,
    overwrite: bool = False,
    workers: int = 1,
    name: str | None = None,
) -> VocabResult:
    """Cluster train-split frames of `features` (default: the store's only features) into
    `vocab/{name}` (default `{features}-k{k}`), sampled with `workers` shard reads at a time; an
    existing vocabulary is refused before any clustering."""
    with Store.writing(store_path, "vocab") as store:
        frames = store.features(features)
        _require_current(frames)
        k = settings.n_clusters
        transforms = FrameTransforms(settings.transforms)
        name = name or vocab_name(frames.name, k, transforms, settings.quantizer)
        store.check_free("vocab", name, overwrite)
        if store.split is None:
            raise MissingInputError(f"the clips of {store.path} are not split yet; run `audiotok split`")
        train = store.split_rows(frames.all_lengths(), "train")
        if not train.any():
            raise MissingInputError(
                f"no featurized train-split clips in {store.path}; "
                "run `audiotok split` and `audiotok featurize`"
            )
        rng = np.random.default_rng(seed)
        budget = settings.sample_frames or k * settings.max_points_per_centroid
        sample, heldout = sample_frames(frames, train, budget, rng, workers, transforms)
        if len(sample) < k:
            raise SettingsError(f"only {len(sample)} train frames for k={k} clusters; lower --k")
        inertias: list[float] = []  # faiss's own, for flat k-means

        def cluster(points: np.ndarray) -> np.ndarray:
            centroids, inertia = kmeans(points, settings, seed, rng)
            inertias.append(inertia)
            return centroids

        tokenizer = Tokenizer.fit(sample, transforms, settings.quantizer, cluster)  # cmvn, pca:D: on train
        sample, heldout = tokenizer.mapped(sample), tokenizer.mapped(heldout)
        flat = parse_quantizer(settings.quantizer)[0] == "kmeans"
        inertia = inertias[0] if flat else float(tokenizer.squared_errors(sample).sum())
        arrays = tokenizer.to_arrays()
        centroids, fitted = arrays.pop("centroids"), arrays
        heldout_inertia = reconstruction_error(tokenizer, heldout)
        record = VocabRecord(
            features=frames.name,
            audio=frames.record.audio,
            encoder=frames.record.encoder,
            split=store.split,
            n_clusters=k,
            transforms=list(settings.transforms),
            quantizer=settings.quantizer,
            niter=settings.niter,
            init=settings.init,
            sample_frames=settings.sample_frames,
            seed=seed,
            n_frames=len(sample),
            n_train_clips=int(train.sum()),
            inertia=inertia,
            heldout_inertia=heldout_inertia,
            heldout_frames=len(heldout),
            fingerprint=fingerprint(
                np.concatenate([array.ravel() for array in (centroids, *fitted.values())])
            ),
        )
        store.write_vocab(name, centroids, record, overwrite=overwrite, fitted=fitted)
    return VocabResult(
        name,
        frames.name,
        k,
        len(sample),
        int(train.sum()),
        inertia,
        heldout_inertia,
        settings.quantizer,
        list(settings.transforms),
    )


def sample_frames(
    features: FeatureSet,
    rows: np.ndarray,
    budget: int,
    rng: np.random.Generator,
    workers: int = 1,
    transforms: FrameTransforms | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform samples of about `budget` valid frames of the selected rows (drawn with `rng`) and
    of about HELDOUT_FRAMES others (at most HELDOUT_SHARE of them, drawn with a fixed seed), in one
    pass, shard by shard, `workers` shards read at a time: the draws are the same for any count.
    With `transforms`, each clip's frames are transformed first (totals count frames either way)."""
    lengths = transforms.lengths(features.all_lengths()) if transforms else features.all_lengths()
    total = int(lengths[rows].sum())  # frames after the transforms (pool:M leaves fewer)
    set_aside = min(HELDOUT_SHARE, HELDOUT_FRAMES / max(total, 1))
    keep = min(1.0, budget / max(total * (1 - set_aside), 1))
    fixed = np.random.default_rng(HELDOUT_SEED)
    parts, heldout = [], []
    shards = features.shards_with(rows)
    with progress("sample frames", int(rows.sum())) as advance:
        for shard, (block, block_lengths) in zip(
            shards, read_ahead(features.read_shard, shards, workers), strict=True
        ):
            span = features.shard_rows(shard)
            features.require_finite(shard, block, np.where(rows[span], block_lengths, -1))
            valid = np.arange(block.shape[1]) < block_lengths[:, None]
            valid &= rows[span][:, None]
            if transforms:
                frames = transforms.valid_frames(block, np.where(rows[span], block_lengths, 0))
            else:
                frames = block[valid]
            aside = fixed.random(len(frames)) < set_aside
            heldout.append(frames[aside].astype(np.float32))
            rest = frames[~aside]
            parts.append(rest[rng.random(len(rest)) < keep].astype(np.float32))
            advance(int(rows[span].sum()))
    return np.concatenate(parts), np.concatenate(heldout)


def reconstruction_error(tokenizer: Tokenizer, frames: np.ndarray) -> float:
    """Mean squared distance of (mapped) `frames` to what their ids stand for (nan without frames)."""
    if isinstance(tokenizer.quantizer, FlatKMeans):
        return mean_distance(tokenizer.quantizer.codebooks, frames)
    if not len(frames):
        return float("nan")
    return float(tokenizer.squared_errors(frames).mean())


def mean_distance(centroids: np.ndarray, frames: np.ndarray) -> float:
    """Mean squared distance of `frames` to their nearest centroid (nan without frames)."""
    if not len(frames):
        return float("nan")
    distances, _ = _index(centroids).search(np.ascontiguousarray(frames), 1)
    return float(distances.mean())


def _index(centroids: np.ndarray) -> faiss.Index:
    """An exact L2 index of the centroids, on every GPU faiss sees (none with faiss-cpu)."""
    index = faiss.IndexFlatL2(centroids.shape[1])
    if faiss.get_num_gpus():
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return index


def kmeans(
    sample: np.ndarray, settings: VocabSettings, seed: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """FAISS k-means from a k-means++ (or random) start, on one CPU thread (the module's
    docstring says why); returns centroids and final inertia."""
    k, dim = settings.n_clusters, sample.shape[1]
    init = None
    with threadpool_limits(1):
        if settings.init == "kmeans++":
            subset = sample[rng.permutation(len(sample))[: k * KMEANS_PP_POINTS_PER_CENTROID]]
            init, _ = kmeans_plusplus(subset, k, random_state=int(rng.integers(2**31)))
        model = faiss.Kmeans(
            dim,
            k,
            niter=settings.niter,
            seed=seed,
            max_points_per_centroid=max(settings.max_points_per_centroid, -(-len(sample) // k)),
            verbose=False,
            gpu=bool(faiss.get_num_gpus()),
        )
        inertia = model.train(np.ascontiguousarray(sample), init_centroids=init)
    return model.centroids.copy(), float(inertia)
