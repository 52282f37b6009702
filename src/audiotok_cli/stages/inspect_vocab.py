"""`inspect`: what a vocabulary's tokens hold, read from the store (nothing is written but an
optional PNG). Usage of every centroid on the train split (dead and tiny clusters), perplexity and
entropy of token use on train and val, held-out inertia, tokens per clip, and how much a token says
about the classes: the mutual information between a token and its clip's labels (in bits, and as a
share of the classes' entropy). A vocabulary whose tokens say little about the labels cannot feed a
classifier well, whatever the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from audiotok_cli.audio.transforms import LinearMap
from audiotok_cli.errors import SettingsError
from audiotok_cli.progress import progress
from audiotok_cli.store import Pick, Store, TokenSet

TINY_SHARE = 0.1  # a cluster used less than this share of a uniform centroid's use is tiny


@dataclass
class SplitUse:
    tokens: int
    clips: int
    entropy_bits: float
    perplexity: float
    tokens_per_clip: float
    label_information_bits: float  # I(token; class), token occurrences paired with their clip's labels
    label_information_share: float  # that over H(class): 0 = tokens say nothing, 1 = everything


@dataclass
class VocabReport:
    name: str
    n_clusters: int
    transforms: list[str]
    heldout_inertia: float | None
    dead: int  # clusters no train token uses
    tiny: int  # clusters used, but less than TINY_SHARE of a uniform share
    splits: dict[str, SplitUse] = field(default_factory=dict)
    usage: list[int] = field(default_factory=list)  # train tokens per centroid
    plot: str | None = None


def inspect_vocab(
    store_path: Path, pick: Pick | None = None, plot: Path | None = None, codebook: int | None = None
) -> VocabReport:
    """The report of `pick`'s tokens; of one `codebook` (default the first) where a step has several."""
    store = Store.open(store_path, mode="r")
    tokens = store.tokens(pick)
    books = tokens.record.codebooks
    if codebook is not None and not 0 <= codebook < books:
        raise SettingsError(f"--codebook {codebook}: {tokens.name!r} has codebooks 0 to {books - 1}")
    codebook = codebook or 0
    if tokens.record.merges and plot is not None:  # merged ids stand for runs of centroids, not one
        raise SettingsError(
            f"--plot draws a vocabulary's centroids; {tokens.name!r} are merged: draw "
            f"{tokens.record.vocab!r} (the numbers of merged tokens need no --plot)"
        )
    vocab = store.vocab(Pick(tokens.record.vocab))
    k = tokens.record.n_clusters
    lengths = tokens.all_lengths()
    labels = store.sparse_labels()
    name = tokens.name if books == 1 else f"{tokens.name} codebook {codebook}"
    report = VocabReport(name, k, vocab.record.transforms, vocab.record.heldout_inertia, dead=0, tiny=0)
    for split in ("train", "val"):
        rows = store.split_rows(lengths, split)
        if rows.any():
            usage, joint = _counts(tokens, rows, labels, k, codebook if books > 1 else None)
            report.splits[split] = _use(usage, joint, int(rows.sum()))
            if split == "train":
                report.usage = usage.tolist()
    usage = np.asarray(report.usage)
    if len(usage):
        report.dead = int((usage == 0).sum())
        report.tiny = int(((usage > 0) & (usage < TINY_SHARE * usage.sum() / k)).sum())
    if plot is not None:
        frame_map = LinearMap.from_arrays(vocab.fitted)
        centroids = vocab.centroids if books == 1 else vocab.centroids[codebook]  # pq: its part of a frame
        if frame_map is not None and centroids.shape[1] == frame_map.a.shape[0]:
            centroids = frame_map.back(centroids)  # drawn as frames
        rows = vocab.record.encoder.hidden_size if vocab.record.encoder else vocab.record.audio.n_mels
        report.plot = str(
            _draw(report, centroids, rows, "hidden unit" if vocab.record.encoder else "mel band", plot)
        )
    return report


def _counts(
    tokens: TokenSet, rows: np.ndarray, labels: sparse.csr_matrix, k: int, codebook: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens per centroid over the selected clips, and per (class, centroid): each token counted
    once for every label of its clip. Shard by shard: memory is a shard and a k x classes table."""
    usage = np.zeros(k, dtype=np.int64)
    joint = np.zeros((labels.shape[1], k), dtype=np.float64)
    shards = tokens.shards_with(rows)
    with progress(f"inspect {tokens.name}", len(shards)) as advance:
        for shard in shards:
            span = tokens.shard_rows(shard)
            ids, shard_lengths = tokens.read_shard(shard)
            ids = ids if codebook is None else ids[..., codebook]
            keep = np.flatnonzero(rows[span])
            valid = np.arange(ids.shape[1]) < shard_lengths[keep, None]
            clip, position = np.nonzero(valid)
            per_clip = sparse.csr_matrix(
                (np.ones(len(clip)), (clip, ids[keep][clip, position].astype(np.int64))), shape=(len(keep), k)
            )
            usage += np.asarray(per_clip.sum(axis=0), dtype=np.int64).ravel()
            joint += np.asarray((labels[keep + span.start].T.astype(np.float64) @ per_clip).todense())
            advance(1)
    return usage, joint


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


def _use(usage: np.ndarray, joint: np.ndarray, clips: int) -> SplitUse:
    entropy = _entropy(usage)
    class_entropy = _entropy(joint.sum(axis=1))
    information = class_entropy + _entropy(joint.sum(axis=0)) - _entropy(joint.ravel())
    return SplitUse(
        tokens=int(usage.sum()),
        clips=clips,
        entropy_bits=entropy,
        perplexity=float(2**entropy),
        tokens_per_clip=float(usage.sum() / max(clips, 1)),
        label_information_bits=float(information),
        label_information_share=float(information / class_entropy) if class_entropy > 0 else 0.0,
    )


def _draw(report: VocabReport, centroids: np.ndarray, n_rows: int, row_name: str, path: Path) -> Path:
    """The codebook as an image (its first n_rows values: the log-mel or encoder part, after any
    transform), centroids sorted by train use, beside that use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(report.usage)[::-1] if report.usage else np.arange(len(centroids))
    figure, (image, bars) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    image.imshow(centroids[order, :n_rows].T, aspect="auto", origin="lower", cmap="magma")
    image.set_ylabel(row_name)
    transforms = f" after {', '.join(report.transforms)}" if report.transforms else ""
    image.set_title(f"{report.name}: centroids by train use{transforms}")
    usage = np.asarray(report.usage)[order] if report.usage else np.zeros(len(order))
    bars.bar(np.arange(len(order)), usage, width=1.0, color="tab:blue")
    bars.set_yscale("log")
    bars.set_xlabel(f"centroid (by use; {report.dead} dead, {report.tiny} tiny)")
    bars.set_ylabel("train tokens")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
