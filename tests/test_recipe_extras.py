"""Recipe options beyond the schedule: the balanced sampler, mixup, SpecAugment and token masks,
weight averaging of the last epochs, and what a run shows (metrics.jsonl, curves.png, TensorBoard),
each checked against what it should compute."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import audiotok_cli.training.loop as loop
from audiotok_cli.settings import ModelSettings, TrainSettings
from audiotok_cli.store import Store
from audiotok_cli.training.augment import Augment, _Mix, mixing_embeddings
from audiotok_cli.training.data import BatchReader, ModelInputs, balanced_weights
from audiotok_cli.training.models.ids import MASK_ID, PAD_ID
from audiotok_cli.training.models.pooled import MeanPoolClassifier
from audiotok_cli.training.request import RunRequest
from audiotok_cli.training.runs import CHECKPOINT, WEIGHTS
from training_helpers import assert_same_tensors, killed_in_epoch_two


def _augment(**options) -> Augment:
    defaults = {"mixup": 0.0, "time_mask": 0, "freq_mask": 0, "token_mask": 0.0, "mask_span": 1}
    return Augment(**(defaults | options))


def _class_counts(store: Store, rows: np.ndarray) -> np.ndarray:
    return store.labels()[rows].sum(axis=0)


def test_the_balanced_sampler_moves_class_frequencies_toward_uniform(small_shards):
    store = Store.open(small_shards.store_path)
    reader = BatchReader(store, ModelInputs(store.tokens(), "tokens"))
    labels = store.labels()
    train = store.split_rows(reader.lengths, "train")
    common = int(np.argmax(labels[train].sum(axis=0)))
    skewed = train & (labels[:, common] | (np.cumsum(train) % 4 == 0))  # few clips without it
    present = labels[skewed].sum(axis=0) > 0

    def spread(counts: np.ndarray) -> float:  # largest over smallest class count among the present
        return counts[present].max() / max(counts[present].min(), 1)

    weights = balanced_weights(reader.labels, skewed)
    assert not weights[~skewed].any() and (weights[skewed] > 0).all()
    drawn = np.concatenate(
        [
            b.rows
            for seed in range(30)
            for b in reader.batches(skewed, 8, np.random.default_rng(seed), weights)
        ]
    )
    assert len(drawn) == 30 * skewed.sum() and set(drawn) <= set(np.flatnonzero(skewed))
    uniform = _class_counts(store, skewed)
    balanced = labels[drawn].sum(axis=0)
    assert spread(balanced) < 0.7 * spread(uniform), (spread(balanced), spread(uniform))
    rarest = present & (uniform == uniform[present].min())
    assert (balanced[rarest] / 30 > 1.5 * uniform[rarest]).all()  # drawn more often than present


def test_frame_mixup_mixes_frames_labels_and_lengths_with_the_same_weights():
    frames, lengths = torch.randn(6, 10, 4), torch.tensor([10, 7, 3, 10, 5, 8])
    labels = torch.eye(6, 527)
    torch.manual_seed(0)
    mixed, mixed_lengths, mixed_labels, mix = _augment(mixup=0.4).batch(frames, lengths, labels)
    assert mix is None  # frames are mixed here, not in the model
    torch.manual_seed(0)
    drawn = _Mix.draw(0.4, 6, torch.device("cpu"))
    w = drawn.weight
    assert torch.allclose(mixed, w[:, None, None] * frames + (1 - w[:, None, None]) * frames[drawn.partner])
    assert torch.equal(mixed_lengths, torch.maximum(lengths, lengths[drawn.partner]))
    assert torch.allclose(mixed_labels.sum(dim=1), torch.ones(6))  # convex combinations of one-hots
    assert torch.allclose(
        mixed_labels[torch.arange(6), torch.arange(6)] + (drawn.partner == torch.arange(6)) * 0,
        w + (1 - w) * (drawn.partner == torch.arange(6)),
    )


def test_token_mixup_mixes_the_embeddings_inside_the_model():
    torch.manual_seed(0)
    model = MeanPoolClassifier(n_tokens=12, embed_dim=5, dropout=0.0, n_classes=527).eval()
    ids, lengths = torch.randint(4, 16, (4, 6)), torch.full((4,), 6)
    mix = _Mix(torch.tensor([0.2, 0.5, 0.9, 1.0]), torch.tensor([1, 0, 3, 2]))
    with mixing_embeddings(model, mix):
        logits = model(ids, lengths)
    embedded = model.embed(ids)
    pooled = mix(embedded).mean(dim=1)
    assert torch.allclose(logits, model.head(pooled), atol=1e-6)
    assert torch.allclose(model(ids, lengths), model.head(embedded.mean(dim=1)), atol=1e-6)  # hook removed


def test_spec_augment_masks_within_true_frames_and_bounded_widths():
    torch.manual_seed(1)
    frames, lengths = torch.randn(8, 20, 16) + 5, torch.tensor([20, 12, 5, 20, 9, 20, 1, 15])
    frames *= (torch.arange(20)[None, :] < lengths[:, None])[..., None]
    masked, *_ = _augment(time_mask=4, freq_mask=3).batch(frames, lengths, torch.zeros(8, 527))
    for clip, length in enumerate(lengths.tolist()):
        zero_steps = (masked[clip, :length] == 0).all(dim=1).nonzero().flatten()
        zero_bands = (masked[clip, :length] == 0).all(dim=0).nonzero().flatten()
        for zeros, widest in ((zero_steps, 4), (zero_bands, 3)):
            if len(zeros) and len(zeros) < (length if widest == 4 else 16):
                assert len(zeros) <= widest and zeros.tolist() == list(range(zeros[0], zeros[0] + len(zeros)))
        assert not masked[clip, length:].any()  # padding untouched


def test_token_masks_cover_spans_and_never_padding():
    torch.manual_seed(2)
    ids = torch.randint(4, 68, (64, 200))
    ids[:, 150:] = PAD_ID
    masked = _augment(token_mask=0.3, mask_span=4)._masked_tokens(ids)
    is_mask = masked == MASK_ID
    assert not is_mask[:, 150:].any() and torch.equal(masked[~is_mask], ids[~is_mask])
    assert 0.2 < is_mask[:, :150].float().mean() < 0.35
    runs = [
        len(run)
        for row in is_mask[:, :150].tolist()
        for run in "".join("x" if m else " " for m in row).split()
    ]
    assert min(runs) >= 1 and np.mean(runs) >= 3  # spans, mostly of at least mask_span tokens


def test_masks_for_the_other_input_kind_are_refused(cli, tokenized):
    result = cli("train", "--model", "simple", "--time-mask", "8", "--epochs", "1")
    assert result.exit_code == 3
    assert "--time-mask applies to models that read frames, not tokens" in result.stderr
    result = cli("train", "--model", "baseline", "--token-mask", "0.1", "--epochs", "1")
    assert result.exit_code == 3 and "--token-mask applies to models that read tokens" in result.stderr


def _train(settings, name: str, **options):
    train = TrainSettings(batch_size=8, run_name=name, **options)
    return loop.train(
        RunRequest(settings.resolved_paths, ModelSettings(kind="simple", embed_dim=8), train, seed=0)
    )


RECIPE = {
    "epochs": 3, "schedule": "cosine", "warmup_steps": 2, "accumulate": 2, "mixup": 0.4, "token_mask": 0.1,
    "mask_span": 2, "sampler": "balanced", "average_last": 2, "tensorboard": True,
}  # fmt: skip


def test_a_resumed_run_with_every_recipe_option_equals_an_uninterrupted_one(tokenized, monkeypatch):
    whole = _train(tokenized, "whole", **RECIPE)
    killed_in_epoch_two(monkeypatch, lambda: _train(tokenized, "cut", **RECIPE))
    resumed = _train(tokenized, "cut", **RECIPE)
    assert [e["val_mAP"] for e in resumed.history] == pytest.approx([e["val_mAP"] for e in whole.history])
    for name in (CHECKPOINT, WEIGHTS):
        assert_same_tensors(resumed.run_dir / name, whole.run_dir / name)
    ours, theirs = (_lines(run.run_dir, "step") for run in (resumed, whole))
    assert [(s["step"], s["epoch"]) for s in ours] == [(s["step"], s["epoch"]) for s in theirs]
    assert [s["learning_rate"] for s in ours] == pytest.approx([s["learning_rate"] for s in theirs])


def test_the_model_of_an_averaged_run_is_the_mean_of_its_last_epochs(tokenized):
    run = _train(tokenized, "averaged", epochs=3, average_last=2)
    recent = sorted((run.run_dir / "recent").glob("*.safetensors"))
    assert [path.name for path in recent] == ["epoch-0002.safetensors", "epoch-0003.safetensors"]
    two, three = (load_file(path) for path in recent)
    model = load_file(run.run_dir / WEIGHTS)
    for name in model:
        assert torch.allclose(model[name], (two[name] + three[name]) / 2, atol=1e-6), name
    assert run.averaged.epochs == [2, 3] and 0 < run.averaged.score <= 1
    last = load_file(run.run_dir / CHECKPOINT)  # training goes on from the last epoch, not the mean
    assert torch.equal(last["model.head.weight"], three["head.weight"])


def _lines(run_dir, kind: str) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line["kind"] == kind]


def test_a_run_shows_its_numbers_in_metrics_curves_and_tensorboard(tokenized):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _train(tokenized, "shown", epochs=2, tensorboard=True)
    epochs = _lines(run.run_dir, "epoch")
    assert [{k: v for k, v in e.items() if k != "kind"} for e in epochs] == run.history
    steps = _lines(run.run_dir, "step")
    assert [s["step"] for s in steps] == list(range(int(run.history[-1]["step"])))
    assert all(e["samples_per_s"] > 0 and e["reader_samples_per_s"] > 0 for e in run.history)

    png = Image.open(run.run_dir / "curves.png")
    assert png.size[0] > 600 and json.loads(png.text["audiotok"]) == run.history

    board = EventAccumulator(str(run.run_dir / "tensorboard"))
    board.Reload()
    val = [event.value for event in board.Scalars("epoch/val_mAP")]
    assert val == pytest.approx([e["val_mAP"] for e in run.history])
    losses = [event.value for event in board.Scalars("train/loss")]
    assert losses == pytest.approx([s["loss"] for s in steps])


def test_the_curves_mark_the_kept_epoch_and_tick_whole_epochs():
    from audiotok_cli.training.monitor import curves_figure

    history = [
        {"epoch": e, "step": 4 * e, "train_loss": 1 / e, "val_mAP": m, "learning_rate": 1e-3}
        for e, m in zip(range(1, 6), [0.2, 0.5, 0.4, 0.5, 0.3], strict=True)
    ]
    steps = [(s, 1.0, 1e-3) for s in range(20)]
    figure = curves_figure(steps, history)
    figure.canvas.draw()
    score = figure.axes[1]
    marker = next(line for line in score.get_lines() if line.get_label().startswith("best epoch"))
    assert marker.get_label() == "best epoch 2" and list(marker.get_xdata()) == [2, 2]  # the first of equals
    ticks = [tick for tick in score.get_xticks() if 1 <= tick <= 5]
    assert ticks and all(float(tick).is_integer() for tick in ticks)
    loss, _, rate = figure.axes  # two panels: the rate is the loss panel's second axis, not a third
    assert rate.get_ylabel() == "learning rate" and rate.get_position().bounds == loss.get_position().bounds
    pretraining = [{**e, "val_loss": 5.0 - min(e["epoch"], 2) - (e["epoch"] == 3)} for e in history]
    for entry in pretraining:
        del entry["val_mAP"]
    assert any(
        line.get_label() == "best epoch 3" for line in curves_figure(steps, pretraining).axes[1].get_lines()
    )


def test_training_runs_on_the_threads_asked_and_gives_the_process_its_own_back(tokenized):
    before, seen = torch.get_num_threads(), []
    train = TrainSettings(epochs=2, batch_size=8, run_name="one-thread", threads=1)
    run = loop.train(
        RunRequest(
            tokenized.resolved_paths,
            ModelSettings(kind="simple", embed_dim=8),
            train,
            seed=0,
            on_epoch=lambda *epoch: seen.append(torch.get_num_threads()),
        ),
    )
    assert seen == [1, 1] and torch.get_num_threads() == before
    record = json.loads((run.run_dir / "run.json").read_text())
    assert "threads" not in record["train"]  # not what shapes the run: a rerun on other threads resumes it
    assert record["threads"] == 1  # but recorded: BERT's and the CNN's last bits depend on it
