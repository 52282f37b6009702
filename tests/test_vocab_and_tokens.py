from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from audiotok_cli.errors import MismatchError, MissingInputError, OutputExistsError
from audiotok_cli.settings import SplitSettings, VocabSettings, load_settings
from audiotok_cli.stages.expand import expand
from audiotok_cli.stages.featurize import featurize
from audiotok_cli.stages.split import split
from audiotok_cli.stages.tokenize import tokenize
from audiotok_cli.stages.vocab import build_vocab
from audiotok_cli.store import Pick, Store
from audiotok_cli.training.request import RunRequest


def _vocab(settings, overwrite: bool = False, seed: int = 0, **vocab):
    options = VocabSettings(**{"n_clusters": 16, **vocab})
    return build_vocab(settings.store_path, options, seed, overwrite=overwrite)


def _split(settings, val_ratio: float = 0.1):
    return split(settings.store_path, SplitSettings(val_ratio=val_ratio), settings.seed)


def test_vocab_needs_a_split_first(small_mirrors):
    settings = load_settings({"paths": {"mirror_dir": small_mirrors["parquet"].mirror_dir}})
    expand(settings.resolved_paths, ["bal_train"])
    featurize(settings.store_path, settings.audio_dir, settings.audio, settings.features)
    with pytest.raises(MissingInputError, match="audiotok split"):
        _vocab(settings)


def test_vocab_is_trained_on_train_frames_and_records_its_inputs(featurized):
    result = _vocab(featurized)
    assert result.name == "logmel-k16"
    store = Store.open(featurized.store_path)
    vocab = store.vocab()
    assert vocab.centroids.shape == (16, 64) and np.isfinite(vocab.centroids).all()
    record = vocab.record
    assert record.n_train_clips == result.n_train_clips == int((store.splits() == 1).sum())
    assert record.features == "logmel" and record.audio.n_mels == 64 and record.split.val_ratio == 0.1
    with pytest.raises(OutputExistsError, match="--overwrite"):
        _vocab(featurized)


def test_kmeans_plus_plus_start_beats_random_start(featurized):
    def mean_heldout(init: str) -> float:  # on the same held-out frames: comparable; seeds averaged,
        runs = [_vocab(featurized, True, seed, init=init).heldout_inertia for seed in range(4)]
        return float(np.mean(runs))  # as one start of 16 centroids on ~5 k frames is a coin flip

    assert mean_heldout("kmeans++") < mean_heldout("random")


def test_tokens_are_nearest_centroids_and_padding_is_kept(featurized):
    _vocab(featurized)
    tokenize(featurized.store_path)
    store = Store.open(featurized.store_path)
    centroids = store.vocab().centroids
    tokens = store.tokens()
    features = store.features("logmel")
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


