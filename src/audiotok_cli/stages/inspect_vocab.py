"""`inspect`: what a vocabulary's tokens hold, read from the store (nothing is written but an
optional PNG). Usage of every centroid on the train split (dead and tiny clusters), perplexity and
entropy of token use on train and val, held-out inertia, tokens per clip, and how much a token says
about the classes: the mutual information between a token and its clip's labels (in bits, and as a
share of the classes' entropy). A vocabulary whose tokens say little about the labels cannot feed a
classifier well, whatever the model. Tokens of several ids a step (pq:M, rvq:R) are reported per
codebook and as their joint code (the step's tuple of ids, what a model sees at once).

The information figure is a plug-in estimate: on a split with few tokens for its codes and classes
it is biased upward, so such a split is named with a warning beside its figure.
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
SAMPLES_PER_CELL = 10  # fewer clips a class, or tokens a (code, class) cell: the information reads high


@dataclass
class SplitUse:
    tokens: int
    clips: int
    entropy_bits: float
    perplexity: float
    tokens_per_clip: float
    label_information_bits: float  # I(token; class), token occurrences paired with their clip's labels
    label_information_share: float  # that over H(class): 0 = tokens say nothing, 1 = everything
    thin: bool = False  # too few tokens for its (code, class) cells: the figures above read high

    def information_share(self) -> str:
        """I/H(class) as tables show it: "n/a (too few clips)" where the cells are too thin."""
        return "n/a (too few clips)" if self.thin else f"{self.label_information_share:.1%}"


@dataclass
class VocabReport:
    name: str
    n_clusters: int
    transforms: list[str]
    heldout_inertia: float | None
    dead: int  # clusters no train token uses
    tiny: int  # clusters used, but less than TINY_SHARE of a uniform share
    splits: dict[str, SplitUse] = field(default_factory=dict)  # the codebook asked for (the first)
    usage: list[int] = field(default_factory=list)  # train tokens per centroid
    plot: str | None = None
    codes: dict[str, dict[str, SplitUse]] = field(default_factory=dict)  # pq/rvq: per codebook, and joint
    small: dict[str, str] = field(default_factory=dict)  # split -> why its information figure is inflated


def inspect_vocab(
    store_path: Path, pick: Pick | None = None, plot: Path | None = None, codebook: int | None = None
) -> VocabReport:
    """The report of `pick`'s tokens; of one `codebook` (default the first) where a step has several."""
    store = Store.open(store_path, mode="r")
    tokens = store.tokens(pick)
    books = tokens.record.codebooks
    if codebook is not None and not 0 <= codebook < books:
        raise SettingsError(f"--codebook {codebook}: {tokens.name!r} has codebooks 0 to {books - 1}")
    chosen, codebook = codebook, codebook or 0
    if tokens.record.merges and plot is not None:  # merged ids stand for runs of centroids, not one
        raise SettingsError(
            f"--plot draws a vocabulary's centroids; {tokens.name!r} are merged: draw "
            f"{tokens.record.vocab!r} (the numbers of merged tokens need no --plot)"
        )
    vocab = store.vocab(Pick(tokens.record.vocab))
    k = tokens.record.n_clusters
    lengths = tokens.all_lengths()
    labels = store.sparse_labels()
    name = tokens.name if chosen is None else f"{tokens.name} codebook {codebook}"
    report = VocabReport(name, k, vocab.record.transforms, vocab.record.heldout_inertia, dead=0, tiny=0)
    for split in ("train", "val"):
        rows = store.split_rows(lengths, split)
        if not rows.any():
            continue
        per_book, joint = _counts(tokens, rows, labels, k)  # every code of a step, in one pass
        clips = int(rows.sum())
        report.splits[split] = _use(*per_book[codebook], clips)
        if split == "train":
            report.usage = per_book[codebook][0].tolist()
        if books > 1:
            for book, counted in enumerate(per_book):
                report.codes.setdefault(f"codebook {book}", {})[split] = _use(*counted, clips)
            report.codes.setdefault("joint", {})[split] = _use(*joint, clips)
        classes = int((np.asarray(labels[rows].sum(axis=0)) > 0).sum())
        for use in [report.splits[split]] + [by_split[split] for by_split in report.codes.values()]:
            use.thin = _thin(use, classes)
        _warn_if_small(report, split, classes)
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


def _thin(use: SplitUse, classes: int) -> bool:
    """Fewer than 10 clips a class present, or fewer than 10 tokens a (code, class) cell (its codes in
    use, by perplexity, times the classes): a plug-in I(token; class) there reads high (a joint pq
    code of thousands of values reached 100% on a few hundred clips)."""
    classes = max(classes, 1)
    return use.clips < SAMPLES_PER_CELL * classes or use.tokens < SAMPLES_PER_CELL * use.perplexity * classes


