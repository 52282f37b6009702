"""Memory is bounded by a shard, not the store: on a store in shards of 8 clips, every read and
write touches one shard at most, the frame sample is as large as asked whatever the store holds,
and batches never exceed their size."""

from __future__ import annotations

import numpy as np

from audiotok_cli.stages.featurize import featurize
from audiotok_cli.stages.vocab import HELDOUT_SHARE, sample_frames
from audiotok_cli.store import PaddedSet, Store
from audiotok_cli.training.data import BatchReader, ModelInputs


def _spy_on_shards(monkeypatch) -> list[int]:
    """Rows per read or write of any padded set."""
    sizes: list[int] = []
    real_read, real_write = PaddedSet.read_shard, PaddedSet.write_shard

    def read(self, shard):
        block, lengths = real_read(self, shard)
        sizes.append(len(lengths))
        return block, lengths

    def write(self, shard, data, lengths):
        sizes.append(len(lengths))
        return real_write(self, shard, data, lengths)

    monkeypatch.setattr(PaddedSet, "read_shard", read)
    monkeypatch.setattr(PaddedSet, "write_shard", write)
    return sizes


def test_stages_read_and_write_one_shard_at_a_time(small_shards, monkeypatch):
    sizes = _spy_on_shards(monkeypatch)
    layout = small_shards.features.model_copy(update={"name": "again"})
    featurize(small_shards.store_path, small_shards.audio_dir, small_shards.audio, layout, workers=1)
    store = Store.open(small_shards.store_path)
    features = store.features("again")
    train = store.split_rows(features.all_lengths(), "train")
    for budget in (100, 1000):
        sample, heldout = sample_frames(features, train, budget, np.random.default_rng(0))
        assert 0.6 * budget < len(sample) < 1.4 * budget  # the budget, not the store, sets the size
        assert len(heldout) <= 1.2 * HELDOUT_SHARE * features.all_lengths()[train].sum()
    assert sizes and max(sizes) == 8 == features.rows_per_shard  # never more than a shard


def test_batches_hold_at_most_their_size_and_shards_are_read_whole(small_shards, monkeypatch):
    store = Store.open(small_shards.store_path)
    tokens = store.tokens()
    reader = BatchReader(store, ModelInputs(tokens, "tokens"))
    read = []
    real = PaddedSet.data.fget

    def data(self):  # every read of token data goes through a whole shard's slice
        array = real(self)
        return _Recording(array, read)

    monkeypatch.setattr(PaddedSet, "data", property(data))
    rows = reader.lengths > 0
    batches = list(reader.batches(rows, 5, np.random.default_rng(0)))
    assert max(len(batch.rows) for batch in batches) == 5 and sum(len(b.rows) for b in batches) == rows.sum()
    assert read and all(stop - start <= tokens.rows_per_shard for start, stop in read)


class _Recording:
    """A zarr array that notes the row span of each slice read from it."""

    def __init__(self, array, spans: list[tuple[int, int]]) -> None:
        self.array, self.spans = array, spans

    def __getitem__(self, rows: slice):
        self.spans.append((rows.start, rows.stop))
        return self.array[rows]

    def __getattr__(self, name: str):
        return getattr(self.array, name)
