"""Units audiotok learns itself (HuBERT's recipe): `pretrain --input frames --targets VOCAB` learns to
predict a vocabulary's ids at masked spans of frames; `featurize --encoder RUN --layer L` turns its
layer into features that vocab, tokenize, train and predict use unchanged; `train --init RUN`
fine-tunes its encoder. Real stores, real audio files, real training."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from audiotok_cli.store import Pick, Store
from audiotok_cli.training.runs import load_pretraining
from audiotok_cli.training.units import MASK_SPAN, span_mask
from collections_kit import tone, write
from training_helpers import assert_predict_scores_the_store_tokens

SMALL = ["--hidden-size", "32", "--num-layers", "2", "--num-heads", "2", "--batch-size", "8"]


def test_span_masks_cover_spans_of_ten_steps_inside_each_clip():
    lengths = torch.tensor([200, 37, 3, 0])
    masked = span_mask(lengths, 200, torch.Generator().manual_seed(1))
    assert not masked[0, 200:].any() and not masked[1, 37:].any() and not masked[3].any()
    assert masked[2, :3].any()  # a clip shorter than a span still gets one
    share = masked[0].float().mean().item()
    assert 0.3 < share < 0.75  # HuBERT: p 0.08 of the steps start a span of 10 -> about half masked
    edges = np.flatnonzero(np.diff(np.r_[0, masked[0].int().numpy(), 0]))
    starts, stops = edges[::2], edges[1::2]
    inside = stops < 200  # a span at the clip's end is cut there
    assert (stops - starts)[inside].min() >= MASK_SPAN  # spans, never single steps


@pytest.fixture
def units_run(cli, tokenized):
    trained = cli("pretrain", "--input", "frames", "--targets", "logmel-k16", "--epochs", "6", *SMALL)
    assert trained.exit_code == 0, trained.output
    return tokenized.runs_dir / "units-logmel-k16"


def test_masked_unit_prediction_learns_and_its_layer_is_features_every_stage_uses(cli, tokenized, units_run):
    record = json.loads((units_run / "run.json").read_text())
    best = min(epoch["val_loss"] for epoch in record["history"])
    assert best < math.log(16)  # below guessing among k ids
    assert max(epoch["val_accuracy"] for epoch in record["history"]) > 2 / 16
    assert record["inputs"]["targets"] == "logmel-k16" and record["task"] == "pretrain"
    assert record["objective"] == "masked-units"
    listed = json.loads(cli("runs", "--only", "units-*", "--json").stdout)
    assert [(row["model"], row["input"]) for row in listed] == [
        ("bert (masked units pretraining)", "frames logmel -> logmel-k16")
    ]  # what it read and learned to predict, not masked tokens

    made = cli("featurize", "--encoder", "units-logmel-k16", "--layer", "1", "--name", "units")
    assert made.exit_code == 0, made.output
    store = Store.open(tokenized.store_path)
    units, logmel = store.features("units"), store.features("logmel")
    encoder = units.record.encoder
    assert (encoder.model_type, encoder.layer, encoder.hidden_size) == ("audiotok-units", (1,), 32)
    assert units.record.audio.encoder == str(units_run.resolve())

    pretrained, weights, preprocessing = load_pretraining(units_run)
    from audiotok_cli.training.models.bert import FrameMaskedUnits

    model = FrameMaskedUnits(pretrained.model).eval()
    model.load_state_dict(weights)
    row = int(np.flatnonzero(logmel.all_lengths() > 0)[5])
    n = int(logmel.all_lengths()[row])
    frames = (logmel.data[row, :n].astype(np.float32) - preprocessing["mean"]) / preprocessing["std"]
    with torch.no_grad():
        expected = model.hidden_states(torch.from_numpy(frames)[None], torch.tensor([n]))[1][0, 1:].numpy()
    stored = units.data[row, : units.all_lengths()[row]].astype(np.float32)
    assert stored.shape == expected.shape == (n, 32)
    assert np.allclose(stored, expected, atol=2e-3 * np.abs(expected).max())  # float16 in the store

    parallel = cli(
        "featurize", "--encoder", "units-logmel-k16", "--layer", "1", "--name", "units2", "--workers", "2"
    )
    assert parallel.exit_code == 0, parallel.output
    assert np.array_equal(Store.open(tokenized.store_path).features("units2").data[:], units.data[:])
    both = cli("featurize", "--encoder", "units-logmel-k16", "--layer", "1", "--layer", "2", "--name", "both")
    assert both.exit_code == 0, both.output
    side_by_side = Store.open(tokenized.store_path).features("both")
    assert side_by_side.record.encoder.layer == (1, 2) and side_by_side.data.shape[2] == 64
    assert np.array_equal(side_by_side.data[:, :, :32], units.data[:])  # layer 1 first, as asked

    assert cli("vocab", "--features", "units", "--k", "8").exit_code == 0
    assert cli("tokenize", "--vocab", "units-k8").exit_code == 0
    trained = cli("train", "--model", "simple", "--vocab", "units-k8", "--epochs", "2", "--embed-dim", "8")
    assert trained.exit_code == 0, trained.output
    file = sorted((tokenized.audio_dir / "eval").rglob("*.flac"))[0]
    run_dir = tokenized.runs_dir / "simple-units-k8"
    assert_predict_scores_the_store_tokens(cli, run_dir, store.tokens(Pick("units-k8")), store, file)


def test_units_learn_from_unlabelled_clips_too_and_never_from_val_or_test(cli, tmp_path):
    """HuBERT needs no labels: clips without any, which `split` leaves out of train, are masked and
    predicted as train's are; val and test clips never are."""
    root, rows = tmp_path / "sounds", [("path", "labels")]
    for index in range(40):
        write(root / f"c{index}.wav", tone(index % 3, group=index % 5, seconds=0.5))
        rows.append((f"c{index}.wav", f"class{index % 3}" if index < 24 else ""))  # 16 unlabelled
    with (tmp_path / "m.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    for command in (
        ["import", str(root), "--manifest", str(tmp_path / "m.csv")],
        ["split", "--val-ratio", "0.25", "--test-ratio", "0.25"],
        ["featurize", "--clip-seconds", "1"],
        ["vocab", "--k", "8"],
        ["tokenize"],
        ["pretrain", "--input", "frames", "--targets", "logmel-k8", "--epochs", "1", *SMALL],
    ):
        done = cli(*command)
        assert done.exit_code == 0, (command, done.output)
    store = Store.open(tmp_path / "data" / "audiotok.zarr")
    lengths = store.features().all_lengths()
    val, test = store.split_rows(lengths, "val"), store.split_rows(lengths, "test")
    learned_from = (lengths > 0) & ~val & ~test
    assert (learned_from & ~store.labeled()).sum() == 16 and val.any() and test.any()
    history = json.loads((tmp_path / "data" / "runs" / "units-logmel-k8" / "run.json").read_text())["history"]
    batches = math.ceil(learned_from.sum() / 8)  # --batch-size 8: a step a batch
    assert history[0]["step"] == batches > math.ceil(store.split_rows(lengths, "train").sum() / 8)


