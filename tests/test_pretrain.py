"""Masked-token pretraining: BERT's masking recipe, a pretraining run like any other, and
`train --init` starting the classifier from every encoder weight it learned."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from audiotok_cli.errors import SettingsError
from audiotok_cli.settings import ModelSettings, TrainSettings
from audiotok_cli.training.models.ids import CLS_ID, MASK_ID, N_SPECIAL, PAD_ID
from audiotok_cli.training.models.spec import ModelSpec
from audiotok_cli.training.pretrain import IGNORED, MASK_SHARE, _masked_lm, mask_tokens, pretrain
from audiotok_cli.training.request import RunRequest
from audiotok_cli.training.runs import WEIGHTS

SMALL = ["--hidden-size", "32", "--num-heads", "2", "--num-layers", "1"]


def test_masking_follows_berts_recipe_and_never_touches_cls_or_padding():
    n_tokens = 64
    ids = torch.randint(N_SPECIAL, N_SPECIAL + n_tokens, (256, 120))
    ids[:, 90:] = PAD_ID
    masked, labels = mask_tokens(ids, n_tokens, torch.Generator().manual_seed(3))
    chosen = labels != IGNORED
    assert not chosen[:, 90:].any() and (masked[:, 90:] == PAD_ID).all()  # padding never masked
    assert torch.equal(labels[chosen], ids[chosen])  # labels: the original ids, -100 elsewhere
    assert torch.equal(masked[~chosen], ids[~chosen])
    assert abs(chosen[:, :90].float().mean().item() - MASK_SHARE) < 0.01
    became_mask = (masked[chosen] == MASK_ID).float().mean().item()
    kept = (masked[chosen] == ids[chosen]).float().mean().item()
    assert abs(became_mask - 0.8) < 0.02 and abs(kept - 0.1 - 0.1 / n_tokens) < 0.02
    assert (masked >= N_SPECIAL).sum() + (masked == MASK_ID).sum() + (
        masked == PAD_ID
    ).sum() == masked.numel()

    seen = {}

    def model(input_ids, attention_mask, labels):  # what BertForMaskedLM receives
        seen.update(ids=input_ids, mask=attention_mask, labels=labels)
        return SimpleNamespace(
            loss=torch.tensor(0.0), logits=torch.zeros(*input_ids.shape, n_tokens + N_SPECIAL)
        )

    _masked_lm(model, masked, labels)
    assert (seen["ids"][:, 0] == CLS_ID).all() and (seen["labels"][:, 0] == IGNORED).all()  # [CLS] no target
    assert torch.equal(seen["mask"][:, 1:].bool(), masked != PAD_ID)


def test_masking_chooses_a_token_even_in_a_tiny_batch():
    ids = torch.tensor([[N_SPECIAL + 1, N_SPECIAL + 2, PAD_ID]])
    for seed in range(20):
        _, labels = mask_tokens(ids, 8, torch.Generator().manual_seed(seed))
        assert (labels != IGNORED).any() and labels[0, 2] == IGNORED


def test_pretrain_then_train_init_loads_every_encoder_weight(cli, tokenized):
    pretrained = cli("pretrain", *SMALL, "--epochs", "2", "--lr", "2e-3")
    assert pretrained.exit_code == 0, pretrained.output
    assert (
        "val masked loss" in pretrained.stdout
        and "runs/pretrain-bert-logmel-k16: best val loss" in pretrained.stdout
    )
    run_dir = tokenized.runs_dir / "pretrain-bert-logmel-k16"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["task"] == "pretrain" and [e["epoch"] for e in record["history"]] == [1, 2]
    assert record["objective"] == "masked-tokens"  # what --input tokens, the default, names
    assert all(0 <= e["val_accuracy"] <= 1 and e["val_loss"] > 0 for e in record["history"])

    weights = load_file(run_dir / WEIGHTS)
    assert {name.split(".")[0] for name in weights} == {"bert", "cls"}  # the encoder and the MLM head

    # the encoder's sizes come from the pretraining run: --init alone is enough
    tuned = cli("train", "--model", "bert", "--epochs", "1", "--init", "pretrain-bert-logmel-k16")
    assert tuned.exit_code == 0, tuned.output
    from audiotok_cli.training.models import build_model
    from audiotok_cli.training.runs import RunRecord, init_encoder

    fine = RunRecord.model_validate_json((tokenized.runs_dir / "bert-logmel-k16" / "run.json").read_text())
    assert fine.init == "pretrain-bert-logmel-k16" and fine.objective == "classification"
    encoder = init_encoder(tokenized.runs_dir, "pretrain-bert-logmel-k16", fine)
    fresh = build_model(fine.model)
    result = fresh.load_state_dict(encoder, strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) == {"head.weight", "head.bias"}
    assert len(encoder) == len(fresh.bert.state_dict())  # every encoder weight, nothing else
    assert (fine.model.hidden_size, fine.model.num_layers, fine.model.num_heads) == (32, 1, 2)

    listed = cli("runs", "--json")
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["pretrain-bert-logmel-k16"]["val_mlm_loss"] == pytest.approx(
        min(e["val_loss"] for e in record["history"])
    )
    assert rows["bert-logmel-k16"]["model"] == "bert (init pretrain-bert-logmel-k16)"


def test_a_fine_tuned_run_starts_from_the_pretrained_encoder(cli, tokenized, monkeypatch):
    assert cli("pretrain", *SMALL, "--epochs", "1").exit_code == 0
    import audiotok_cli.training.loop as loop

    started = {}
    real_fit = loop.fit

    def capture(job, *args, **kwargs):
        torch.manual_seed(0)
        started.update(job.build().bert.state_dict())
        return real_fit(job, *args, **kwargs)

    monkeypatch.setattr(loop, "fit", capture)
    assert (
        cli(
            "train", "--model", "bert", *SMALL, "--epochs", "1", "--init", "pretrain-bert-logmel-k16"
        ).exit_code
        == 0
    )
    pretrained = load_file(tokenized.runs_dir / "pretrain-bert-logmel-k16" / WEIGHTS)
    for name, value in started.items():
        assert torch.equal(value, pretrained[f"bert.{name}"]), name


def test_init_and_pretrain_refuse_what_does_not_fit(cli, tokenized):
    assert cli("pretrain", *SMALL, "--epochs", "1").exit_code == 0
    wider = ["--hidden-size", "64", "--num-heads", "2", "--num-layers", "1"]
    other_shape = cli(
        "train", "--model", "bert", *wider, "--epochs", "1", "--init", "pretrain-bert-logmel-k16"
    )
    assert other_shape.exit_code == 6
    assert "has another encoder: hidden_size 32 (this run: 64)" in other_shape.stderr

    assert cli("train", "--model", "simple", "--epochs", "1").exit_code == 0
    not_pretraining = cli("train", "--model", "bert", *SMALL, "--epochs", "1", "--init", "simple-logmel-k16")
    assert (
        not_pretraining.exit_code == 3
        and "is a classify run, not a pretraining run" in not_pretraining.stderr
    )

    missing = cli("train", "--model", "bert", *SMALL, "--epochs", "1", "--init", "nothing-here")
    assert missing.exit_code == 4 and "run `audiotok pretrain` first" in missing.stderr

    no_eval = cli("eval", "--run", "pretrain-bert-logmel-k16")
    assert no_eval.exit_code == 3 and "is a pretraining run, with no classifier" in no_eval.stderr

    with pytest.raises(SettingsError, match="--sampler, --mixup shape classifier training"):
        pretrain(
            RunRequest(
                tokenized.resolved_paths,
                ModelSettings(kind="bert"),
                TrainSettings(sampler="balanced", mixup=0.2),
                0,
            ),
        )
    with pytest.raises(SettingsError, match="pretrain trains --model bert on tokens, not 'lstm'"):
        pretrain(RunRequest(tokenized.resolved_paths, ModelSettings(kind="lstm"), TrainSettings(), 0))


def test_several_codebooks_a_step_are_masked_and_predicted_step_by_step():
    k, books = 16, 4
    codes = torch.randint(0, k, (64, 50, books))
    ids = codes + N_SPECIAL + torch.arange(books) * k  # as to_model_ids numbers them
    ids[:, 40:] = PAD_ID
    masked, labels = mask_tokens(ids, books * k, torch.Generator().manual_seed(1))
    chosen = labels != IGNORED
    assert (chosen.all(dim=2) | ~chosen.any(dim=2)).all()  # a step is chosen whole, every codebook
    assert not chosen[:, 40:].any() and (masked[:, 40:] == PAD_ID).all()
    assert abs(chosen[:, :40, 0].float().mean().item() - MASK_SHARE) < 0.02
    assert torch.equal(labels[chosen], ids[chosen])
    replaced = chosen & (masked != MASK_ID)
    in_own_book = (masked - N_SPECIAL) // k == torch.arange(books)
    assert in_own_book[replaced].all()  # a random id stays in its own codebook's range

    spec = ModelSpec(kind="bert", input="tokens", n_tokens=books * k, max_frames=50, hidden_size=16,
                     num_layers=1, num_heads=2, n_classes=3, embed_dim=16, dropout=0.0)  # fmt: skip
    from audiotok_cli.training.models.bert import build_masked_lm

    loss, guessed = _masked_lm(build_masked_lm(spec), masked, labels)
    assert guessed.shape == labels.shape and loss.item() == pytest.approx(math.log(k), rel=0.2)
    assert (((guessed - N_SPECIAL) // k) == torch.arange(books)).all()  # each codebook guesses its own ids


def test_pretrain_on_several_codebooks_then_fine_tune(cli, tokenized):
    assert cli("vocab", "--k", "8", "--quantizer", "pq:4").exit_code == 0
    assert cli("tokenize", "--vocab", "logmel-pq4x8").exit_code == 0
    pretrained = cli("pretrain", "--vocab", "logmel-pq4x8", *SMALL, "--epochs", "2")
    assert pretrained.exit_code == 0, pretrained.output
    record = json.loads((tokenized.runs_dir / "pretrain-bert-logmel-pq4x8" / "run.json").read_text())
    assert all(0 <= e["val_accuracy"] <= 1 and e["val_loss"] > 0 for e in record["history"])
    tuned = cli(
        "train",
        "--model",
        "bert",
        "--vocab",
        "logmel-pq4x8",
        "--epochs",
        "1",
        "--init",
        "pretrain-bert-logmel-pq4x8",
    )
    assert tuned.exit_code == 0, tuned.output
