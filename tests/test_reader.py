"""The batch reader: the same batches whatever the number of reader processes, every selected row
once per pass, batches trimmed to their longest clip, and training unchanged by reader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import audiotok_cli.training.data as data_module
import audiotok_cli.training.loop as loop
from audiotok_cli.settings import ModelSettings, TrainSettings
from audiotok_cli.store import Store
from audiotok_cli.training.data import BatchReader, ModelInputs, frame_statistics, reader_workers
from training_helpers import assert_same_tensors


def _inputs(store: Store, kind: str) -> ModelInputs:
    if kind == "tokens":
        return ModelInputs(store.tokens(), "tokens")
    features = store.features()
    mean, std = frame_statistics(features, features.all_lengths() > 0)
    return ModelInputs(features, "frames", mean, std)


def _pass(reader: BatchReader, rows: np.ndarray, seed: int) -> list:
    return list(reader.batches(rows, batch_size=7, rng=np.random.default_rng(seed)))


@pytest.mark.parametrize("kind", ["tokens", "frames"])
def test_reader_workers_give_the_same_batches_as_one_process(small_shards, kind):
    store = Store.open(small_shards.store_path)
    inputs = _inputs(store, kind)
    lengths = inputs.padded.all_lengths()
    rows = store.split_rows(lengths, "train")
    assert inputs.padded.n_shards == 6 and rows.sum() % 7  # shard ends and a short last batch

    with BatchReader(store, inputs) as here, BatchReader(store, inputs, workers=2) as spawned:
        for seed in (0, 1):  # two passes over the same worker processes
            ours, theirs = _pass(here, rows, seed), _pass(spawned, rows, seed)
            assert len(ours) == len(theirs)
            for a, b in zip(ours, theirs, strict=True):
                assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
                assert torch.equal(a.lengths, b.lengths) and np.array_equal(a.rows, b.rows)
        assert spawned.read_samples == 2 * rows.sum() and spawned.samples_per_second() > 0

    seen = np.concatenate([batch.rows for batch in ours])
    assert sorted(seen) == list(np.flatnonzero(rows))  # every train row once, nothing else
    assert [len(batch.rows) for batch in ours][:-1] == [7] * (len(ours) - 1)
    labels = store.labels()
    for batch in ours:
        assert batch.inputs.shape[1] == batch.lengths.max()  # trimmed to the batch's longest
        assert np.array_equal(batch.labels.numpy(), labels[batch.rows])
        assert np.array_equal(batch.lengths.numpy(), lengths[batch.rows])


def test_another_shuffle_seed_gives_another_order(small_shards):
    store = Store.open(small_shards.store_path)
    reader = BatchReader(store, _inputs(store, "tokens"))
    rows = store.split_rows(reader.lengths, "train")
    first, second = (np.concatenate([b.rows for b in _pass(reader, rows, seed)]) for seed in (0, 1))
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)


def test_training_with_reader_workers_equals_training_without(small_shards):
    def run(name: str, workers: int):
        settings = TrainSettings(epochs=2, batch_size=8, run_name=name, loader_workers=workers)
        model = ModelSettings(kind="simple", embed_dim=8)
        return loop.train(small_shards.resolved_paths, model, settings, seed=0)

    alone, helped = run("alone", 0), run("helped", 2)
    assert [e["val_mAP"] for e in alone.history] == [e["val_mAP"] for e in helped.history]
    assert_same_tensors(helped.run_dir / "last.safetensors", alone.run_dir / "last.safetensors")


def test_ranks_on_one_machine_share_its_cores_between_their_readers(monkeypatch):
    monkeypatch.setattr(data_module, "available_cores", lambda: 16)
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    assert reader_workers(None, gpu) == data_module.MAX_GPU_READERS == 4
    assert reader_workers(None, gpu, ranks_here=8) == 1  # 2 cores a rank: one for training
    assert reader_workers(None, gpu, ranks_here=16) == 0
    assert reader_workers(None, cpu, ranks_here=1) == 0 and reader_workers(3, gpu, ranks_here=8) == 3
