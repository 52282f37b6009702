from __future__ import annotations

import numpy as np
import pytest
import torch

from audiotok_cli.class_lists import AUDIOSET_N_CLASSES
from audiotok_cli.training.metrics import (
    classification_metrics,
    d_prime,
    mean_average_precision,
    per_class_ap,
    prior_scores,
    tune_thresholds,
)
from audiotok_cli.training.models import build_model
from audiotok_cli.training.models.ids import CLS_ID, MASK_ID, N_SPECIAL, PAD_ID, SEP_ID, to_model_ids
from audiotok_cli.training.models.lstm import reverse_valid
from audiotok_cli.training.models.spec import ModelSpec


def _model(kind: str, max_frames: int = 431, input: str = "tokens", **options):
    spec = ModelSpec(
        kind=kind,
        input=input,
        n_tokens=8 if input == "tokens" else 0,
        n_mels=12 if input == "frames" else 0,
        max_frames=max_frames,
        embed_dim=16,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        dropout=0.0,
        cnn_channels=(8, 16, 16),
        **options,
    )
    torch.manual_seed(0)
    model = build_model(spec)
    if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):  # give eval mode real statistics
        model.train()
        with torch.no_grad():
            model(torch.randn(4, 40, 12), torch.tensor([40, 30, 20, 9]))
    return model.eval()


FRAME_MODELS = [
    ("baseline", {}),
    ("cnn", {}),
    ("bert", {}),
    ("baseline", {"conv_kernels": 6, "conv_size": 5}),
    ("cnn", {"conv_kernels": 6, "conv_size": 3}),
    ("bert", {"conv_kernels": 6, "conv_size": 3}),
]


@pytest.mark.parametrize(("kind", "options"), FRAME_MODELS)
def test_padding_never_changes_a_frame_models_prediction(kind, options):
    model = _model(kind, input="frames", **options)
    lengths = torch.tensor([37, 22, 9])
    frames = torch.randn(3, 37, 12) * (torch.arange(37) < lengths.unsqueeze(1)).unsqueeze(-1)
    with torch.no_grad():
        short = model(frames, lengths)
        padded = model(torch.cat([frames, torch.zeros(3, 29, 12)], dim=1), lengths)
        alone = model(frames[2:, :9], lengths[2:])
    assert short.shape == (3, AUDIOSET_N_CLASSES)
    assert torch.allclose(short, padded, atol=1e-4)
    assert torch.allclose(short[2:], alone, atol=1e-4)
    (model.train()(frames, lengths) ** 2).mean().backward()  # gradients reach every layer
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_special_ids_never_collide_with_centroids():
    specials = [PAD_ID, CLS_ID, MASK_ID, SEP_ID]
    assert sorted(specials) == list(range(N_SPECIAL))  # four distinct ids, all below the first centroid
    stored = torch.tensor([[0, 7, 3, -1, -1]])
    ids = to_model_ids(stored)
    assert ids.tolist() == [[4, 11, 7, PAD_ID, PAD_ID]]
    every_centroid = to_model_ids(torch.arange(1024))
    assert every_centroid.min() == N_SPECIAL and not set(every_centroid.tolist()) & set(specials)


def test_reverse_valid_reverses_within_length_only():
    x = torch.arange(10).view(2, 5, 1)
    out = reverse_valid(x, torch.tensor([3, 5])).squeeze(-1)
    assert out.tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]


@pytest.mark.parametrize("kind", ["simple", "lstm", "bert"])
def test_padding_never_changes_a_prediction(kind):
    model = _model(kind)
    tokens = torch.randint(0, 8, (3, 20))
    lengths = torch.tensor([20, 12, 5])
    stored = torch.where(torch.arange(20) < lengths.unsqueeze(1), tokens, -1)
    with torch.no_grad():
        short = model(to_model_ids(stored), lengths)
        padded = model(to_model_ids(torch.cat([stored, torch.full((3, 30), -1)], dim=1)), lengths)
        alone = model(to_model_ids(stored[2:, :5]), lengths[2:])
    assert short.shape == (3, AUDIOSET_N_CLASSES)
    assert torch.allclose(short, padded, atol=1e-5)
    assert torch.allclose(short[2:], alone, atol=1e-5)


def test_bert_sees_every_frame_of_a_full_clip():
    model = _model("bert", max_frames=431)
    assert model.bert.config.max_position_embeddings >= 431 + 1
    ids = to_model_ids(torch.randint(0, 8, (1, 431)))
    with torch.no_grad():
        base = model(ids, torch.tensor([431]))
        ids[0, -1] = N_SPECIAL + (ids[0, -1] - N_SPECIAL + 1) % 8  # change only the last frame
        changed = model(ids, torch.tensor([431]))
    assert not torch.allclose(base, changed)


