"""featurize on several worker processes and tokenize on several threads: the same store to the bit as
one worker."""

from __future__ import annotations

import os
import threading
import time

import faiss
import numpy as np
import pytest

from audiotok_cli.parallel import available_cores, read_ahead
from audiotok_cli.settings import load_settings
from audiotok_cli.stages.expand import expand
from audiotok_cli.stages.featurize import featurize
from audiotok_cli.stages.split import split
from audiotok_cli.stages.tokenize import tokenize
from audiotok_cli.stages.vocab import build_vocab, sample_frames
from audiotok_cli.store import Store, fingerprint


def test_workers_write_the_same_store_to_the_bit_as_one_process(small_mirrors):
    settings = load_settings(
        {
            "paths": {"mirror_dir": small_mirrors["parquet"].mirror_dir},
            "features": {"clips_per_shard": 8, "clips_per_chunk": 4},  # 6 shards to share out
            "vocab": {"n_clusters": 16},
        }
    )
    expand(settings.resolved_paths)
    split(settings.store_path, settings.split, settings.seed)
    for name, workers in (("one", 1), ("two", 2)):
        layout = settings.features.model_copy(update={"name": name})
        result = featurize(settings.store_path, settings.audio_dir, settings.audio, layout, workers=workers)
        assert result.clips_done == 48 and result.shards_written == 6
    store = Store.open(settings.store_path)
    one, two = store.features("one"), store.features("two")
    assert np.array_equal(one.all_lengths(), two.all_lengths()) and (one.all_lengths() > 0).all()
    assert np.array_equal(one.data[:], two.data[:])

    build_vocab(settings.store_path, settings.vocab, settings.seed, features="one")
    assert tokenize(settings.store_path, workers=1).clips_done == 48
    alone = Store.open(settings.store_path).tokens().data[:]
    assert tokenize(settings.store_path, overwrite=True, workers=2).clips_done == 48
    tokens = Store.open(settings.store_path).tokens()
    assert np.array_equal(tokens.data[:], alone) and np.array_equal(tokens.all_lengths(), one.all_lengths())


def test_a_local_dask_cluster_writes_the_same_store_as_one_process(small_shards):
    settings = small_shards  # features "logmel" and its tokens, in 6 shards, made by one process
    alone = Store.open(settings.store_path)
    features_alone, tokens_alone = alone.features().data[:], alone.tokens().data[:]
    layout = settings.features.model_copy(update={"name": "on-dask"})
    result = featurize(
        settings.store_path, settings.audio_dir, settings.audio, layout, workers=2, dask="local"
    )
    assert result.clips_done == 48 and result.shards_written == 6
    assert tokenize(settings.store_path, overwrite=True, workers=2, dask="local").clips_done == 48
    store = Store.open(settings.store_path)
    assert np.array_equal(store.features("on-dask").data[:], features_alone)
    assert np.array_equal(store.features("on-dask").all_lengths(), store.features("logmel").all_lengths())
    assert np.array_equal(store.tokens().data[:], tokens_alone)


def test_an_unreachable_dask_scheduler_is_one_line(cli, small_shards, monkeypatch):
    import audiotok_cli.parallel as parallel

    monkeypatch.setattr(parallel, "DASK_CONNECT_SECONDS", 2)
    result = cli("tokenize", "--overwrite", "--dask", "tcp://127.0.0.1:9")
    assert result.exit_code == 8
    assert (
        "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.stderr
        and "--dask local" in result.stderr
    )
    assert [line for line in result.stderr.splitlines() if line.startswith("error")] == [
        result.stderr.strip()
    ]
    assert np.array_equal(Store.open(small_shards.store_path).tokens().all_lengths() > 0, np.ones(48, bool))


def test_a_worker_killed_mid_shard_leaves_it_pending_and_a_rerun_completes_it(small_shards, monkeypatch):
    import audiotok_cli.stages.featurize as stage
    import dying_worker
    from audiotok_cli.errors import WorkerLostError
    from audiotok_cli.store import PENDING

    settings = small_shards
    layout = settings.features.model_copy(update={"name": "killed"})
    with monkeypatch.context() as patch:
        patch.setattr(stage, "_featurize_task", dying_worker.task_killed_in_shard_one)
        with pytest.raises(WorkerLostError, match="a worker process died"):
            featurize(settings.store_path, settings.audio_dir, settings.audio, layout, workers=2)
    lengths = Store.open(settings.store_path).features("killed").all_lengths()
    assert (lengths[8:16] == PENDING).all()  # shard 1's data may be there; its lengths never came

    rerun = featurize(settings.store_path, settings.audio_dir, settings.audio, layout, workers=2)
    assert rerun.clips_done == int((lengths == PENDING).sum()) and rerun.clips_done >= 8
    store = Store.open(settings.store_path)
    assert np.array_equal(store.features("killed").data[:], store.features("logmel").data[:])
    assert np.array_equal(store.features("killed").all_lengths(), store.features("logmel").all_lengths())