def test_tokenize_reads_frames_without_importing_torch(featurized):
    """torch's import costs more than tokenizing a small collection (1.4 s here): the stage reads,
    casts and searches with numpy and faiss alone."""
    _vocab(featurized)
    script = (
        "import sys; from pathlib import Path; from audiotok_cli.stages.tokenize import tokenize; "
        f"print(tokenize(Path({str(featurized.store_path)!r})).clips_done, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done_clips = int((Store.open(featurized.store_path).tokens().all_lengths() >= 0).sum())
    assert done.stdout.split() == [str(done_clips), "False"] and done_clips > 0


def test_tokens_from_a_rebuilt_vocab_are_refused(featurized):
    _vocab(featurized)
    tokenize(featurized.store_path)
    _vocab(featurized, overwrite=True, niter=3, seed=5)
    with pytest.raises(MismatchError, match="tokenize --overwrite"):
        Store.open(featurized.store_path).tokens()
    assert tokenize(featurized.store_path, overwrite=True).clips_done == 48


def test_tokens_of_a_vocabulary_built_on_another_split_are_refused(featurized):
    _vocab(featurized)
    tokenize(featurized.store_path)
    _split(featurized, val_ratio=0.3)
    with pytest.raises(MismatchError, match=r"split \{'val_ratio': 0.1, 'seed': 0, .*vocab --overwrite"):
        Store.open(featurized.store_path).tokens()
    _split(featurized)  # back to the split the vocabulary was built on
    assert Store.open(featurized.store_path).tokens().n_rows == 48


def test_clips_appended_after_tokenizing_wait_for_featurize_without_breaking_later_stages(featurized):
    from audiotok_cli.class_lists import AUDIOSET_N_CLASSES
    from audiotok_cli.settings import ModelSettings, TrainSettings
    from audiotok_cli.training.loop import train

    _vocab(featurized)
    tokenize(featurized.store_path)
    with Store.writing(featurized.store_path, "test") as store:
        store.append_clips(
            [f"late{i:07d}" for i in range(20)], "unbal_train", np.zeros((20, AUDIOSET_N_CLASSES), dtype=bool)
        )
    _split(featurized)
    featurized_train = int((Store.open(featurized.store_path).splits()[:48] == 1).sum())
    assert _vocab(featurized, overwrite=True).n_train_clips == featurized_train
    tokenize(featurized.store_path, overwrite=True)
    run = train(
        RunRequest(featurized.resolved_paths, ModelSettings(kind="simple"), TrainSettings(epochs=1), seed=0)
    )
    assert len(run.history) == 1
    assert Store.open(featurized.store_path).tokens().n_rows == 48


def test_held_out_frames_are_fixed_disjoint_and_score_every_vocabulary_alike(featurized):
    from audiotok_cli.stages.vocab import mean_distance, sample_frames

    store = Store.open(featurized.store_path)
    features = store.features()
    train = store.split_rows(features.all_lengths(), "train")
    small, heldout = sample_frames(features, train, 500, np.random.default_rng(0))
    large, heldout_again = sample_frames(features, train, 5000, np.random.default_rng(1))
    assert np.array_equal(heldout, heldout_again)  # whatever the budget and the seed
    assert 400 < len(small) < 600 and len(large) > 4000 and len(heldout) > 300
    sampled = {row.tobytes() for row in large}
    assert not any(row.tobytes() in sampled for row in heldout)  # never clustered

    coarse = _vocab(featurized)  # k=16
    fine = _vocab(featurized, n_clusters=32)
    assert fine.heldout_inertia < coarse.heldout_inertia  # more centroids, nearer on the same frames
    centroids = Store.open(featurized.store_path).vocab(Pick("logmel-k16")).centroids
    distances = ((heldout[:, None, :] - centroids[None]) ** 2).sum(-1).min(axis=1)
    assert coarse.heldout_inertia == pytest.approx(distances.mean(), rel=1e-4)
    assert mean_distance(centroids, heldout) == pytest.approx(coarse.heldout_inertia)
    record = Store.open(featurized.store_path).vocab(Pick("logmel-k16")).record
    assert record.heldout_frames == len(heldout) and record.heldout_inertia == coarse.heldout_inertia


def test_sample_frames_sets_how_many_frames_are_clustered(cli, featurized):
    result = cli("vocab", "--k", "16", "--sample-frames", "3000")
    assert result.exit_code == 0, result.output
    assert "held-out inertia" in result.stdout
    record = Store.open(featurized.store_path).vocab().record
    assert 2600 < record.n_frames < 3400  # a Bernoulli draw of about 3000


def test_kmeans_runs_on_one_thread_so_any_core_count_makes_the_same_vocabulary(featurized, monkeypatch):
    import faiss
    from threadpoolctl import threadpool_info

    import audiotok_cli.stages.vocab as vocab_module

    threads: list[int] = []

    def spy(real):
        def call(*args, **kwargs):
            blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
            threads.extend([faiss.omp_get_max_threads(), *blas])
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(faiss.Kmeans, "train", spy(faiss.Kmeans.train))
    monkeypatch.setattr(vocab_module, "kmeans_plusplus", spy(vocab_module.kmeans_plusplus))
    before = faiss.omp_get_max_threads()
    _vocab(featurized)
    assert len(threads) >= 4 and set(threads) == {1}  # seeding and Lloyd: faiss's and numpy's BLAS
    assert faiss.omp_get_max_threads() == before  # the other stages keep their threads


def test_vocab_says_between_which_vocabularies_its_inertia_compares_and_help_names_every_transform(
    cli, featurized
):
    raw = cli("vocab", "--k", "8")
    assert raw.exit_code == 0
    said = " ".join(raw.stdout.split())
    assert "comparable only between vocabularies of 'logmel' frames untransformed" in said
    moved = " ".join(cli("vocab", "--k", "8", "--transform", "clip-mean").stdout.split())
    assert "comparable only between vocabularies of 'logmel' frames transformed by clip-mean" in moved
    shown = " ".join(cli("vocab", "--help").stdout.split())
    assert "pool:M" in shown and "Recommended recipes: README" in shown
