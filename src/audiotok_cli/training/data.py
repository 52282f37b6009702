"""What a model reads from the store, streamed shard by shard (memory is bounded by a shard, not the
split): token ids for token models, standardised log-mel frames for frame models. And scoring."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from audiotok_cli.progress import progress
from audiotok_cli.store import PaddedSet, Store
from audiotok_cli.training.models.ids import to_model_ids


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

    def tensor(self, block: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        if self.kind == "tokens":
            return to_model_ids(torch.from_numpy(block.astype(np.int64)))
        frames = (block.astype(np.float32) - self.mean) / self.std
        frames *= np.arange(block.shape[1])[None, :, None] < lengths[:, None, None]
        return torch.from_numpy(frames)


def frame_statistics(features: PaddedSet, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-mel mean and standard deviation over the valid frames of the selected rows."""
    total = np.zeros(features.data.shape[2])
    squares = np.zeros_like(total)
    count = 0
    shards = features.shards_with(rows)
    with progress("frame statistics", len(shards)) as advance:
        for shard in shards:
            block, lengths = features.read_shard(shard)
            valid = (np.arange(block.shape[1]) < lengths[:, None]) & rows[features.shard_rows(shard)][:, None]
            frames = block[valid].astype(np.float64)
            total += frames.sum(axis=0)
            squares += (frames**2).sum(axis=0)
            count += len(frames)
            advance(1)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0)) + 1e-5
    return mean.astype(np.float32), std.astype(np.float32)


def iter_batches(
    store: Store,
    inputs: ModelInputs,
    rows: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None = None,
) -> Iterator[Batch]:
    """Batches of the selected rows (a boolean mask); shuffled shard and row order when `rng` is given."""
    padded = inputs.padded
    shards = padded.shards_with(rows)
    if rng is not None:
        shards = list(rng.permutation(shards))
    pending: tuple[np.ndarray, ...] | None = None  # rows read but not yet batched
    for shard in shards:
        span = padded.shard_rows(shard)
        block, lengths = padded.read_shard(shard)
        keep = np.flatnonzero(rows[span] & (lengths > 0))
        if rng is not None:
            keep = rng.permutation(keep)
        fresh = (block[keep], lengths[keep], store.labels(span)[keep], keep + span.start)
        if pending is not None:  # only the few rows left from the last shard are copied again
            fresh = tuple(np.concatenate(parts) for parts in zip(pending, fresh, strict=True))
        whole = len(fresh[0]) // batch_size * batch_size
        for start in range(0, whole, batch_size):
            yield _batch(inputs, *(part[start : start + batch_size] for part in fresh))
        pending = tuple(part[whole:] for part in fresh)
    if pending is not None and len(pending[0]):
        yield _batch(inputs, *pending)


def _batch(
    inputs: ModelInputs, block: np.ndarray, lengths: np.ndarray, labels: np.ndarray, rows: np.ndarray
) -> Batch:
    longest = int(lengths.max())
    return Batch(
        inputs=inputs.tensor(block[:, :longest], lengths),
        lengths=torch.from_numpy(lengths.astype(np.int64)),
        labels=torch.from_numpy(labels.astype(np.float32)),
        rows=rows,
    )


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    store: Store,
    inputs: ModelInputs,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and sigmoid scores of the selected rows, in row order."""
    model.eval()
    labels, scores, order = [], [], []
    with progress("predict", int(rows.sum())) as advance:
        for batch in iter_batches(store, inputs, rows, batch_size):
            logits = model(batch.inputs.to(device), batch.lengths.to(device))
            scores.append(torch.sigmoid(logits).float().cpu().numpy())
            labels.append(batch.labels.numpy())
            order.append(batch.rows)
            advance(len(batch.rows))
    sort = np.argsort(np.concatenate(order))
    return np.concatenate(labels)[sort].astype(bool), np.concatenate(scores)[sort]
