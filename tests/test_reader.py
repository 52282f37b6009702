"""The batch reader: the same batches whatever the number of reader processes, every selected row
once per pass, batches trimmed to their longest clip, and training unchanged by reader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import audiotok_cli.training.data as data_module
import audiotok_cli.training.loop as loop
from audiotok_cli.settings import ModelSettings, TrainSettings, load_settings
from audiotok_cli.store import Store
from audiotok_cli.training.data import BatchReader, ModelInputs, frame_statistics, reader_workers
from audiotok_cli.training.request import RunRequest
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
        return loop.train(RunRequest(small_shards.resolved_paths, model, settings, seed=0))

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


def test_bucketing_reads_every_row_once_in_batches_of_similar_length_and_masks_what_it_pads(cli, tmp_path):
    """`--bucket-by-length`: each epoch still reads each train clip once, batches hold clips of
    similar length (so far fewer padded steps are computed), and a clip's states are those it gets
    alone, padded or not (attention masks the padding), within float32 rounding."""
    from audiotok_cli.training.models.bert import FrameMaskedUnits
    from audiotok_cli.training.models.spec import ModelSpec
    from collections_kit import tone, write

    root = tmp_path / "lengths"
    for take in range(48):  # 0.3 s to 3.1 s
        write(root / f"c{take % 3}" / f"take{take}.wav", tone(take % 3, take, seconds=0.3 + 0.06 * take))
    for step in (["import", str(root)], ["split", "--val-ratio", "0.2", "--test-ratio", "0.2"]):
        assert cli(*step).exit_code == 0
    assert cli("featurize", "--clip-seconds", "4").exit_code == 0
    store = Store.open(load_settings().store_path)
    reader = BatchReader(store, _inputs(store, "frames"))
    train = store.split_rows(reader.lengths, "train")

    def padded_steps(bucket: bool) -> tuple[int, list[int]]:
        batches = list(reader.batches(train, 4, np.random.default_rng(0), bucket=bucket))
        rows = sorted(int(row) for batch in batches for row in batch.rows)
        return sum(batch.inputs.shape[0] * batch.inputs.shape[1] for batch in batches), rows

    bucketed, rows = padded_steps(True)
    plain, same_rows = padded_steps(False)
    assert rows == same_rows == sorted(np.flatnonzero(train & (reader.lengths > 0)).tolist())
    assert bucketed < 0.8 * plain, (bucketed, plain)

    shape = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "embed_dim": 8, "dropout": 0.0}
    spec = ModelSpec(input="frames", n_mels=64, max_frames=200, n_classes=3, target_k=8, target_codebooks=1,
                     kind="bert", **shape)  # fmt: skip
    model = FrameMaskedUnits(spec).eval()
    frames, lengths = torch.randn(3, 50, 64), torch.tensor([50, 31, 7])
    with torch.no_grad():
        together = model.hidden_states(frames, lengths)[-1]
        for row, n in enumerate(lengths.tolist()):
            alone = model.hidden_states(frames[row : row + 1, :n], lengths[row : row + 1])[-1][0]
            assert torch.allclose(together[row, : n + 1], alone, atol=1e-5)