@pytest.mark.parametrize("workers", [1, 2])
def test_the_featurize_bar_moves_per_clip_from_worker_processes_too(small_shards, monkeypatch, workers):
    import contextlib

    import audiotok_cli.stages.featurize as stage

    moves: list[int] = []

    @contextlib.contextmanager
    def recording_bar(description, total, unit="items"):
        yield moves.append

    monkeypatch.setattr(stage, "progress", recording_bar)
    layout = small_shards.features.model_copy(update={"name": f"bar-{workers}"})
    result = featurize(
        small_shards.store_path, small_shards.audio_dir, small_shards.audio, layout, workers=workers
    )
    assert result.shards_written == 6 and sum(moves) == 48
    assert moves == [1] * 48  # one move a clip, not one a shard of 8


def test_vocab_samples_the_same_frames_whatever_the_readers(small_shards):
    store = Store.open(small_shards.store_path)
    features = store.features()
    train = store.split_rows(features.all_lengths(), "train")
    alone = sample_frames(features, train, 300, np.random.default_rng(5), workers=1)
    together = sample_frames(features, train, 300, np.random.default_rng(5), workers=3)
    assert len(features.shards_with(train)) > 3
    for ours, theirs in zip(alone, together, strict=True):
        assert len(ours) > 0 and np.array_equal(ours, theirs)


def test_read_ahead_keeps_order_and_at_most_workers_plus_one_results_waiting():
    started, lock = [], threading.Lock()

    def read(item: int) -> int:
        with lock:
            started.append(item)
        time.sleep(0.01 * (item % 3))  # finish out of order
        return item * 10

    seen = []
    for value in read_ahead(read, range(12), workers=3):
        seen.append(value)
        time.sleep(0.02)  # a slow consumer: reads must not run far ahead of it
        assert len(started) <= len(seen) + 3
    assert seen == [item * 10 for item in range(12)]


def test_tokens_are_a_one_thread_search_whatever_the_cores(tokenized):
    """Frames halfway between two centroids tie, and faiss on several threads breaks ties by how
    it splits the work (~20% of 20,000 midpoints flipped between 1 and 2 threads): tokenize's
    searches run on one thread, so its tokens are the same whatever the core count."""
    store = Store.open(tokenized.store_path)
    features, vocab = store.features(), store.vocab()
    block, lengths = features.read_shard(0)
    frames = block[lengths > 0][:, 0].astype(np.float32)[:32]  # the first frame of 32 clips
    offset = np.random.default_rng(0).normal(size=frames.shape).astype(np.float32)
    centroids = np.concatenate([frames + offset, frames - offset])  # each of those frames is a tie
    update = {"fingerprint": fingerprint(centroids), "n_clusters": len(centroids)}
    with Store.writing(tokenized.store_path, "test") as writer:
        writer.write_vocab(vocab.name, centroids, vocab.record.model_copy(update=update), overwrite=True)
    valid = np.arange(block.shape[1]) < lengths[:, None]
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    faiss.omp_set_num_threads(1)
    try:
        expected = index.search(np.ascontiguousarray(block[valid], dtype=np.float32), 1)[1][:, 0]
    finally:
        faiss.omp_set_num_threads(available_cores())
    assert valid.sum() > 4096  # enough frames for faiss to share them between threads
    before = faiss.omp_get_max_threads()
    tokenize(tokenized.store_path, overwrite=True)
    assert np.array_equal(Store.open(tokenized.store_path).tokens().data[:][valid], expected)
    assert faiss.omp_get_max_threads() == before  # the process keeps its threads for other work


def _blas_threads(shard: int) -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_a_task_run_in_this_process_gets_one_blas_thread_as_a_worker_does():
    """With several, numpy sums the mel matmul in another order: the store would then differ in
    the last bit from one written by worker processes."""
    from audiotok_cli.parallel import run_shards

    before = _blas_threads(0)
    if not before or max(before) < 2:
        pytest.skip("numpy's BLAS runs on one thread here anyway")
    assert [threads for _, threads in run_shards(_blas_threads, [0, 1], workers=1)] == [[1] * len(before)] * 2
    assert _blas_threads(0) == before  # the process keeps its threads


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2: 1.5 CPUs -> 2 threads
        ({"cpu.max": "max 100000\n"}, None),  # unlimited: the affinity
        ({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 1),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({}, None),
    ],
)
def test_the_cores_available_are_capped_by_a_cgroup_cpu_quota(tmp_path, files, expected):
    """Docker's --cpus and Kubernetes' limits set a quota that the affinity does not show: 16
    threads on a 2-CPU quota spend their time descheduled."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert available_cores(tmp_path) == (affinity if expected is None else min(expected, affinity))