def test_features_of_a_units_run_trained_again_are_stale_and_refused_by_vocab(cli, units_run):
    assert cli("featurize", "--encoder", "units-logmel-k16", "--layer", "1", "--name", "units").exit_code == 0
    assert "stale" not in cli("info").stdout
    again = cli("pretrain", "--input", "frames", "--targets", "logmel-k16", "--epochs", "2", "--seed", "1",
                "--overwrite", *SMALL)  # fmt: skip
    assert again.exit_code == 0, again.output
    shown = " ".join(cli("info").stdout.split())
    assert (
        f"stale features 'units': the weights {units_run.resolve() / 'model.safetensors'} that made them "
        "changed since (trained again?)"
    ) in shown
    refused = cli("vocab", "--features", "units", "--k", "8")
    assert refused.exit_code == 6, refused.output
    assert " ".join(refused.stderr.split()).endswith(
        f"make them again: `audiotok featurize --encoder {units_run.resolve()} --layer 1 --name units "
        "--overwrite`"
    )
    remade = cli("featurize", "--encoder", "units-logmel-k16", "--layer", "1", "--name", "units",
                 "--overwrite")  # fmt: skip
    assert remade.exit_code == 0, remade.output
    assert "stale" not in cli("info").stdout
    assert cli("vocab", "--features", "units", "--k", "8").exit_code == 0


