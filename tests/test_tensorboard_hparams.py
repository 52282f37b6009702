"""TensorBoard's HParams dashboard compares runs: each run trained with `--tensorboard` holds its
settings and final scores as one HParams session, read back here from the event files; and a plain
`train` scores its run as `--seeds` and `eval` do."""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

QUICK = ["--model", "simple", "--epochs", "2", "--batch-size", "8", "--embed-dim", "16"]


def _session(folder) -> tuple[dict, dict[str, float]]:
    board = EventAccumulator(str(folder))
    board.Reload()
    content = board.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
               for name, value in start.session_start_info.hparams.items()}  # fmt: skip
    metrics = {
        tag: board.Scalars(tag)[-1].value for tag in board.Tags()["scalars"] if tag.startswith("hparam/")
    }
    return hparams, metrics


def test_each_run_is_one_hparams_session_with_its_settings_and_final_scores(cli, tokenized):
    for lr, name in (("0.001", "slow"), ("0.01", "fast")):
        trained = cli("train", *QUICK, "--lr", lr, "--tensorboard", "--run-name", name)
        assert trained.exit_code == 0, trained.output
        assert f"(`audiotok eval --run {name}` for the rest)" in trained.stdout  # scored, as --seeds does
    for lr, name in ((0.001, "slow"), (0.01, "fast")):
        run = tokenized.runs_dir / name
        hparams, metrics = _session(run / "tensorboard" / "hparams")
        report = json.loads((run / "eval.json").read_text())["splits"]
        assert hparams["train.learning_rate"] == pytest.approx(lr)
        assert hparams["model.kind"] == "simple" and hparams["reads"] == "logmel-k16" and hparams["seed"] == 0
        assert metrics["hparam/test_mAP"] == pytest.approx(report["test"]["mAP"], abs=1e-6)
        assert metrics["hparam/val_mAP"] == pytest.approx(report["val"]["mAP"], abs=1e-6)
        board = EventAccumulator(str(run / "tensorboard" / "hparams"))
        board.Reload()  # no experiment of its own: TensorBoard builds it from every session, marking
        assert "_hparams_/experiment" not in board.PluginTagToContent("hparams")  # what differs
    assert cli("eval", "--run", "slow").exit_code == 0  # scored again: still one session
    assert len(list((tokenized.runs_dir / "slow" / "tensorboard" / "hparams").iterdir())) <= 2


def test_tensorboard_asked_of_finished_runs_writes_their_events_and_trains_nothing(cli, tokenized):
    """Logging is not part of a run's identity (W&B and MLflow never let it change a run): a finished
    set asked again with `--tensorboard` is kept, not trained again into a `-2` set, and its event
    files come from the history it logged."""
    first = cli("train", *QUICK, "--seeds", "2", "--run-name", "set")
    assert first.exit_code == 0, first.output
    runs = tokenized.runs_dir
    weights = {seed: (runs / f"set-seed{seed}" / "model.safetensors").read_bytes() for seed in (0, 1)}
    again = cli("train", *QUICK, "--seeds", "2", "--tensorboard", "--run-name", "set")
    assert again.exit_code == 0, again.output
    assert sorted(path.name for path in runs.iterdir()) == ["set-seed0", "set-seed1"]  # no new set
    for seed in (0, 1):
        run = runs / f"set-seed{seed}"
        assert (run / "model.safetensors").read_bytes() == weights[seed]
        history = json.loads((run / "run.json").read_text())["history"]
        board = EventAccumulator(str(run / "tensorboard"))
        board.Reload()
        assert [event.value for event in board.Scalars("epoch/val_mAP")] == pytest.approx(
            [epoch["val_mAP"] for epoch in history]
        )
        _, metrics = _session(run / "tensorboard" / "hparams")  # `eval` adds its session
        assert metrics["hparam/test_mAP"] > 0
    recipes = [row["recipe"] for row in json.loads(cli("runs", "--json").stdout)]
    assert not any("tensorboard" in recipe for recipe in recipes)

    single = cli("train", *QUICK, "--run-name", "set-seed0", "--tensorboard")
    assert single.exit_code == 7
    assert "is already trained with these settings; its TensorBoard event files are in" in single.stderr


def test_a_record_from_when_tensorboard_was_a_setting_and_bucketing_none_keeps_its_identity(tokenized, cli):
    from audiotok_cli.store import fingerprint
    from audiotok_cli.training.runs import _identity, parse_record, read_record

    assert cli("train", *QUICK, "--run-name", "old").exit_code == 0
    record = read_record(tokenized.runs_dir / "old")
    raw = record.model_dump(mode="json")
    raw["train"]["tensorboard"] = False  # as an older audiotok wrote it, its key made with it
    del raw["train"]["bucket_by_length"]  # not a setting yet: it trained without bucketing
    raw["resume_key"] = fingerprint({**_identity(record), "train": raw["train"]})
    assert raw["resume_key"] != record.resume_key
    assert (
        parse_record(tokenized.runs_dir / "old" / "run.json", json.dumps(raw)).resume_key == record.resume_key
    )
    bucketed = cli("train", *QUICK, "--run-name", "bucketed", "--bucket-by-length")
    assert bucketed.exit_code == 0, bucketed.output
    assert read_record(tokenized.runs_dir / "bucketed").train["bucket_by_length"] is True
    assert read_record(tokenized.runs_dir / "bucketed").resume_key != record.resume_key
