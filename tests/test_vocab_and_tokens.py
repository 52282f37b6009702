from __future__ import annotations

import numpy as np
import pytest

from audiotok_cli.errors import MismatchError, MissingInputError, OutputExistsError
from audiotok_cli.expand import expand
from audiotok_cli.featurize import featurize
from audiotok_cli.settings import load_settings
from audiotok_cli.split import split
from audiotok_cli.store import Store
from audiotok_cli.tokenize import open_tokens, tokenize
from audiotok_cli.vocab import build_vocab


def test_vocab_needs_a_split_first(small_mirrors):
    settings = load_settings({"paths": {"mirror_dir": small_mirrors["parquet"].mirror_dir}})
    expand(settings, ["bal_train"])
    featurize(settings)
    with pytest.raises(MissingInputError, match="audiotok split"):
        build_vocab(settings)


def test_vocab_is_trained_on_train_frames_and_records_its_inputs(featurized):
    result = build_vocab(featurized)
    store = Store.open(featurized.store_path)
    centroids, attrs = store.read_vocab("k16")
    assert centroids.shape == (16, 64) and np.isfinite(centroids).all()
    assert attrs["n_train_clips"] == result.n_train_clips == int((store.splits() == 1).sum())
    assert attrs["features_settings"]["n_mels"] == 64 and attrs["split_settings"]["val_ratio"] == 0.1
    with pytest.raises(OutputExistsError, match="--overwrite"):
        build_vocab(featurized)


def test_kmeans_plus_plus_start_beats_random_start(featurized):
    plus = build_vocab(featurized).inertia
    random = build_vocab(
        load_settings({**_overrides(featurized), "vocab": {"n_clusters": 16, "init": "random"}}),
        overwrite=True,
    ).inertia
    assert plus <= random * 1.02


def _overrides(settings):
    return {"paths": {"mirror_dir": settings.mirror_dir}}


def test_tokens_are_nearest_centroids_and_padding_is_kept(featurized):
    build_vocab(featurized)
    tokenize(featurized)
    store = Store.open(featurized.store_path)
    centroids, _ = store.read_vocab("k16")
    tokens = open_tokens(store, featurized)
    features = store.padded("features", "logmel", fix="")
    ids, lengths = tokens.read_shard(0)
    frames, feature_lengths = features.read_shard(0)
    assert np.array_equal(lengths, feature_lengths)
    for row in range(len(lengths)):
        valid = ids[row, : lengths[row]]
        assert valid.min() >= 0 and valid.max() < 16
        assert (ids[row, lengths[row] :] == -1).all()
        distances = ((frames[row, : lengths[row], None, :].astype(np.float32) - centroids[None]) ** 2).sum(-1)
        agree = (distances.argmin(axis=1) == valid).mean()
        assert agree > 0.99  # float ties aside, every frame gets its nearest centroid


def test_tokens_from_a_rebuilt_vocab_are_refused(featurized):
    build_vocab(featurized)
    tokenize(featurized)
    build_vocab(
        load_settings({**_overrides(featurized), "vocab": {"n_clusters": 16, "niter": 3}, "seed": 5}),
        overwrite=True,
    )
    with pytest.raises(MismatchError, match="tokenize --overwrite"):
        open_tokens(Store.open(featurized.store_path), featurized)
    assert tokenize(featurized, overwrite=True).clips_done == 48


def test_tokens_of_a_vocabulary_built_on_another_split_are_refused(featurized):
    build_vocab(featurized)
    tokenize(featurized)
    split(load_settings({**_overrides(featurized), "split": {"val_ratio": 0.3}}))
    with pytest.raises(MismatchError, match=r"split \{'val_ratio': 0.1, 'seed': 0\}.*vocab --overwrite"):
        open_tokens(Store.open(featurized.store_path), featurized)
    split(featurized)  # back to the split the vocabulary was built on
    assert open_tokens(Store.open(featurized.store_path), featurized).n_rows == 48


def test_clips_appended_after_tokenizing_wait_for_featurize_without_breaking_later_stages(featurized):
    from audiotok_cli.labels import N_CLASSES
    from audiotok_cli.train import train

    build_vocab(featurized)
    tokenize(featurized)
    store = Store.open(featurized.store_path)
    store.append_clips(
        [f"late{i:07d}" for i in range(20)], "unbal_train", np.zeros((20, N_CLASSES), dtype=bool)
    )
    split(featurized)
    featurized_train = int((Store.open(featurized.store_path).splits()[:48] == 1).sum())
    assert build_vocab(featurized, overwrite=True).n_train_clips == featurized_train
    quick = load_settings(
        {
            **_overrides(featurized),
            "vocab": {"n_clusters": 16},
            "model": {"kind": "simple"},
            "train": {"epochs": 1},
        }
    )
    tokenize(quick, overwrite=True)
    assert len(train(quick).history) == 1
    assert Store.open(featurized.store_path).padded("tokens", "k16", fix="").n_rows == 48
