from __future__ import annotations

import numpy as np
import pytest
import zarr

from audiotok_cli.class_lists import AUDIOSET_N_CLASSES
from audiotok_cli.errors import MismatchError, MissingInputError, OutputExistsError
from audiotok_cli.settings import AudioSettings, load_settings
from audiotok_cli.stages.split import split
from audiotok_cli.store import PENDING, FeaturesRecord, Store
from store_helpers import new_store


def _labels(n: int, seed: int = 0) -> np.ndarray:
    """Random multi-hot rows, each with at least one label."""
    rng = np.random.default_rng(seed)
    labels = rng.random((n, AUDIOSET_N_CLASSES)) < 0.01
    labels[np.arange(n), rng.integers(AUDIOSET_N_CLASSES, size=n)] = True
    return labels


def test_clips_append_and_lookup_by_ytid(tmp_path):
    store = new_store(tmp_path / "s.zarr")
    labels = _labels(5)
    store.append_clips([f"id{i:08d}xx" for i in range(3)], "bal_train", labels[:3])
    store.append_clips(["evalAAAAAAA", "evalBBBBBBB"], "eval", labels[3:])
    reopened = Store.open(tmp_path / "s.zarr")
    assert reopened.n_clips == 5
    assert reopened.row_of["evalBBBBBBB"] == 4
    assert np.array_equal(reopened.labels(), labels)
    assert list(reopened.sources()) == [0, 0, 0, 2, 2]


def test_padded_sets_write_whole_shards_and_grow(tmp_path):
    store = new_store(tmp_path / "s.zarr")
    store.append_clips([f"clip{i:07d}" for i in range(10)], "bal_train", _labels(10))
    record = FeaturesRecord(audio=AudioSettings(n_mels=3), max_frames=6, rows_per_shard=4)
    padded = store.create_features("f", record, n_rows=store.n_clips, rows_per_chunk=2, overwrite=False)
    assert padded.n_shards == 3 and padded.shard_rows(2) == slice(8, 10)
    data = np.arange(4 * 6 * 3, dtype=np.float16).reshape(4, 6, 3)
    padded.write_shard(1, data, np.array([6, 5, 4, 3], dtype=np.int32))
    lengths = padded.all_lengths()
    assert list(lengths) == [PENDING] * 4 + [6, 5, 4, 3] + [PENDING] * 2
    assert np.array_equal(padded.read_shard(1)[0], data)
    store.append_clips(["late0000000"], "eval", _labels(1))
    padded.grow(store.n_clips)
    assert padded.n_rows == 11 and padded.all_lengths()[10] == PENDING
    with pytest.raises(OutputExistsError, match="--overwrite"):
        store.create_features("f", record, n_rows=store.n_clips, rows_per_chunk=2, overwrite=False)


def test_store_refuses_other_format_versions(tmp_path):
    new_store(tmp_path / "s.zarr")
    root = zarr.open_group(tmp_path / "s.zarr", mode="r+")
    root.attrs["audiotok"] = {**root.attrs["audiotok"], "format_version": 99}
    with pytest.raises(MismatchError, match="format_version 99"):
        Store.open(tmp_path / "s.zarr")
    del root.attrs["audiotok"]
    root.attrs["format_version"] = 1  # how format 1 recorded it
    with pytest.raises(MismatchError, match="format_version 1, this audiotok reads 2; rebuild it"):
        Store.open(tmp_path / "s.zarr")


def test_missing_store_names_the_fix(tmp_path):
    with pytest.raises(MissingInputError, match="audiotok expand"):
        Store.open(tmp_path / "nowhere.zarr")


def test_split_is_deterministic_stable_under_appends_and_keeps_eval_as_test():
    settings = load_settings({"split": {"val_ratio": 0.2}})
    store = new_store(settings.store_path)
    store.append_clips([f"t{i:010d}" for i in range(400)], "bal_train", _labels(400))
    store.append_clips([f"e{i:010d}" for i in range(50)], "eval", _labels(50))
    first = split(settings.store_path, settings.split, settings.seed)
    codes_before = Store.open(settings.store_path).splits().copy()
    assert first.counts["test"] == 50
    assert 50 <= first.counts["val"] <= 110  # ~20% of 400
    store = Store.open(settings.store_path)
    store.append_clips([f"n{i:010d}" for i in range(100)], "unbal_train", _labels(100))
    split(settings.store_path, settings.split, settings.seed)
    codes_after = Store.open(settings.store_path).splits()
    assert np.array_equal(codes_after[:450], codes_before)
    other_seed = split(settings.store_path, settings.split, seed=1)
    assert not np.array_equal(Store.open(settings.store_path).splits()[:450], codes_before)
    assert other_seed.counts["test"] == 50


@pytest.mark.parametrize("layout", ["parquet", "tar"])
def test_demo_data_is_deterministic_in_its_seed(tmp_path, layout):
    from audiotok_cli.audioset.demo import write_demo_mirror

    def files(root):
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }

    first = write_demo_mirror(tmp_path / "a", layout=layout, clips=10, seconds=1.0, seed=4)
    again = write_demo_mirror(tmp_path / "b", layout=layout, clips=10, seconds=1.0, seed=4)
    other = write_demo_mirror(tmp_path / "c", layout=layout, clips=10, seconds=1.0, seed=5)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert first.labels == again.labels and first.labels != other.labels
    assert all(len(mids) >= 1 for clips in first.labels.values() for mids in clips.values())


def test_only_the_train_sources_are_split_and_the_record_says_so(cli):
    settings = load_settings({})
    store = new_store(settings.store_path)
    store.append_clips([f"b{i:010d}" for i in range(60)], "bal_train", _labels(60))
    store.append_clips([f"u{i:010d}" for i in range(40)], "unbal_train", _labels(40, seed=1))
    store.append_clips([f"e{i:010d}" for i in range(10)], "eval", _labels(10, seed=2))
    result = cli("split", "--train-source", "bal_train")
    assert result.exit_code == 0, result.output
    assert "40 of other sources unassigned" in result.stdout and "10 test" in result.stdout
    store = Store.open(settings.store_path)
    codes = store.splits()
    assert (codes[60:100] == 0).all() and (codes[100:] == 3).all() and set(codes[:60]) == {1, 2}
    assert store.split.train_sources == ("bal_train",)

    result = cli("split")  # the default splits every source not tested again
    assert result.exit_code == 0 and Store.open(settings.store_path).split.train_sources is None
    assert set(Store.open(settings.store_path).splits()[60:100]) <= {1, 2}

    refused = cli("split", "--train-source", "eval")
    assert refused.exit_code == 3
    assert "train source 'eval': eval is AudioSet's test split; choose other sources" in refused.stderr


def test_a_store_made_before_imports_gains_fold_and_group_columns_with_its_first_import(tmp_path):
    path = tmp_path / "old.zarr"
    store = new_store(path)
    store.append_clips([f"b{i:010d}" for i in range(5)], "bal_train", _labels(5))
    clips = zarr.open_group(path / "clips", mode="r+")
    del clips["fold"], clips["group"]  # as a store written before this release holds them
    store = Store.open(path)
    assert store.folds().tolist() == [-1] * 5 and store.groups().tolist() == [""] * 5
    store.append_clips(["c/a.wav", "c/b.wav"], "c", _labels(2), folds=[2, 3], groups=["s1", "s2"])
    store = Store.open(path)
    assert store.folds().tolist() == [-1] * 5 + [2, 3]
    assert store.groups().tolist() == [""] * 5 + ["s1", "s2"]