def _warn_if_small(report: VocabReport, split: str, classes: int) -> None:
    """Say when a split is too small for its information figure: the plug-in estimate of
    I(token; class) grows as samples thin out, so a small val split can look more informative than
    train. Too small: fewer than 10 clips a class present, or fewer than 10 tokens a (code, class)
    cell (the widest code's perplexity, its codes in use, times the classes)."""
    uses = [by_split[split] for by_split in report.codes.values()] or [report.splits[split]]
    classes = max(classes, 1)
    cells = max(use.perplexity for use in uses) * classes
    use = report.splits[split]
    if use.clips < SAMPLES_PER_CELL * classes or use.tokens < SAMPLES_PER_CELL * cells:
        report.small[split] = (
            f"{split} holds {use.clips} clips of {classes} classes ({use.tokens} tokens for about "
            f"{cells:.0f} (code, class) cells): too few for its I(token; class) to mean much, and it "
            "reads high on a small split"
        )


def _counts(
    tokens: TokenSet, rows: np.ndarray, labels: sparse.csr_matrix, k: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, sparse.csr_matrix]]:
    """Over the selected clips, in one pass over their shards: for each codebook, tokens per id and
    per (class, id), each token counted once for every label of its clip; and the same for the
    joint code (a step's tuple of ids as one code, numbered as first met: as many as the distinct
    steps, never k^M, its (class, code) counts kept sparse). Memory: a shard and the tables."""
    books = tokens.record.codebooks
    usage = np.zeros((books, k), dtype=np.int64)
    pairs = np.zeros((books, labels.shape[1], k), dtype=np.float64)
    known: dict[bytes, int] = {}
    joint_usage, cells = np.zeros(0, dtype=np.int64), []
    shards = tokens.shards_with(rows)
    with progress(f"inspect {tokens.name}", len(shards)) as advance:
        for shard in shards:
            span = tokens.shard_rows(shard)
            ids, shard_lengths = tokens.read_shard(shard)
            keep = np.flatnonzero(rows[span])
            valid = np.arange(ids.shape[1]) < shard_lengths[keep, None]
            clip, position = np.nonzero(valid)
            steps = np.ascontiguousarray(ids[keep][clip, position].reshape(len(clip), books), dtype=np.int64)
            of_clips = labels[keep + span.start].T.astype(np.float64)
            for book in range(books):
                counted = _per_clip(clip, steps[:, book], len(keep), k)
                usage[book] += np.asarray(counted.sum(axis=0), dtype=np.int64).ravel()
                pairs[book] += np.asarray((of_clips @ counted).todense())
            tuples = steps.view(np.dtype((np.void, steps.itemsize * books))).ravel()
            distinct, inverse = np.unique(tuples, return_inverse=True)
            numbered = np.array([known.setdefault(bytes(t), len(known)) for t in distinct], dtype=np.int64)
            codes = numbered[inverse.ravel()]
            joint_usage = np.pad(joint_usage, (0, len(known) - len(joint_usage)))
            joint_usage += np.bincount(codes, minlength=len(known))
            cells.append((of_clips @ _per_clip(clip, codes, len(keep), len(known))).tocoo())
            advance(1)
    joint = sparse.coo_matrix(
        (
            np.concatenate([c.data for c in cells] or [np.zeros(0)]),
            (np.concatenate([c.row for c in cells] or [np.zeros(0, int)]),
             np.concatenate([c.col for c in cells] or [np.zeros(0, int)])),
        ),
        shape=(labels.shape[1], len(known)),
    )  # fmt: skip
    return [(usage[book], pairs[book]) for book in range(books)], (joint_usage, joint.tocsr())


def _per_clip(clip: np.ndarray, codes: np.ndarray, n_clips: int, width: int) -> sparse.csr_matrix:
    """Tokens of each clip per code: step `i` of clip `clip[i]` has code `codes[i]`."""
    return sparse.csr_matrix((np.ones(len(clip)), (clip, codes)), shape=(n_clips, width))


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


def _use(usage: np.ndarray, joint: np.ndarray | sparse.spmatrix, clips: int) -> SplitUse:
    """Use and information from token counts and (class, code) counts (dense, or sparse: joint codes)."""
    entropy = _entropy(usage)
    cells = joint.data if sparse.issparse(joint) else joint.ravel()
    class_entropy = _entropy(np.asarray(joint.sum(axis=1)).ravel())
    information = class_entropy + _entropy(np.asarray(joint.sum(axis=0)).ravel()) - _entropy(cells)
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
