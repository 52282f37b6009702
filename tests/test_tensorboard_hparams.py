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
    assert cli("eval", "--run", "slow").exit_code == 0  # scored again: still one session
    assert len(list((tokenized.runs_dir / "slow" / "tensorboard" / "hparams").iterdir())) <= 2
