from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import audiotok_cli.train as train_module
from audiotok_cli.errors import MismatchError, OutputExistsError
from audiotok_cli.runs import CHECKPOINT, RECORD
from audiotok_cli.settings import load_settings
from audiotok_cli.tokenize import tokenize
from audiotok_cli.train import train
from audiotok_cli.vocab import build_vocab


def _settings(featurized, run_name: str, **train_settings):
    return load_settings(
        {
            "paths": {"mirror_dir": featurized.mirror_dir},
            "vocab": {"n_clusters": 16},
            "model": {"kind": "simple", "embed_dim": 16},
            "train": {"epochs": 3, "batch_size": 8, "run_name": run_name, **train_settings},
        }
    )


def _crash_in_epoch_two(settings, monkeypatch) -> None:
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
            train(settings)


def test_an_interrupted_run_resumes_and_ends_as_an_uninterrupted_one(featurized, monkeypatch):
    build_vocab(featurized)
    tokenize(featurized)
    whole = train(_settings(featurized, "whole"))

    cut = _settings(featurized, "cut")
    _crash_in_epoch_two(cut, monkeypatch)
    record = json.loads((whole.run_dir.parent / "cut" / RECORD).read_text())
    assert [e["epoch"] for e in record["history"]] == [1] and record["complete"] is False

    resumed = train(cut)
    assert [e["epoch"] for e in resumed.history] == [1, 2, 3]
    assert [e["val_mAP"] for e in resumed.history] == pytest.approx([e["val_mAP"] for e in whole.history])
    ours, theirs = load_file(resumed.run_dir / CHECKPOINT), load_file(whole.run_dir / CHECKPOINT)
    assert ours.keys() == theirs.keys() and any(k.startswith("optim.") for k in ours)
    for name in ours:
        assert torch.allclose(ours[name], theirs[name], atol=1e-6), name

    with pytest.raises(OutputExistsError, match="--overwrite"):
        train(cut)


def test_an_interrupted_run_with_other_settings_is_refused(featurized, monkeypatch):
    build_vocab(featurized)
    tokenize(featurized)
    _crash_in_epoch_two(_settings(featurized, "run"), monkeypatch)
    with pytest.raises(MismatchError, match="interrupted but made with other settings"):
        train(_settings(featurized, "run", learning_rate=0.01))
    assert len(train(_settings(featurized, "run", learning_rate=0.01), overwrite=True).history) == 3
