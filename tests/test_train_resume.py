from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

import audiotok_cli.training.loop as train_module
from audiotok_cli.errors import MismatchError, OutputExistsError
from audiotok_cli.settings import ModelSettings, TrainSettings, VocabSettings
from audiotok_cli.stages.tokenize import tokenize
from audiotok_cli.stages.vocab import build_vocab
from audiotok_cli.training.request import RunRequest
from audiotok_cli.training.runs import CHECKPOINT, RECORD
from training_helpers import assert_same_tensors, killed_in_epoch_two


def _tokenized(featurized):
    build_vocab(featurized.store_path, VocabSettings(n_clusters=16), seed=0)
    tokenize(featurized.store_path)


def train(featurized, run_name: str, overwrite: bool = False, **train_settings):
    return train_module.train(
        RunRequest(
            featurized.resolved_paths,
            ModelSettings(kind="simple", embed_dim=16),
            TrainSettings(epochs=3, batch_size=8, run_name=run_name, **train_settings),
            seed=0,
            overwrite=overwrite,
        ),
    )


def test_an_interrupted_run_resumes_and_ends_as_an_uninterrupted_one(featurized, monkeypatch, caplog):
    _tokenized(featurized)
    whole = train(featurized, "whole")

    killed_in_epoch_two(monkeypatch, lambda: train(featurized, "cut"))
    record = json.loads((whole.run_dir.parent / "cut" / RECORD).read_text())
    assert [e["epoch"] for e in record["history"]] == [1] and record["complete"] is False

    resumed = train(featurized, "cut")
    assert f"resuming {resumed.run_dir} after epoch 1 of 3" in caplog.text
    assert [e["epoch"] for e in resumed.history] == [1, 2, 3]
    assert [e["val_mAP"] for e in resumed.history] == pytest.approx([e["val_mAP"] for e in whole.history])
    assert any(k.startswith("optim.") for k in load_file(resumed.run_dir / CHECKPOINT))
    assert_same_tensors(resumed.run_dir / CHECKPOINT, whole.run_dir / CHECKPOINT)

    with pytest.raises(OutputExistsError, match="--overwrite"):
        train(featurized, "cut")


def test_an_interrupted_run_with_other_settings_is_refused(featurized, monkeypatch):
    _tokenized(featurized)
    killed_in_epoch_two(monkeypatch, lambda: train(featurized, "run"))
    with pytest.raises(
        MismatchError, match=r"made with other settings \(train.learning_rate 0.001 there, 0.01 asked\)"
    ):
        train(featurized, "run", learning_rate=0.01)
    assert len(train(featurized, "run", overwrite=True, learning_rate=0.01).history) == 3


def test_default_names_never_collide_and_an_interrupted_default_run_still_resumes(featurized, monkeypatch):
    _tokenized(featurized)
    runs = featurized.resolved_paths.runs_dir
    killed_in_epoch_two(monkeypatch, lambda: train(featurized, None))
    resumed = train(featurized, None)  # the interrupted run of these settings, not a new one
    assert resumed.run_dir == runs / "simple-logmel-k16" and len(resumed.history) == 3
    second = train(featurized, None)  # the first is finished: the next free name
    assert second.run_dir == runs / "simple-logmel-k16-2"
    other = train(featurized, None, learning_rate=0.01)
    assert other.run_dir == runs / "simple-logmel-k16-lr0.01"  # named for what differs
    assert json.loads((other.run_dir / RECORD).read_text())["train"]["learning_rate"] == 0.01
    with pytest.raises(OutputExistsError, match="already trained with these settings; pass --overwrite"):
        train(featurized, "simple-logmel-k16")
