"""What a model reads from the store, streamed shard by shard (memory is bounded by a few shards,
not the split): token ids for token models, standardised log-mel frames for frame models. And
scoring.

Shards are read and made model-ready by `torch.utils.data` worker processes (`workers`, with
prefetch), so the model never waits on the store; the epoch's plan (shard order, row order) is drawn
in this process, so the batches are the same whatever the number of workers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse
from torch.utils.data import DataLoader, Dataset

from audiotok_cli.audio.transforms import FrameTransforms
from audiotok_cli.parallel import available_cores
from audiotok_cli.progress import progress
from audiotok_cli.store import PaddedSet, Store
from audiotok_cli.training.models.ids import to_model_ids

PREFETCH_SHARDS = 2  # per worker
MAX_GPU_READERS = 4


@dataclass
class Batch:
    inputs: torch.Tensor  # [batch, longest] model ids, or [batch, longest, n_mels] frames
    lengths: torch.Tensor  # [batch] true lengths
    labels: torch.Tensor  # [batch, classes] multi-hot float
    rows: np.ndarray  # clip rows, for joining predictions back


@dataclass
class ModelInputs:
    """A padded set (tokens or features) and how its blocks become model input. Frames are
    standardised per mel band with the train split's statistics, and padding stays exactly zero."""

    padded: PaddedSet
    kind: str  # "tokens" or "frames"
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    transforms: FrameTransforms = field(default_factory=FrameTransforms)  # frames: per clip, first

    def shard_tensor(self, shard: int, keep: np.ndarray, shard_lengths: np.ndarray) -> torch.Tensor:
        """Rows `keep` of one shard (whose rows have `shard_lengths`), model-ready."""
        return self.tensor(self.padded.read_data(shard, shard_lengths)[keep], shard_lengths[keep])

    def tensor(self, block: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        if self.kind == "tokens":
            return to_model_ids(torch.from_numpy(block), self.padded.record.n_clusters)
        if self.transforms:
            block = self.transforms.padded(block, lengths)
        frames = torch.from_numpy(block).float()
        frames.sub_(torch.from_numpy(self.mean)).div_(torch.from_numpy(self.std))
        valid = torch.arange(block.shape[1])[None, :] < torch.from_numpy(lengths.astype(np.int64))[:, None]
        return frames.mul_(valid[:, :, None])


def frame_statistics(
    features: PaddedSet, rows: np.ndarray, transforms: FrameTransforms | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-mel mean and standard deviation over the valid frames of the selected rows (after the
    per-clip `transforms`, which the model's frames then get)."""
    transforms = transforms or FrameTransforms()
    total = np.zeros(transforms.dim(features.data.shape[2]))
    squares = np.zeros_like(total)
    count = 0
    shards = features.shards_with(rows)
    with progress("frame statistics", len(shards)) as advance:
        for shard in shards:
            block, lengths = features.read_shard(shard)
            chosen = np.where(rows[features.shard_rows(shard)], lengths, 0)
            frames = transforms.valid_frames(block, chosen).astype(np.float64)
            total += frames.sum(axis=0)
            squares += (frames**2).sum(axis=0)
            count += len(frames)
            advance(1)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0)) + 1e-5
    return mean.astype(np.float32), std.astype(np.float32)


def reader_workers(setting: int | None, device: torch.device, ranks_here: int = 1) -> int:
    """Reader processes: as set, or none on a CPU (the model's threads want every core) and up
    to MAX_GPU_READERS on an accelerator, leaving a core to the training process; `ranks_here`
    training processes on this machine (torchrun's local world) share its cores."""
    if setting is not None:
        return setting
    cores = available_cores() // max(ranks_here, 1)
    return 0 if device.type == "cpu" else max(0, min(MAX_GPU_READERS, cores - 1))


@contextmanager
def cpu_threads(setting: int | None, ranks_here: int = 1) -> Iterator[int]:
    """torch's intra-op threads while training: as set, or this process's share of the cores it
    may use (torch's own default counts the machine's cores, and torchrun's ranks would each take
    them all). Put back afterwards: the process may train again with other settings."""
    before = torch.get_num_threads()
    threads = setting or max(1, available_cores() // max(ranks_here, 1))
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def balanced_weights(labels: sparse.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Inverse class frequency weights for `--sampler balanced`: a clip weighs the sum over its
    classes of 1 / (selected clips of that class), so each class is drawn about equally often, as
    the AudioSet recipes sample the full set. Clips outside `rows`, or with no label, weigh 0.
    `labels`: the reader's sparse labels, so no pass over the store's label column is added."""
    counts = np.asarray(labels[np.flatnonzero(rows)].sum(axis=0), dtype=np.float64).ravel()
    inverse = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    return np.where(rows, labels.astype(np.float64) @ inverse, 0.0)


@dataclass
class ShardRows:
    """Selected rows of one shard, model-ready, in the plan's order, and the seconds it took."""

    inputs: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    rows: torch.Tensor
    seconds: float


class _ShardDataset(Dataset):
    """Item `(shard, rows kept)` -> those rows, read and prepared (in a worker process). Lengths
    and labels come from memory (labels sparse): only the shard's data is read from the store."""

    def __init__(self, inputs: ModelInputs, lengths: np.ndarray, labels: sparse.csr_matrix) -> None:
        self.inputs, self.lengths, self.labels = inputs, lengths, labels

    def __getitem__(self, item: tuple[int, np.ndarray]) -> ShardRows:
        started = time.perf_counter()
        shard, keep = item
        span = self.inputs.padded.shard_rows(shard)
        rows = keep + span.start
        lengths = self.lengths[rows]
        return ShardRows(
            inputs=self.inputs.shard_tensor(shard, keep, self.lengths[span]),
            lengths=torch.from_numpy(lengths.astype(np.int64)),
            labels=torch.from_numpy(self.labels[rows].toarray().astype(np.float32)),
            rows=torch.from_numpy(rows),
            seconds=time.perf_counter() - started,
        )


class _Plan:
    """The pass's `(shard, rows kept)` items: the sampler the loader iterates anew each pass."""

    def __init__(self) -> None:
        self.items: list[tuple[int, np.ndarray]] = []

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class BatchReader:
    """Batches of a padded set's rows, read ahead by `workers` processes (0: in this process).

    Workers are spawned once and kept for every pass (train epochs and scoring alike); `close` (or
    leaving the `with` block) stops them. `read_seconds` and `read_samples` add up what the
    workers spent, for the reader's own samples/s."""

    def __init__(self, store: Store, inputs: ModelInputs, workers: int = 0) -> None:
        self.inputs, self.workers = inputs, workers
        self.lengths = inputs.padded.all_lengths()
        self.labels = store.sparse_labels()[: len(self.lengths)]
        self.plan = _Plan()
        self.read_seconds, self.read_samples = 0.0, 0
        self._loader: DataLoader | None = DataLoader(
            _ShardDataset(inputs, self.lengths, self.labels),
            batch_size=None,
            sampler=self.plan,
            num_workers=workers,
            prefetch_factor=PREFETCH_SHARDS if workers else None,
            persistent_workers=workers > 0,
            multiprocessing_context="spawn" if workers else None,
            generator=torch.Generator(),  # its seed draws must not move the training's torch RNG
        )

    def __enter__(self) -> BatchReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers: the loader's persistent iterator shuts them down when it is dropped."""
        self._loader = None

    def batches(
        self,
        rows: np.ndarray,
        batch_size: int,
        rng: np.random.Generator | None = None,
        weights: np.ndarray | None = None,
        part: tuple[int, int] = (0, 1),
        bucket: bool = False,
    ) -> Iterator[Batch]:
        """Batches of the selected rows (a boolean mask), each once; shuffled shard and row order
        when `rng` is given. With `weights`, as many rows are drawn with replacement, in proportion
        to their weights, and still read shard by shard. `part` (rank, world) reads one rank's
        share of the plan. Rows left at a shard's end join the next shard's, so only the last
        batch is short. `bucket` (with `rng`): a shard's batches hold clips of similar length, as
        lhotse's bucketing samplers make them, in shuffled order."""
        if self._loader is None:
            raise RuntimeError("this BatchReader is closed")
        items = self._items(rows, rng, weights)
        self.plan.items = _share(items, *part) if part[1] > 1 else items
        pending: ShardRows | None = None
        for fresh in self._loader:
            self.read_seconds += fresh.seconds
            self.read_samples += len(fresh.rows)
            if pending is not None:  # only the few rows left from the last shard are copied again
                fresh = _joined(pending, fresh)
            whole = len(fresh.rows) // batch_size * batch_size
            batches = [slice(start, start + batch_size) for start in range(0, whole, batch_size)]
            if bucket and rng is not None and whole:
                batches = _buckets(fresh.lengths[:whole], batch_size, rng)
            for part_rows in batches:
                yield _batch(fresh, part_rows)
            pending = _batch_rows(fresh, slice(whole, None))
        if pending is not None and len(pending.rows):
            yield _batch(pending, slice(None))

    def _items(
        self, rows: np.ndarray, rng: np.random.Generator | None, weights: np.ndarray | None
    ) -> list[tuple[int, np.ndarray]]:
        """`(shard, rows in it)` in reading order; a row drawn twice is listed twice."""
        padded = self.inputs.padded
        counts = (rows & (self.lengths > 0)).astype(np.int64)
        if weights is not None:
            if rng is None:
                raise ValueError("weighted draws need an rng")
            candidates = np.flatnonzero(counts)
            drawn = rng.choice(candidates, len(candidates), p=weights[candidates] / weights[candidates].sum())
            counts = np.bincount(drawn, minlength=len(rows))
        shards = padded.shards_with(counts > 0)
        if rng is not None:
            shards = list(rng.permutation(shards))
        items = []
        for shard in shards:
            span = padded.shard_rows(shard)
            keep = np.repeat(np.arange(span.stop - span.start), counts[span])
            items.append((int(shard), rng.permutation(keep) if rng is not None else keep))
        return items

    def counts(self) -> tuple[float, int]:
        """Seconds spent reading and samples read so far, to measure a span with `samples_per_second`."""
        return self.read_seconds, self.read_samples

    def samples_per_second(self, since: tuple[float, int] = (0.0, 0)) -> float:
        """What the reader alone delivers since `counts()` gave `since`: samples over the seconds
        it spent, times its workers."""
        seconds, samples = self.read_seconds - since[0], self.read_samples - since[1]
        return samples / max(seconds, 1e-9) * max(self.workers, 1)


def _share(items: list[tuple[int, np.ndarray]], rank: int, world: int) -> list[tuple[int, np.ndarray]]:
    """Rank `rank`'s contiguous share of the plan's rows, regrouped by shard (a rank reads about
    1/world of the shards). Every share is equally long, so every rank makes the same number of
    steps: the last shares repeat the plan's first rows, as torch's DistributedSampler pads."""
    if not items:
        return []
    shards = np.concatenate([np.full(len(keep), shard) for shard, keep in items])
    local = np.concatenate([keep for _, keep in items])
    per_rank = -(-len(local) // world)
    picks = np.arange(rank * per_rank, (rank + 1) * per_rank) % len(local)
    shards, local = shards[picks], local[picks]
    breaks = np.flatnonzero(np.diff(shards)) + 1
    return [
        (int(s[0]), rows) for s, rows in zip(np.split(shards, breaks), np.split(local, breaks), strict=True)
    ]


def _buckets(lengths: torch.Tensor, batch_size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """Batches of rows (already in random order) sorted by length, in shuffled order: each batch's
    clips are of similar length, so little padding is computed."""
    by_length = torch.from_numpy(np.argsort(lengths.numpy(), kind="stable"))
    batches = list(by_length.reshape(-1, batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _joined(first: ShardRows, second: ShardRows) -> ShardRows:
    """Rows of two shards as one (every shard is padded to the set's full width)."""
    return ShardRows(
        inputs=torch.cat([first.inputs, second.inputs]),
        lengths=torch.cat([first.lengths, second.lengths]),
        labels=torch.cat([first.labels, second.labels]),
        rows=torch.cat([first.rows, second.rows]),
        seconds=0.0,
    )


def _batch_rows(rows: ShardRows, part: slice) -> ShardRows:
    return ShardRows(rows.inputs[part], rows.lengths[part], rows.labels[part], rows.rows[part], 0.0)


def _batch(rows: ShardRows, part: slice | torch.Tensor) -> Batch:
    lengths = rows.lengths[part]
    longest = int(lengths.max())
    return Batch(
        inputs=rows.inputs[part, :longest].contiguous(),
        lengths=lengths,
        labels=rows.labels[part],
        rows=rows.rows[part].numpy(),
    )


@torch.no_grad()
def score_rows(
    model: torch.nn.Module,
    reader: BatchReader,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    loss: str = "bce",
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores of the selected rows, in row order: probabilities that sum to 1 for a
    model trained with softmax cross-entropy (`ce`), independent sigmoids for BCE."""
    model.eval()
    labels, scores, order = [], [], []
    with progress("score", int(rows.sum())) as advance:
        for batch in reader.batches(rows, batch_size):
            logits = model(batch.inputs.to(device), batch.lengths.to(device))
            scores.append(probabilities(logits, loss).cpu().numpy())
            labels.append(batch.labels.numpy())
            order.append(batch.rows)
            advance(len(batch.rows))
    sort = np.argsort(np.concatenate(order))
    return np.concatenate(labels)[sort].astype(bool), np.concatenate(scores)[sort]


def probabilities(logits: torch.Tensor, loss: str) -> torch.Tensor:
    """What a run's logits mean: a softmax over classes (`ce`), or one sigmoid a class (`bce`)."""
    logits = logits.float()
    return torch.softmax(logits, dim=-1) if loss == "ce" else torch.sigmoid(logits)
