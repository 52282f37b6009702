"""Stream token batches from the store, shard by shard (memory is bounded by a shard, not the
split), and score them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from audiotok_cli.progress import progress
from audiotok_cli.store import Store, TokenSet
from audiotok_cli.training.models.ids import to_model_ids


@dataclass
class Batch:
    ids: torch.Tensor  # [batch, longest] model ids
    lengths: torch.Tensor  # [batch] true lengths
    labels: torch.Tensor  # [batch, classes] multi-hot float
    rows: np.ndarray  # clip rows, for joining predictions back


def iter_batches(
    store: Store,
    tokens: TokenSet,
    rows: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None = None,
) -> Iterator[Batch]:
    """Batches of the selected rows (a boolean mask); shuffled shard and row order when `rng` is given."""
    shards = tokens.shards_with(rows)
    if rng is not None:
        shards = list(rng.permutation(shards))
    carry: list[tuple[np.ndarray, ...]] = []
    carried = 0
    for shard in shards:
        span = tokens.shard_rows(shard)
        ids, lengths = tokens.read_shard(shard)
        keep = np.flatnonzero(rows[span] & (lengths > 0))
        if rng is not None:
            keep = rng.permutation(keep)
        labels = store.labels(span)
        carry.append((ids[keep], lengths[keep], labels[keep], keep + span.start))
        carried += len(keep)
        while carried >= batch_size:
            merged = [np.concatenate(parts) for parts in zip(*carry, strict=True)]
            yield _batch(*(part[:batch_size] for part in merged))
            carry = [tuple(part[batch_size:] for part in merged)]
            carried -= batch_size
    if carried:
        yield _batch(*(np.concatenate(parts) for parts in zip(*carry, strict=True)))


def _batch(ids: np.ndarray, lengths: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> Batch:
    longest = int(lengths.max())
    return Batch(
        ids=to_model_ids(torch.from_numpy(ids[:, :longest].astype(np.int64))),
        lengths=torch.from_numpy(lengths.astype(np.int64)),
        labels=torch.from_numpy(labels.astype(np.float32)),
        rows=rows,
    )


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    store: Store,
    tokens: TokenSet,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and sigmoid scores of the selected rows, in row order."""
    model.eval()
    labels, scores, order = [], [], []
    with progress("predict", int(rows.sum())) as advance:
        for batch in iter_batches(store, tokens, rows, batch_size):
            logits = model(batch.ids.to(device), batch.lengths.to(device))
            scores.append(torch.sigmoid(logits).float().cpu().numpy())
            labels.append(batch.labels.numpy())
            order.append(batch.rows)
            advance(len(batch.rows))
    sort = np.argsort(np.concatenate(order))
    return np.concatenate(labels)[sort].astype(bool), np.concatenate(scores)[sort]
