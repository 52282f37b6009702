"""Frame transforms before quantization: what each does to a clip, that vocab, tokenize and predict
apply the same chain, and that bad specs are one line."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from audiotok_cli.audio.logmel import LogMel
from audiotok_cli.audio.transforms import FrameTransforms, LinearMap, valid_float32
from audiotok_cli.errors import SettingsError
from audiotok_cli.settings import AudioSettings
from audiotok_cli.store import Pick, Store
from training_helpers import assert_predict_scores_the_store_tokens


def test_clip_mean_removes_gain_so_a_louder_copy_gives_the_same_vectors():
    rng = np.random.default_rng(0)
    samples = (rng.normal(0, 0.1, 22050) * np.hanning(22050)).astype(np.float32)
    log_mel = LogMel(AudioSettings())
    quiet, loud = log_mel(samples), log_mel(samples * 2)
    assert np.abs(quiet - loud).max() > 5  # 6 dB apart as raw frames
    clip_mean = FrameTransforms(("clip-mean",))
    assert np.allclose(clip_mean(quiet), clip_mean(loud), atol=1e-3)
    normed = FrameTransforms(("clip-norm",))(quiet)
    assert np.allclose(normed.mean(axis=0), 0, atol=1e-4) and np.allclose(normed.std(axis=0), 1, atol=0.01)


def test_deltas_and_context_widen_each_frame_and_keep_the_frame_count():
    frames = np.arange(12, dtype=np.float32).reshape(3, 4)  # 3 frames of 4 bands, rising by 4 a frame
    deltas = FrameTransforms(("deltas",))(frames)
    assert deltas.shape == (3, 12) and np.array_equal(deltas[:, :4], frames)
    assert not np.allclose(deltas[:, 4:8], 0)
    assert np.allclose(FrameTransforms(("deltas",))(np.ones((5, 4)))[:, 4:], 0)  # a still clip: no motion
    context = FrameTransforms(("context:2",))(frames)
    assert context.shape == (3, 20)
    assert np.array_equal(context[1], np.concatenate([frames[0], frames[0], frames[1], frames[2], frames[2]]))
    chain = FrameTransforms(("clip-mean", "deltas", "context:1"))
    assert chain(frames).shape == (3, chain.dim(4)) == (3, 36) and chain.tag() == "clip-mean.deltas.context1"


def test_stored_float16_frames_read_as_numpys_cast_of_every_half_value_and_skip_empty_rows():
    halves = np.arange(2**16, dtype=np.uint16).view(np.float16).reshape(16, 64, 64)  # inf, nan, subnormals
    lengths = np.array([64, 0, 3, -1, *[64] * 12])  # an empty clip and a pending one hold no frames
    frames = valid_float32(halves, lengths)
    expected = np.concatenate([halves[0], halves[2, :3], *halves[4:]]).astype(np.float32)
    assert frames.dtype == np.float32 and frames.shape == expected.shape == (13 * 64 + 3, 64)
    assert np.array_equal(frames.view(np.uint32), expected.view(np.uint32))  # bit for bit, nan payloads too
    assert valid_float32(halves[:2], np.array([0, -1])).shape == (0, 64)


def test_pool_averages_each_m_frames_into_one_and_shortens_the_sequence():
    frames = np.arange(14, dtype=np.float32).reshape(7, 2)
    pooled = FrameTransforms(("pool:3",))(frames)
    assert np.allclose(
        pooled, [frames[0:3].mean(axis=0), frames[3:6].mean(axis=0), frames[6]]
    )  # the last: what is left
    chain = FrameTransforms(("clip-mean", "pool:3", "deltas"))
    assert chain(frames).shape == (3, 6) and chain.shortens and not FrameTransforms(("deltas",)).shortens
    assert chain.lengths(np.array([7, 6, 1, -1])).tolist() == [3, 2, 1, -1]  # pending stays pending


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "bogus",
            "unknown transform 'bogus'; choose from "
            "clip-mean, clip-norm, deltas, context:N, pool:M, cmvn, pca:D",
        ),
        ("pool:0", "transform 'pool:0': write it pool:N with N a whole number from 1"),
        ("pca", "transform 'pca': write it pca:N with N a whole number"),
        ("context", "transform 'context': write it context:N with N a whole number"),
        ("deltas:2", "transform 'deltas:2': write it deltas"),
    ],
)
def test_bad_transforms_are_refused_in_one_line(cli, spec, message):
    result = cli("vocab", "--transform", spec)
    assert result.exit_code == 3 and message in result.stderr


def test_fitted_transforms_standardise_and_project_with_the_train_frames_alone():
    rng = np.random.default_rng(0)
    frames = (rng.normal(size=(4000, 6)) * [5, 3, 2, 1, 0.5, 0.1] + [10, -3, 0, 1, 2, 3]).astype(np.float32)
    cmvn = FrameTransforms(("cmvn",)).fit(frames)
    standard = cmvn(frames)
    assert np.allclose(standard.mean(axis=0), 0, atol=1e-4) and np.allclose(
        standard.std(axis=0), 1, atol=0.02
    )
    pca = FrameTransforms(("pca:3",)).fit(frames)
    projected = pca(frames)
    assert projected.shape == (4000, 3)
    variances = projected.var(axis=0)
    assert variances[0] > variances[1] > variances[2] and variances[0] == pytest.approx(25, rel=0.1)
    full = FrameTransforms(("pca:6",)).fit(frames)
    assert np.allclose(full.back(full(frames)), frames, atol=1e-3)  # a full-rank PCA loses nothing
    chain = FrameTransforms(("clip-mean", "cmvn", "pca:2"))
    assert chain.dim(6) == 2 and chain.fitted == ("cmvn", "pca:2")
    both = chain.fit(frames)  # fitted in order, composed into one map
    stepwise = FrameTransforms(("pca:2",)).fit(cmvn(frames))
    assert np.allclose(both(frames), stepwise(cmvn(frames)), atol=1e-4)
    assert np.array_equal(chain(frames[:5]), frames[:5] - frames[:5].mean(axis=0))  # per-clip part only
    with pytest.raises(SettingsError, match="write cmvn and pca:D last"):
        FrameTransforms(("cmvn", "deltas"))
    with pytest.raises(SettingsError, match="pca:9: the frames it gets have 6 dimensions"):
        FrameTransforms(("pca:9",)).fit(frames)


@pytest.mark.parametrize(
    ("chain", "dim"),
    [(("clip-mean", "deltas"), 3 * 64), (("clip-mean", "cmvn", "pca:12"), 12), (("clip-mean", "pool:4"), 64)],
    ids=["per-clip", "fitted", "pooled"],
)
def test_vocab_tokenize_and_predict_apply_the_same_chain(cli, featurized, small_mirrors, chain, dim):
    result = cli("vocab", "--k", "16", *[part for spec in chain for part in ("--transform", spec)])
    assert result.exit_code == 0, result.output
    name = f"logmel-{FrameTransforms(chain).tag()}-k16"
    assert f"vocab {name!r}" in result.stdout
    store = Store.open(featurized.store_path)
    vocab = store.vocab(Pick(name))
    assert vocab.record.transforms == list(chain) and vocab.centroids.shape == (16, dim)
    frame_map = LinearMap.from_arrays(vocab.fitted)
    assert (frame_map is None) == ("cmvn" not in chain)
    assert cli("tokenize", "--vocab", name).exit_code == 0

    tokens = Store.open(featurized.store_path).tokens(Pick(name))
    features = store.features()
    frames, lengths = features.read_shard(0)
    ids, steps = tokens.read_shard(0)
    shorter = "pool:4" in chain
    assert np.array_equal(steps, -(-lengths // 4) if shorter else lengths)  # pool:4: a token per 4 frames
    index = faiss.IndexFlatL2(vocab.centroids.shape[1])
    index.add(vocab.centroids)
    for row in np.flatnonzero(lengths > 0)[:4]:
        vectors = FrameTransforms(chain)(frames[row, : lengths[row]])
        _, nearest = index.search(frame_map(vectors) if frame_map else vectors, 1)
        assert np.array_equal(ids[row, : steps[row]], nearest[:, 0]) and (ids[row, steps[row] :] == -1).all()

    trained = cli("train", "--model", "simple", "--vocab", name, "--epochs", "1")
    assert trained.exit_code == 0, trained.output
    run = featurized.runs_dir / f"simple-{name}"
    file = sorted((featurized.audio_dir / "eval").rglob("*.flac"))[0]
    tokens = Store.open(featurized.store_path).tokens(Pick(name))
    assert_predict_scores_the_store_tokens(cli, run, tokens, store, file)  # the same chain, applied
    runs = cli("runs")
    assert f"tokens {name}" in runs.stdout