def test_units_features_are_the_same_to_the_bit_read_from_the_store_or_decoded_at_any_batch(
    cli, tokenized, units_run, monkeypatch
):
    """featurize --encoder RUN reads the log-mel frames the store holds for the run and puts clips of
    one length through one forward; decoding the audio again, or one clip a forward, gives the very
    same values (and `--workers 2` too: the test above)."""
    from audiotok_cli.training import unit_frames as units

    def made(name: str) -> np.ndarray:
        units._units.cache_clear()  # a fresh front end, built as patched
        done = cli("featurize", "--encoder", "units-logmel-k16", "--layer", "2", "--name", name)
        assert done.exit_code == 0, done.output
        return Store.open(tokenized.store_path).features(name).data[:]

    batched = made("batched")
    monkeypatch.setattr(units, "FRAMES_A_FORWARD", 1)
    assert np.array_equal(made("one-a-forward"), batched)
    monkeypatch.setattr(units.UnitFrames, "stored_frames", lambda self, store: None)
    assert np.array_equal(made("decoded"), batched)
    assert (batched != 0).any()


def test_a_frame_classifier_fine_tunes_the_units_encoder(cli, units_run):
    tuned = cli(
        "train", "--model", "bert", "--input", "frames", "--init", "units-logmel-k16", "--epochs", "1",
        "--batch-size", "8",
    )  # fmt: skip
    assert tuned.exit_code == 0, tuned.output
    record = json.loads((units_run.parent / "bert-logmel" / "run.json").read_text())
    assert record["init"] == "units-logmel-k16" and record["model"]["hidden_size"] == 32
    other = cli(
        "train", "--model", "bert", "--input", "frames", "--init", "units-logmel-k16", "--epochs", "1",
        "--frame-transform", "deltas", "--run-name", "with-deltas",
    )  # fmt: skip
    assert other.exit_code in (6, 3)
    assert "--init units-logmel-k16" in other.stderr


def test_units_pretraining_without_targets_is_one_line(cli, tokenized):
    result = cli("pretrain", "--input", "frames", "--epochs", "1")
    assert result.exit_code == 3
    assert "name them with --targets VOCAB" in result.stderr
    result = cli("pretrain", "--input", "frames", "--targets", "nope", "--epochs", "1")
    assert result.exit_code == 4 and "no tokens 'nope'" in result.stderr


def test_the_objective_is_chosen_by_name_or_by_the_older_input_spelling_and_recorded(cli, units_run):
    weights = (units_run / "model.safetensors").read_bytes()
    named = cli(
        "pretrain", "--objective", "masked-units", "--targets", "logmel-k16", "--epochs", "6", *SMALL
    )  # fmt: skip
    assert named.exit_code == 0, named.output
    assert (units_run / "model.safetensors").read_bytes() == weights  # the same run: kept, not trained again
    record = json.loads((units_run / "run.json").read_text())
    del record["objective"]  # a run recorded before records named it reads as what it learned
    (units_run / "run.json").write_text(json.dumps(record))
    assert load_pretraining(units_run)[0].objective == "masked-units"

    unknown = cli("pretrain", "--objective", "contrastive", "--targets", "logmel-k16")
    assert unknown.exit_code == 3
    assert "unknown --objective 'contrastive'; choose from masked-tokens, masked-units" in unknown.stderr
    clash = cli("pretrain", "--objective", "masked-tokens", "--input", "frames")
    assert (
        clash.exit_code == 3 and "--objective masked-tokens reads tokens, not --input frames" in clash.stderr
    )
    stray = cli("pretrain", "--objective", "masked-tokens", "--targets", "logmel-k16")
    assert stray.exit_code == 3 and "--targets names what masked-units predicts" in stray.stderr


