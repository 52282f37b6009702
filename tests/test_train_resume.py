from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import audiotok_cli.training.loop as train_module
from audiotok_cli.errors import MismatchError, OutputExistsError
from audiotok_cli.settings import ModelSettings, TrainSettings, VocabSettings
from audiotok_cli.stages.tokenize import tokenize
from audiotok_cli.stages.vocab import build_vocab
from audiotok_cli.training.runs import CHECKPOINT, RECORD


def _tokenized(featurized):
    build_vocab(featurized.store_path, VocabSettings(n_clusters=16), seed=0)
    tokenize(featurized.store_path)


def train(featurized, run_name: str, overwrite: bool = False, **train_settings):
    return train_module.train(
        featurized.resolved_paths,
        ModelSettings(kind="simple", embed_dim=16),
        TrainSettings(epochs=3, batch_size=8, run_name=run_name, **train_settings),
        seed=0,
        overwrite=overwrite,
    )


def _crash_in_epoch_two(featurized, run_name, monkeypatch) -> None:
    """Train until epoch 2's validation, then die as a Ctrl-C would."""
    real_map, calls = train_module.mean_average_precision, []

    def crash_in_epoch_two(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_map(*args)

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "mean_average_precision", crash_in_epoch_two)
        with pytest.raises(KeyboardInterrupt):
            train(featurized, run_name)


def test_an_interrupted_run_resumes_and_ends_as_an_uninterrupted_one(featurized, monkeypatch):
    _tokenized(featurized)
    whole = train(featurized, "whole")

    _crash_in_epoch_two(featurized, "cut", monkeypatch)
    record = json.loads((whole.run_dir.parent / "cut" / RECORD).read_text())
    assert [e["epoch"] for e in record["history"]] == [1] and record["complete"] is False

    resumed = train(featurized, "cut")
    assert [e["epoch"] for e in resumed.history] == [1, 2, 3]
    assert [e["val_mAP"] for e in resumed.history] == pytest.approx([e["val_mAP"] for e in whole.history])
    ours, theirs = load_file(resumed.run_dir / CHECKPOINT), load_file(whole.run_dir / CHECKPOINT)
    assert ours.keys() == theirs.keys() and any(k.startswith("optim.") for k in ours)
    for name in ours:
        assert torch.allclose(ours[name], theirs[name], atol=1e-6), name

    with pytest.raises(OutputExistsError, match="--overwrite"):
        train(featurized, "cut")


def test_an_interrupted_run_with_other_settings_is_refused(featurized, monkeypatch):
    _tokenized(featurized)
    _crash_in_epoch_two(featurized, "run", monkeypatch)
    with pytest.raises(MismatchError, match="interrupted but made with other settings"):
        train(featurized, "run", learning_rate=0.01)
    assert len(train(featurized, "run", overwrite=True, learning_rate=0.01).history) == 3
