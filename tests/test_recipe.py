"""Training recipes: the schedule's learning rate follows its formula, early stopping stops at the
right epoch with the best weights, and a resumed run with a schedule, accumulation and clipping ends
equal to an uninterrupted one."""

from __future__ import annotations

import json
import math

import pytest

import audiotok_cli.training.loop as loop
from audiotok_cli.errors import OutputExistsError
from audiotok_cli.settings import ModelSettings, TrainSettings
from audiotok_cli.store import Store
from audiotok_cli.training.request import RunRequest
from audiotok_cli.training.runs import CHECKPOINT, RECORD, WEIGHTS
from audiotok_cli.training.schedule import lr_factor, warmup_steps
from training_helpers import assert_same_tensors, killed_in_epoch_two


def test_schedules_follow_their_formulas():
    total, warm = 100, 10
    assert [lr_factor(s, total, warm, "cosine") for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, total, warm, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, total, warm, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lr_factor(99, total, warm, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert lr_factor(55, total, warm, "linear") == pytest.approx(1 - 45 / 90)
    assert lr_factor(80, total, 0, "constant") == 1.0
    assert warmup_steps(200, 0, 0.05) == 10 and warmup_steps(200, 7, 0.05) == 7


def _train(settings, name: str, **options):
    train = TrainSettings(batch_size=8, run_name=name, **options)
    return loop.train(
        RunRequest(settings.resolved_paths, ModelSettings(kind="simple", embed_dim=8), train, seed=0)
    )


def test_the_learning_rate_of_each_epoch_is_the_schedules(tokenized):
    run = _train(tokenized, "cosine", epochs=3, schedule="cosine", warmup_steps=2, learning_rate=0.01)
    store = Store.open(tokenized.store_path)
    n_train = int(store.split_rows(store.tokens().all_lengths(), "train").sum())
    steps = math.ceil(n_train / 8)  # optimizer steps per epoch at batch 8
    last = [entry["learning_rate"] for entry in run.history]
    expected = [0.01 * lr_factor(epoch * steps - 1, 3 * steps, 2, "cosine") for epoch in (1, 2, 3)]
    assert last == pytest.approx(expected)


def test_early_stopping_stops_at_the_right_epoch_and_keeps_the_best_weights(tokenized, monkeypatch):
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.4, 0.9])  # best at epoch 2, then two epochs without better
    monkeypatch.setattr(loop, "mean_average_precision", lambda *args: next(scores))
    saved = []
    real_save = loop.save_best
    monkeypatch.setattr(loop, "save_best", lambda d, m: (saved.append(len(saved)), real_save(d, m))[1])
    run = _train(tokenized, "patient", epochs=6, patience=2)
    assert [e["epoch"] for e in run.history] == [1, 2, 3, 4] and run.best_epoch == 2
    record = json.loads((run.run_dir / RECORD).read_text())
    assert record["complete"] is True and record["best_epoch"] == 2
    assert len(saved) == 2  # epochs 1 and 2 improved; the weights on disk are epoch 2's
    with pytest.raises(OutputExistsError):  # a run that stopped early is complete
        _train(tokenized, "patient", epochs=6, patience=2)


def test_a_resumed_run_with_a_schedule_and_accumulation_equals_an_uninterrupted_one(tokenized, monkeypatch):
    options = {"epochs": 3, "schedule": "linear", "warmup_ratio": 0.2, "accumulate": 2, "clip_grad_norm": 0.5}
    whole = _train(tokenized, "whole", **options)
    killed_in_epoch_two(monkeypatch, lambda: _train(tokenized, "cut", **options))
    resumed = _train(tokenized, "cut", **options)
    rates = [e["learning_rate"] for e in whole.history]
    assert [e["learning_rate"] for e in resumed.history] == pytest.approx(rates)
    assert [e["val_mAP"] for e in resumed.history] == pytest.approx([e["val_mAP"] for e in whole.history])
    for name in (CHECKPOINT, WEIGHTS):
        assert_same_tensors(resumed.run_dir / name, whole.run_dir / name)


def test_a_resumed_frame_model_run_equals_an_uninterrupted_one(tokenized, monkeypatch):
    def run(name: str):
        model = ModelSettings(kind="baseline", hidden_size=16)
        train = TrainSettings(batch_size=8, run_name=name, epochs=3, schedule="cosine", warmup_steps=1)
        return loop.train(RunRequest(tokenized.resolved_paths, model, train, seed=0))

    whole = run("frames-whole")
    killed_in_epoch_two(monkeypatch, lambda: run("frames-cut"))
    resumed = run("frames-cut")
    assert [e["val_mAP"] for e in resumed.history] == pytest.approx([e["val_mAP"] for e in whole.history])
    assert_same_tensors(resumed.run_dir / CHECKPOINT, whole.run_dir / CHECKPOINT)