def test_the_next_iteration_reads_the_frames_as_the_first_did(cli, tokenized):
    """HuBERT's iteration 2 learns from the same input as iteration 1: a units run whose targets are
    another units run's states of these frames reads them with that run's transforms by default."""
    assert cli("vocab", "--transform", "clip-mean", "--k", "8").exit_code == 0
    assert cli("tokenize", "--vocab", "logmel-clip-mean-k8").exit_code == 0
    first = cli("pretrain", "--input", "frames", "--targets", "logmel-clip-mean-k8", "--epochs", "1", *SMALL)
    assert first.exit_code == 0, first.output
    assert (
        cli("featurize", "--encoder", "units-logmel-clip-mean-k8", "--layer", "1", "--name", "it1").exit_code
        == 0
    )
    assert cli("vocab", "--features", "it1", "--k", "8").exit_code == 0
    assert cli("tokenize", "--vocab", "it1-k8").exit_code == 0

    def transforms(*flags: str) -> list[str]:
        command = ["pretrain", "--input", "frames", "--features", "logmel", "--targets", "it1-k8", *flags]
        second = cli(*command, "--epochs", "1", *SMALL)
        assert second.exit_code == 0, second.output
        name = flags[-1] if flags else "units-it1-k8"
        return json.loads((tokenized.runs_dir / name / "run.json").read_text())["inputs"]["transforms"]

    assert transforms() == ["clip-mean"]
    assert transforms("--frame-transform", "deltas", "--run-name", "chosen") == ["deltas"]  # the flag wins


def test_pretraining_under_seeds_gives_each_its_run_and_the_spread_and_keeps_finished_ones(cli, tokenized):
    command = ["pretrain", "--input", "frames", "--targets", "logmel-k16", "--epochs", "1", "--seeds", "2"]
    first = cli(*command, *SMALL)
    assert first.exit_code == 0, first.output
    said = " ".join(first.stdout.split())
    assert "units-logmel-k16: val masked accuracy" in said and "over 2 seeds" in said
    runs = [tokenized.runs_dir / f"units-logmel-k16-seed{seed}" for seed in (0, 1)]
    records = [json.loads((run / "run.json").read_text()) for run in runs]
    assert [record["seed"] for record in records] == [0, 1] and all(r["complete"] for r in records)
    assert [record["member"] for record in records] == [
        {"name": "units-logmel-k16", "fold": None, "seed": seed} for seed in (0, 1)
    ]
    weights = [(run / "model.safetensors").read_bytes() for run in runs]
    assert weights[0] != weights[1]  # each seed its own encoder

    again = cli(*command, *SMALL)
    assert again.exit_code == 0, again.output
    assert [(run / "model.safetensors").read_bytes() for run in runs] == weights  # kept, not trained again
    table = said[said.index("units-logmel-k16: 2 seeds") :]
    assert " ".join(again.stdout.split()).endswith(table)  # the same figures, read from the kept runs
    as_json = json.loads(cli(*command, *SMALL, "--json").stdout)
    assert sorted(as_json["masked_accuracy"]) == ["units-logmel-k16-seed0", "units-logmel-k16-seed1"]

    tokens = cli("pretrain", "--vocab", "logmel-k16", "--epochs", "1", "--seeds", "2")
    assert (
        tokens.exit_code == 3
        and "--seeds repeats masked-units pretraining only, not masked-tokens" in tokens.stderr
    )