def test_map_averages_only_classes_with_positives():
    labels = np.zeros((4, AUDIOSET_N_CLASSES), dtype=bool)
    labels[[0, 1], 0] = True
    labels[[2], 1] = True
    scores = np.zeros((4, AUDIOSET_N_CLASSES))
    scores[:, 0] = [0.9, 0.8, 0.1, 0.2]  # AP 1.0
    scores[:, 1] = [0.9, 0.1, 0.5, 0.2]  # positive ranked 2nd: AP 0.5
    assert mean_average_precision(labels, scores) == pytest.approx(0.75)
    metrics = classification_metrics(labels, scores)
    assert metrics["n_classes"] == 2 and metrics["n_clips"] == 4


def test_label_prior_map_equals_mean_prevalence():
    rng = np.random.default_rng(0)
    labels = rng.random((200, AUDIOSET_N_CLASSES)) < 0.05
    train = rng.random((300, AUDIOSET_N_CLASSES)) < 0.05
    prior = mean_average_precision(labels, prior_scores(train.mean(axis=0), len(labels)))
    present = labels.any(axis=0)
    assert prior == pytest.approx(labels[:, present].mean(axis=0).mean())


def test_auc_d_prime_tuned_f1_and_per_class_ap_match_hand_computed_values():
    labels = np.zeros((4, AUDIOSET_N_CLASSES), dtype=bool)
    labels[[0, 1], 0] = True
    labels[[2], 1] = True
    scores = np.zeros((4, AUDIOSET_N_CLASSES))
    scores[:, 0] = [0.9, 0.8, 0.1, 0.2]  # perfectly ranked: AUC 1, AP 1
    scores[:, 1] = [0.9, 0.1, 0.5, 0.2]  # the positive beats 2 of 3 negatives: AUC 2/3; AP 1/2
    assert per_class_ap(labels, scores) == pytest.approx({0: 1.0, 1: 0.5})
    thresholds = tune_thresholds(labels, scores)
    assert thresholds[0] == pytest.approx(0.8)  # the lowest score that keeps every positive of class 0
    assert thresholds[1] == pytest.approx(0.5) and thresholds[2] == 0.5  # no positive: the default
    metrics = classification_metrics(labels, scores, thresholds)
    assert metrics["AUC"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert metrics["d_prime"] == pytest.approx(np.sqrt(2) * 0.9674216, rel=1e-5)  # norm.ppf(5/6)
    # at 0.5: class 0 predicts rows 0, 1 (2 TP); class 1 predicts rows 0 (FP) and 2 (TP)
    assert metrics["f1_micro_0.5"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 0))
    assert metrics["f1_macro_0.5"] == pytest.approx((1.0 + 2 * 1 / (2 * 1 + 1)) / 2)
    assert metrics["f1_macro_tuned"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert metrics["hamming_loss"] == pytest.approx(1 / (4 * AUDIOSET_N_CLASSES))
    assert d_prime(0.5) == pytest.approx(0.0)


def test_the_lstm_recurrence_stays_fp32_under_bf16_autocast():
    model = _model("lstm")
    seen = []
    model.forward_layers[0].register_forward_hook(lambda module, inputs, output: seen.append(output[0].dtype))
    ids, lengths = to_model_ids(torch.randint(0, 8, (3, 40))), torch.tensor([40, 25, 7])
    with torch.no_grad():
        full = model(ids, lengths)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(ids, lengths)
    assert seen == [torch.float32, torch.float32]
    assert torch.allclose(full, mixed.float(), atol=0.05)


@pytest.mark.parametrize(
    ("kind", "input"),
    [("simple", "tokens"), ("lstm", "tokens"), ("bert", "tokens"), ("baseline", "frames"), ("cnn", "frames"),
     ("bert", "frames")],
)  # fmt: skip
def test_every_family_has_one_output_per_class_of_the_store(kind, input):
    model = _model(kind, input=input, n_classes=3)
    lengths = torch.tensor([20, 11])
    inputs = torch.randint(4, 12, (2, 20)) if input == "tokens" else torch.randn(2, 20, 12)
    assert model(inputs, lengths).shape == (2, 3)
    assert _model(kind, input=input)(inputs, lengths).shape == (2, AUDIOSET_N_CLASSES)  # AudioSet by default


def test_accuracy_is_reported_for_single_label_clips_only():
    labels = np.eye(3, dtype=bool)[[0, 1, 2, 2]]
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4], [0.0, 0.1, 0.8]])
    assert classification_metrics(labels, scores)["accuracy"] == 0.75
    labels[0, 1] = True  # one clip with two labels: top-1 accuracy means nothing
    assert "accuracy" not in classification_metrics(labels, scores)
