"""Frame models on real store batches: standardised frames with exact zero padding, statistics from
the train split, each model trained for real beating the label prior, runs that stand alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audiotok_cli.audio.transforms import FrameTransforms
from audiotok_cli.store import Store
from audiotok_cli.training.data import BatchReader, ModelInputs, frame_statistics
from audiotok_cli.training.runs import load_run


def test_frame_batches_are_standardised_by_train_statistics_with_zero_padding(featurized):
    store = Store.open(featurized.store_path)
    features = store.features()
    lengths = features.all_lengths()
    train = store.split_rows(lengths, "train")
    mean, std = frame_statistics(features, train)
    block = features.data[:]
    valid = (np.arange(block.shape[1]) < lengths[:, None]) & train[:, None]
    frames = block[valid].astype(np.float64)
    assert np.allclose(mean, frames.mean(axis=0), atol=1e-3) and np.allclose(
        std, frames.std(axis=0), rtol=1e-3
    )

    inputs = ModelInputs(features, "frames", mean, std)
    for batch in BatchReader(store, inputs).batches(train, batch_size=7):
        x = batch.inputs.numpy()
        for i, (row, length) in enumerate(zip(batch.rows, batch.lengths.tolist(), strict=True)):
            expected = (block[row, :length].astype(np.float32) - mean) / std
            assert np.allclose(x[i, :length], expected, atol=1e-5)
            assert not x[i, length:].any()  # padding is exactly zero after standardising


@pytest.mark.parametrize(
    ("args", "run"),
    [
        (["--model", "baseline", "--lr", "3e-3"], "baseline-logmel"),
        (["--model", "cnn", "--cnn-channels", "16,32,64", "--lr", "3e-3"], "cnn-logmel"),
        (["--model", "bert", "--input", "frames", "--hidden-size", "32", "--num-heads", "2"], "bert-logmel"),
        (["--model", "baseline", "--conv-kernels", "32", "--conv-size", "5", "--run-name", "conv"], "conv"),
    ],
    ids=["baseline", "cnn", "bert-frames", "conv-front-end"],
)
def test_each_frame_model_trains_and_beats_the_label_prior(cli, featurized, args, run):
    assert cli("split", "--val-ratio", "0.25").exit_code == 0
    trained = cli("train", *args, "--epochs", "10", "--batch-size", "8")
    assert trained.exit_code == 0, trained.output
    assert f"runs/{run}: best val mAP" in trained.stdout and "epoch 10/10" in trained.stdout
    report = cli("eval", "--run", run, "--json")
    assert report.exit_code == 0, report.output
    test = json.loads(report.stdout)["splits"]["test"]
    assert test["mAP"] > test["prior_mAP"] + 0.15, test

    loaded = load_run(featurized.runs_dir / run)  # frames are standardised the same way anywhere
    assert loaded.record.inputs.input == "frames" and loaded.record.inputs.tokens is None
    assert set(loaded.preprocessing) == {"mean", "std"} and loaded.preprocessing["mean"].shape == (64,)


def test_a_frame_model_refuses_a_vocabulary_pick(cli, featurized):
    result = cli("train", "--model", "cnn", "--k", "16")
    assert result.exit_code == 3
    assert "--vocab and --k choose tokens, and model 'cnn' reads frames here" in result.stderr
    wrong = cli("train", "--model", "lstm", "--input", "frames")
    assert wrong.exit_code == 3 and "model 'lstm' reads tokens, not frames" in wrong.stderr


def test_frame_models_take_the_per_clip_transforms_tokens_get(cli, featurized):
    """A fair comparison: `vocab --transform clip-mean` tokens beat raw frames on unseen speakers,
    so the frame models can have the same per-clip normalisation: in training, eval and predict."""
    trained = cli(
        "train", "--model", "baseline", "--frame-transform", "clip-mean", "--frame-transform", "deltas",
        "--epochs", "2", "--batch-size", "8",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    run = load_run(featurized.runs_dir / "baseline-logmel")
    assert run.record.inputs.transforms == ["clip-mean", "deltas"] and run.record.model.n_mels == 3 * 64
    chain = FrameTransforms(("clip-mean", "deltas"))
    store = Store.open(featurized.store_path)
    features = store.features()
    lengths = features.all_lengths()
    train = store.split_rows(lengths, "train")
    block = features.data[:]
    frames = np.concatenate([chain(block[row, : lengths[row]]) for row in np.flatnonzero(train)])
    assert np.allclose(run.preprocessing["mean"], frames.mean(axis=0), atol=1e-3)
    assert np.allclose(run.preprocessing["std"], frames.std(axis=0), rtol=1e-3, atol=1e-4)

    file = sorted((featurized.audio_dir / "eval").rglob("*.flac"))[0]
    predicted = cli(
        "predict", str(featurized.runs_dir / "baseline-logmel"), str(file), "--json", "--top", "2"
    )
    assert predicted.exit_code == 0, predicted.output
    row = store.row_of[file.stem]
    inputs = (chain(block[row, : lengths[row]]) - run.preprocessing["mean"]) / run.preprocessing["std"]
    with torch.no_grad():
        expected = torch.sigmoid(
            run.model.eval()(torch.from_numpy(inputs[None]), torch.tensor([lengths[row]]))
        )[0]
    for name, score in json.loads(predicted.stdout)["files"][0]["top"]:
        assert score == pytest.approx(float(expected[run.classes.names.index(name)]), abs=1e-4)
    shown = cli("runs")
    assert "frames logmel clip-mean deltas" in shown.stdout

    refused = cli("train", "--model", "lstm", "--frame-transform", "clip-mean")
    assert refused.exit_code == 3 and "tokens take theirs from `vocab --transform`" in refused.stderr
    fitted = cli("train", "--model", "cnn", "--frame-transform", "cmvn")
    assert fitted.exit_code == 3 and "frame models standardise each band already" in fitted.stderr
    pooled = cli("train", "--model", "baseline", "--frame-transform", "pool:2")
    assert pooled.exit_code == 3 and "pool:M is for tokens (vocab --transform)" in pooled.stderr
